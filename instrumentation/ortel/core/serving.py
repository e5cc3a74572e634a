"""What ortel's two HTTP servers (the daemon's, and the one a process starts with
``start_http_server``) share to hold up under many scrapers and hostile clients:

- scrapes that arrive while a collection runs wait for it and share its readings and its bodies
  (``SingleFlight``), so the work per scrape does not grow with the number of scrapers; the
  in-process server also reuses a collection younger than the recorder's flush interval, so the
  work inside the inference process does not grow with the scrape rate either;
- a cap on scrapes in flight (``Limiter``): beyond it, 503 at once, counted;
- per connection (``GuardedHandler``): one deadline for the request line and headers together
  (a client sending a byte at a time cannot stretch it), a cap on their size (431), a timeout on
  every later socket operation;
- a listen backlog as deep as the kernel allows, so bursts of connections are not dropped into
  TCP's 1 s / 3 s SYN retries (``GuardedServer``).

Bodies are rendered before a response is written and no lock is held while writing, so a client
that reads slowly holds only its own thread.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import socket
import ssl
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from http.server import BaseHTTPRequestHandler
from typing import Any

from . import catalog as c
from .readings import Reading

READ_HEADER_TIMEOUT = 10.0  # seconds for a TLS handshake, and then for the request's headers
SOCKET_TIMEOUT = 10.0  # seconds for each later socket operation (writing the answer)
MAX_HEADER_BYTES = 64 * 1024  # request line and headers; a scraper sends a few hundred bytes
DEFAULT_MAX_REQUESTS = 40  # node_exporter's --web.max-requests default
LISTEN_BACKLOG = 4096  # the kernel caps it at net.core.somaxconn


class Scrape:
    """One collection's readings, and the bodies rendered from them (once per format)."""

    def __init__(self, readings: list[Reading]) -> None:
        self.readings = readings
        self._bodies: dict[Hashable, bytes] = {}
        self._lock = threading.RLock()  # a gzip body is made from the plain one, under it

    def body(self, key: Hashable, render: Callable[[list[Reading]], bytes]) -> bytes:
        with self._lock:
            out = self._bodies.get(key)
            if out is None:
                out = self._bodies[key] = render(self.readings)
            return out


class _Flight:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.scrape: Scrape | None = None
        self.error: BaseException | None = None


class SingleFlight:
    """Calls ``collect`` for the first scrape; scrapes arriving while it runs wait for it and
    get the same ``Scrape``. A scrape after it has finished collects afresh, unless its
    ``Scrape`` began less than ``max_age`` seconds ago (0, the default: always afresh)."""

    def __init__(self, collect: Callable[[], Iterable[Reading]], max_age: float = 0.0) -> None:
        self._collect = collect
        self.max_age = max_age
        self._lock = threading.Lock()
        self._running: _Flight | None = None
        self._last: tuple[float, Scrape] | None = None  # (monotonic start, the Scrape)

    def __call__(self) -> Scrape:
        with self._lock:
            last = self._last
            if last is not None and time.monotonic() - last[0] < self.max_age:
                return last[1]
            flight = self._running
            leader = flight is None
            if flight is None:
                flight = self._running = _Flight()
        if leader:
            started = time.monotonic()
            try:
                flight.scrape = Scrape(list(self._collect()))
            except BaseException as e:  # every waiter gets the same failure
                flight.error = e
            finally:
                with self._lock:
                    self._running = None
                    if flight.scrape is not None and self.max_age > 0:
                        self._last = (started, flight.scrape)
                flight.done.set()
        else:
            flight.done.wait()
        if flight.error is not None:
            raise flight.error
        assert flight.scrape is not None
        return flight.scrape


class Limiter:
    """At most ``limit`` scrapes in flight (0: no limit); counts the ones turned away."""

    def __init__(self, limit: int = DEFAULT_MAX_REQUESTS) -> None:
        self.limit = limit
        self.in_flight = 0
        self.rejected = 0
        self._lock = threading.Lock()

    def enter(self) -> bool:
        with self._lock:
            if self.limit > 0 and self.in_flight >= self.limit:
                self.rejected += 1
                return False
            self.in_flight += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def readings(self) -> list[Reading]:
        return [Reading(c.SCRAPES_REJECTED, (), float(self.rejected))]


class HeadersTooLarge(http.client.LineTooLong):
    """The request line and headers went over ``max_header_bytes`` (answered 431)."""


class _HeaderReader(socket.SocketIO):
    """The raw stream under a handler's ``rfile``. Until the headers are in, each read gets what
    is left of one deadline and the bytes count against a cap."""

    def __init__(self, sock: socket.socket, timeout: float, limit: int) -> None:
        super().__init__(sock, "rb")
        self.conn = sock
        self.deadline: float | None = time.monotonic() + timeout
        self.limit = limit
        self.received = 0

    def readinto(self, b: Any) -> int | None:
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("request headers not received in time")
            self.conn.settimeout(left)
        n = super().readinto(b)
        if self.deadline is not None and n:
            self.received += n
            if self.received > self.limit:
                raise HeadersTooLarge("headers")
        return n


class GuardedHandler(BaseHTTPRequestHandler):
    """A request handler with the header deadline and size cap; the server may set
    ``read_header_timeout`` and ``max_header_bytes``."""

    timeout = SOCKET_TIMEOUT

    def setup(self) -> None:
        super().setup()
        self.rfile.close()
        self._reader = _HeaderReader(
            self.connection,
            getattr(self.server, "read_header_timeout", READ_HEADER_TIMEOUT),
            getattr(self.server, "max_header_bytes", MAX_HEADER_BYTES),
        )
        self.rfile = io.BufferedReader(self._reader)

    def parse_request(self) -> bool:
        try:
            return super().parse_request()
        finally:  # the headers are in (or refused): writes get the plain per-operation timeout
            self._reader.deadline = None
            self.connection.settimeout(self.timeout)

    def handle(self) -> None:
        try:
            super().handle()
        except HeadersTooLarge:  # in the request line (in the headers, parse_request says 431)
            self.requestline, self.request_version, self.command = "", "HTTP/1.0", ""
            self.close_connection = True
            self.send_error(431, "Request header fields too large")
        except TimeoutError:  # slowloris, or a client gone quiet: hang up, say nothing
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        super().send_error(code, message, explain)
        if code == 431:
            self._linger()

    def _linger(self) -> None:
        """Read (and drop) what the client is still sending for a moment, so closing with
        unread data does not reset the connection before the client reads the 431."""
        conn = self.connection
        if isinstance(conn, ssl.SSLSocket) or getattr(self, "_lingered", False):
            return
        self._lingered = True
        with contextlib.suppress(OSError):
            self.wfile.flush()
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(0.5)
            deadline = time.monotonic() + 1.0
            got = 0
            while time.monotonic() < deadline and got < 4 * 2**20:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                got += len(chunk)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # one line per request is noise


class GuardedServer:
    """Mixin for a socketserver TCP server: deep backlog, header limits, daemon threads."""

    request_queue_size = LISTEN_BACKLOG
    daemon_threads = True
    read_header_timeout = READ_HEADER_TIMEOUT
    max_header_bytes = MAX_HEADER_BYTES
