"""A process can serve its own metrics: ``start_http_server(9464)``."""

from __future__ import annotations

import gzip
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from .recorder import RECORDER, Recorder


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
        else:  # any other path is /metrics, as prometheus_client has it
            status = "200 OK"
            writer, ctype = negotiate(environ.get("HTTP_ACCEPT"))
            params = parse_qs(environ.get("QUERY_STRING", ""))
            if "name[]" in params:  # rare: prometheus_client's own filter decides what stays
                from prometheus_client.exposition import choose_encoder

                encoder, ctype = choose_encoder(environ.get("HTTP_ACCEPT") or "")
                output = encoder(make_registry(recorder).restricted_registry(params["name[]"]))
            else:
                output = writer(recorder.readings())
            headers = [("Content-Type", ctype)]
            if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING") or ""):
                output = gzip.compress(output)
                headers.append(("Content-Encoding", "gzip"))
        start_response(status, headers)
        return [output]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # fire and forget: no thread list growing at each request


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def start_http_server(
    port: int = 9464, addr: str = "127.0.0.1", recorder: Recorder = RECORDER
) -> tuple[WSGIServer, threading.Thread]:
    """Serve this process's inference metrics on http://addr:port/metrics (a daemon thread).

    Returns ``(server, thread)`` as prometheus_client's ``start_http_server`` does;
    ``server.shutdown()`` stops it.
    """
    family, _, _, _, sockaddr = socket.getaddrinfo(
        addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]

    class Server(_Server):
        address_family = family

    httpd = make_server(str(sockaddr[0]), port, make_wsgi_app(recorder), Server, _Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    return httpd, thread
