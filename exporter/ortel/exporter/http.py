"""The daemon's HTTP endpoint: /metrics, /healthz and a small index page."""

from __future__ import annotations

import gzip
import html
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

from prometheus_client.exposition import choose_encoder

from ortel.instrumentation.exposition import to_families
from ortel.instrumentation.readings import Reading

from . import __version__


class _Families:
    """The registry interface prometheus_client's encoders need: ``collect()``."""

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


def make_server(
    host: str, port: int, source: Callable[[], Iterable[Reading]], collectors: list[str]
) -> ThreadingHTTPServer:
    registry = _Families(source)
    index = _index(collectors)

    class Handler(BaseHTTPRequestHandler):
        server_version = f"ortel/{__version__}"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = urlparse(self.path).path
            if path == "/metrics":
                encoder, ctype = choose_encoder(self.headers.get("Accept", ""))
                body = encoder(registry)
                self._send(200, ctype, body)
            elif path == "/healthz":
                self._send(200, "text/plain; charset=utf-8", b"ok\n")
            elif path == "/":
                self._send(200, "text/html; charset=utf-8", index)
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found\n")

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            gz = "gzip" in self.headers.get("Accept-Encoding", "") and len(body) > 1024
            if gz:
                body = gzip.compress(body, compresslevel=1)
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            if gz:
                self.send_header("Content-Encoding", "gzip")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # one line per scrape is noise; errors surface through the daemon's log

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    if ":" in host:
        import socket

        Server.address_family = socket.AF_INET6
    return Server((host, port), Handler)
