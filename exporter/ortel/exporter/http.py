"""The daemon's HTTP endpoint: /metrics, /healthz and a small index page.

TLS and authentication come from ``webconfig.Security`` (checked per connection and per request,
so edits to its files apply without a restart). The server counts connections in flight so that
SIGTERM can let running scrapes finish (``drain``) before the process exits. Concurrent scrapes
share one collection, at most ``max_requests`` run at once (more get 503), and hostile clients are
cut off (``ortel.core.serving``).
"""

from __future__ import annotations

import gzip
import html
import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http.server import ThreadingHTTPServer
from urllib.parse import urlparse

from ortel.core.exposition import negotiate, to_families
from ortel.core.readings import Reading
from ortel.core.serving import (
    DEFAULT_MAX_REQUESTS,
    SOCKET_TIMEOUT,
    GuardedHandler,
    GuardedServer,
    Limiter,
    SingleFlight,
)

from . import __version__
from .webconfig import Security

log = logging.getLogger("ortel.exporter")

# What socketserver hands its request methods: a socket, or (data, socket) for datagrams.
_Request = socket.socket | tuple[bytes, socket.socket]

__all__ = ["SOCKET_TIMEOUT", "Server", "make_server"]


class _Families:
    """The registry interface prometheus_client's encoders need: ``collect()``. The server does
    not use it (it writes with ``ortel.core.exposition.render``, byte for byte the same); tests
    compare prometheus_client's encoders and parsers over it."""

    def __init__(self, source: Callable[[], Iterable[Reading]]) -> None:
        self._source = source

    def collect(self):
        return to_families(self._source())


def _index(collectors: list[str]) -> bytes:
    items = "".join(f"<li>{html.escape(n)}</li>" for n in collectors)
    return (
        "<!doctype html><html><head><title>ortel</title></head><body>"
        f"<h1>ortel exporter {html.escape(__version__)}</h1>"
        '<p><a href="/metrics">/metrics</a> &middot; <a href="/healthz">/healthz</a></p>'
        f"<p>Collectors:</p><ul>{items}</ul></body></html>"
    ).encode()


class Server(GuardedServer, ThreadingHTTPServer):
    """A threading HTTP server that wraps connections in TLS when the security policy says so,
    knows how many connections are in flight, and shares collections among scrapes."""

    allow_reuse_address = True
    security: Security | None = None

    def __init__(
        self,
        *args: object,
        source: Callable[[], Iterable[Reading]] = list,
        max_requests: int = DEFAULT_MAX_REQUESTS,
        **kwargs: object,
    ) -> None:
        self.inflight = 0
        self._idle = threading.Condition()
        self.scrapes = SingleFlight(source)
        self.limiter = Limiter(max_requests)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def process_request(self, request: _Request, client_address: object) -> None:
        # Counted here, in the accepting thread, so drain() cannot miss a connection whose
        # thread has not started yet.
        with self._idle:
            self.inflight += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._done()
            raise

    def process_request_thread(self, request: _Request, client_address: object) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._done()

    def _done(self) -> None:
        with self._idle:
            self.inflight -= 1
            self._idle.notify_all()

    def finish_request(self, request: _Request, client_address: object) -> None:
        ctx = None if self.security is None else self.security.current().ssl_context
        # A TCP server's requests are always sockets; the tuple form is for datagram servers.
        if ctx is None or not isinstance(request, socket.socket):
            super().finish_request(request, client_address)
            return
        # One deadline over the whole handshake (CPython's), so a client that never finishes it
        # holds its thread no longer than it may take to send its headers.
        request.settimeout(self.read_header_timeout)
        try:
            conn = ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            # An untrusted client certificate, plain HTTP on the TLS port, a scanner: the client
            # learns it from the TLS alert; one log line per connection would be noise.
            log.debug("TLS handshake with %s failed: %s", client_address, e)
            return
        try:
            self.RequestHandlerClass(conn, client_address, self)  # type: ignore[arg-type]
        finally:
            conn.close()

    def handle_error(self, request: object, client_address: object) -> None:
        # socketserver prints tracebacks to stderr; a scraper hanging up mid-answer is routine.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, ssl.SSLError)):
            log.debug("connection from %s: %s", client_address, exc)
        else:
            log.error("error answering %s", client_address, exc_info=True)

    def drain(self, timeout: float) -> int:
        """Wait (after ``shutdown()``) for connections in flight; returns how many are left."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self.inflight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._idle.wait(left)
            return self.inflight


def make_server(
    host: str,
    port: int,
    source: Callable[[], Iterable[Reading]],
    collectors: list[str],
    security: Security | None = None,
    max_requests: int = DEFAULT_MAX_REQUESTS,
) -> Server:
    """``max_requests``: scrapes of /metrics in flight at most (0: no limit); more get 503."""
    index = _index(collectors)

    class Handler(GuardedHandler):
        server_version = f"ortel/{__version__}"
        server: Server

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = urlparse(self.path).path
            if security is not None and not self._allowed(security, path):
                return
            if path == "/metrics":
                self._metrics()
            elif path == "/healthz":
                self._send(200, "text/plain; charset=utf-8", b"ok\n")
            elif path == "/":
                self._send(200, "text/html; charset=utf-8", index)
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found\n")

        def _metrics(self) -> None:
            limiter = self.server.limiter
            if not limiter.enter():
                self._send(503, "text/plain; charset=utf-8", b"too many scrapes in flight\n")
                return
            gz = "gzip" in self.headers.get("Accept-Encoding", "")
            try:
                scrape = self.server.scrapes()
                # Content negotiation as prometheus_client does it (format, name escaping).
                writer, ctype = negotiate(self.headers.get("Accept", ""))
                plain = scrape.body(ctype, writer)
                gz = gz and len(plain) > 1024
                body = (
                    scrape.body((ctype, "gzip"), lambda _: gzip.compress(plain, 1)) if gz else plain
                )
                code = 200
            except Exception:
                log.exception("collecting metrics failed")
                code, ctype, gz = 500, "text/plain; charset=utf-8", False
                body = b"collecting metrics failed\n"
            finally:
                limiter.leave()  # before writing: a slow reader holds no slot and no lock
            self._write(code, ctype, body, gz)

        def _allowed(self, security: Security, path: str) -> bool:
            conn = self.connection
            peer = conn.getpeercert() if isinstance(conn, ssl.SSLSocket) else None
            verdict = security.current().check(path, self.headers.get("Authorization"), peer)
            if verdict.code == 200:
                return True
            body = b"unauthorized\n" if verdict.code == 401 else b"forbidden\n"
            self._send(verdict.code, "text/plain; charset=utf-8", body, verdict.headers)
            return False

        def _send(
            self,
            code: int,
            ctype: str,
            body: bytes,
            headers: Iterable[tuple[str, str]] = (),
        ) -> None:
            gz = "gzip" in self.headers.get("Accept-Encoding", "") and len(body) > 1024
            self._write(code, ctype, gzip.compress(body, 1) if gz else body, gz, headers)

        def _write(
            self,
            code: int,
            ctype: str,
            body: bytes,
            gz: bool,
            headers: Iterable[tuple[str, str]] = (),
        ) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            if gz:
                self.send_header("Content-Encoding", "gzip")
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

    class Bound(Server):
        pass

    Bound.security = security
    if ":" in host:
        Bound.address_family = socket.AF_INET6
    return Bound((host, port), Handler, source=source, max_requests=max_requests)
