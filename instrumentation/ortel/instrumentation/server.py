"""A process can serve its own metrics: ``start_http_server(9464)``."""

from __future__ import annotations

import gzip
import logging
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from ortel.core.serving import (
    DEFAULT_MAX_REQUESTS,
    GuardedHandler,
    GuardedServer,
    Limiter,
    SingleFlight,
)

from .recorder import FLUSH_INTERVAL, RECORDER, Recorder

log = logging.getLogger("ortel.instrumentation")


def make_registry(recorder: Recorder = RECORDER) -> Any:
    """A prometheus_client CollectorRegistry holding the recorder's metrics (to serve or push
    them with prometheus_client, next to an application's own)."""
    from prometheus_client import CollectorRegistry

    from ortel.core.exposition import ReadingsCollector

    reg = CollectorRegistry(auto_describe=False)
    reg.register(ReadingsCollector(recorder.readings))
    return reg


def make_wsgi_app(recorder: Recorder = RECORDER) -> Callable[..., Iterable[bytes]]:
    """prometheus_client's ``make_wsgi_app`` over the recorder's readings (same methods, paths,
    content negotiation, ``name[]`` filter and gzip), written by ortel's exposition writer."""
    return _app(SingleFlight(recorder.readings), recorder)


def _app(
    scrapes: SingleFlight, recorder: Recorder, limiter: Limiter | None = None
) -> Callable[..., Iterable[bytes]]:
    """Scrapes that arrive together share one collection and its rendered bodies; with a
    limiter, scrapes beyond its limit get 503 at once."""
    from prometheus_client.exposition import gzip_accepted

    from ortel.core.exposition import negotiate

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        headers: list[tuple[str, str]]
        if method == "OPTIONS":
            status, headers, output = "200 OK", [("Allow", "OPTIONS,GET")], b""
        elif method != "GET":
            status = "405 Method Not Allowed"
            headers = [("Allow", "OPTIONS,GET")]
            output = f"# HTTP {status}: {method}; use OPTIONS or GET\n".encode()
        elif environ["PATH_INFO"] == "/favicon.ico":
            status, headers, output = "200 OK", [], b""
        elif limiter is not None and not limiter.enter():
            status = "503 Service Unavailable"
            headers = [("Content-Type", "text/plain; charset=utf-8")]
            output = b"too many scrapes in flight\n"
        else:  # any other path is /metrics, as prometheus_client has it
            try:
                status, headers, output = "200 OK", *_metrics(environ, scrapes, recorder)
            finally:
                if limiter is not None:
                    limiter.leave()  # before the answer is written: a slow reader holds no slot
        start_response(status, headers)
        return [output]

    def _metrics(
        environ: dict[str, Any], scrapes: SingleFlight, recorder: Recorder
    ) -> tuple[list[tuple[str, str]], bytes]:
        writer, ctype = negotiate(environ.get("HTTP_ACCEPT"))
        params = parse_qs(environ.get("QUERY_STRING", ""))
        gz = gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING") or "")
        if "name[]" in params:  # rare: prometheus_client's own filter decides what stays
            from prometheus_client.exposition import choose_encoder

            encoder, ctype = choose_encoder(environ.get("HTTP_ACCEPT") or "")
            output = encoder(make_registry(recorder).restricted_registry(params["name[]"]))
            output = gzip.compress(output) if gz else output
        else:
            scrape = scrapes()
            plain = scrape.body(ctype, writer)
            output = scrape.body((ctype, "gzip"), lambda _: gzip.compress(plain)) if gz else plain
        headers = [("Content-Type", ctype)]
        if gz:
            headers.append(("Content-Encoding", "gzip"))
        return headers, output

    return app


class _Server(GuardedServer, ThreadingMixIn, WSGIServer):
    """Thread per connection (daemon threads: no list growing at each request), the header
    deadline and size cap, a deep backlog; errors of single connections are not printed."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError)):
            log.error("error answering %s", client_address, exc_info=True)


class _Quiet(GuardedHandler, WSGIRequestHandler):
    pass


def start_http_server(
    port: int = 9464,
    addr: str = "127.0.0.1",
    recorder: Recorder = RECORDER,
    max_requests: int = DEFAULT_MAX_REQUESTS,
) -> tuple[WSGIServer, threading.Thread]:
    """Serve this process's inference metrics on http://addr:port/metrics (a daemon thread).

    Returns ``(server, thread)`` as prometheus_client's ``start_http_server`` does;
    ``server.shutdown()`` stops it. At most ``max_requests`` scrapes are served at once (0: no
    limit); more get 503, counted in ``ortel_scrapes_rejected_total``.

    A scrape within ``FLUSH_INTERVAL`` (0.2 s) of the collection before it gets that collection's
    answer again: the staleness the multiprocess path (snapshots written every 0.2 s) already
    has, and what keeps many scrapers from each costing the inference threads a collection.
    ``make_wsgi_app`` and ``ortel serve`` collect afresh for every scrape.
    """
    family, _, _, _, sockaddr = socket.getaddrinfo(
        addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]

    class Server(_Server):
        address_family = family

    limiter = Limiter(max_requests)
    scrapes = SingleFlight(
        lambda: [*recorder.readings(), *limiter.readings()], max_age=FLUSH_INTERVAL
    )
    httpd = make_server(str(sockaddr[0]), port, _app(scrapes, recorder, limiter), Server, _Quiet)
    httpd.limiter = limiter  # type: ignore[attr-defined]
    httpd.scrapes = scrapes  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    return httpd, thread
