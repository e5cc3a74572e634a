"""Both HTTP servers (the daemon's make_server and the shim's start_http_server) under many
concurrent scrapers and hostile clients, on real sockets with real concurrent clients.

Behaviour only: what each client gets back. How fast is benchmarks/scrape_concurrency.py's job.
"""

from __future__ import annotations

import contextlib
import http.client
import resource
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness import LOOPBACK
from pki import PKI, make_pki

from ortel.core import catalog as c
from ortel.core.readings import Reading, reading
from ortel.core.serving import Limiter, SingleFlight
from ortel.exporter.http import make_server
from ortel.exporter.webconfig import Security
from ortel.instrumentation.recorder import FLUSH_INTERVAL
from ortel.instrumentation.server import start_http_server


class Gate:
    """A readings source that counts its calls and, until released, blocks in them."""

    def __init__(self, readings: list[Reading] | None = None, open_: bool = False) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        if open_:
            self.release.set()
        self.items = readings if readings is not None else [reading(c.MEMORY_TOTAL, 1.0)]
        self._lock = threading.Lock()

    def __call__(self) -> list[Reading]:
        with self._lock:
            self.calls += 1
        self.entered.set()
        assert self.release.wait(10)
        return list(self.items)

    def readings(self) -> list[Reading]:  # the Recorder interface start_http_server reads
        return self()


@dataclass
class Target:
    port: int
    server: socket.socket | object
    limiter: Limiter
    scrapes: SingleFlight


@contextlib.contextmanager
def daemon_server(source: Gate, max_requests: int = 40, **attrs: float) -> Iterator[Target]:
    server = make_server(LOOPBACK, 0, source, [], max_requests=max_requests)
    for k, v in attrs.items():
        setattr(server, k, v)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Target(server.server_address[1], server, server.limiter, server.scrapes)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def shim_server(source: Gate, max_requests: int = 40, **attrs: float) -> Iterator[Target]:
    server, thread = start_http_server(0, LOOPBACK, source, max_requests)  # type: ignore[arg-type]
    for k, v in attrs.items():
        setattr(server, k, v)
    try:
        yield Target(
            server.server_address[1],
            server,
            server.limiter,  # type: ignore[attr-defined]
            server.scrapes,  # type: ignore[attr-defined]
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


SERVERS = {"daemon": daemon_server, "shim": shim_server}
Serve = Callable[..., contextlib.AbstractContextManager[Target]]


@pytest.fixture(params=sorted(SERVERS))
def serve(request: pytest.FixtureRequest) -> Serve:
    return SERVERS[request.param]


def get(port: int, path: str = "/metrics", **headers: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def in_background(fn: Callable[[], object], n: int) -> tuple[list[threading.Thread], list[object]]:
    results: list[object] = []

    def run() -> None:
        try:
            results.append(fn())
        except Exception as e:  # a client error is a result to assert on, not a lost thread
            results.append(e)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    return threads, results


def test_scrapes_during_a_collection_share_it(serve: Serve) -> None:
    gate = Gate()
    with serve(gate) as target:
        threads, results = in_background(lambda: get(target.port), 10)
        assert gate.entered.wait(10)
        wait_for(lambda: target.limiter.in_flight == 10, "10 scrapes in flight")
        gate.release.set()
        for t in threads:
            t.join(10)
        assert [r[0] for r in results] == [200] * 10  # type: ignore[index]
        assert all(b"ortel_memory_total_bytes 1.0" in r[1] for r in results)  # type: ignore[index]
        assert gate.calls < 10  # one collection, or a second for scrapes that came just after
        calls = gate.calls
        time.sleep(target.scrapes.max_age)  # the shim reuses a collection this young
        assert get(target.port)[0] == 200
        assert gate.calls == calls + 1  # a scrape after the collection collects afresh


def test_the_shim_reuses_a_young_collection_and_the_daemon_never_does(serve: Serve) -> None:
    gate = Gate(open_=True)
    with serve(gate) as target:
        if serve is shim_server:
            assert target.scrapes.max_age == FLUSH_INTERVAL
            target.scrapes.max_age = 60.0  # no machine is that slow between two gets
        for _ in range(3):
            assert get(target.port)[0] == 200
        assert gate.calls == (1 if serve is shim_server else 3)
        gate.items = [reading(c.MEMORY_TOTAL, 2.0)]
        target.scrapes.max_age = min(target.scrapes.max_age, 0.05)
        time.sleep(0.05)
        assert b"ortel_memory_total_bytes 2.0" in get(target.port)[1]  # older: collected afresh


def test_scrapes_beyond_the_limit_get_503_at_once_and_are_counted(serve: Serve) -> None:
    gate = Gate()
    with serve(gate, max_requests=2) as target:
        threads, results = in_background(lambda: get(target.port), 2)
        wait_for(lambda: target.limiter.in_flight == 2, "2 scrapes in flight")
        status, body = get(target.port)  # answered while the other two are still waiting
        assert status == 503 and b"too many" in body
        assert target.limiter.rejected == 1
        assert get(target.port, "/healthz" if serve is daemon_server else "/favicon.ico")[0] == 200
        gate.release.set()
        for t in threads:
            t.join(10)
        assert [r[0] for r in results] == [200, 200]  # type: ignore[index]
    if serve is shim_server:  # the shim serves its own counter; the daemon adds it (test_daemon)
        with serve(Gate(open_=True), max_requests=1) as target:
            target.limiter.rejected = 3
            assert b"ortel_scrapes_rejected_total 3.0" in get(target.port)[1]


def test_zero_means_no_limit(serve: Serve) -> None:
    gate = Gate()
    with serve(gate, max_requests=0) as target:
        threads, results = in_background(lambda: get(target.port), 50)
        wait_for(lambda: target.limiter.in_flight == 50, "50 scrapes in flight")
        gate.release.set()
        for t in threads:
            t.join(10)
        assert [r[0] for r in results] == [200] * 50  # type: ignore[index]
        assert target.limiter.rejected == 0


def test_every_request_of_many_concurrent_clients_is_answered_200_or_503(serve: Serve) -> None:
    body = [reading(c.PROCESS_THREADS, i, pid=str(i), name="w", role="r") for i in range(200)]
    with serve(Gate(body, open_=True), max_requests=5) as target:

        def client() -> list[int]:
            return [get(target.port, **{"Accept-Encoding": "gzip"})[0] for _ in range(5)]

        threads, results = in_background(client, 60)
        for t in threads:
            t.join(60)
        errors = [r for r in results if isinstance(r, Exception)]
        assert not errors
        codes = [code for r in results for code in r]  # type: ignore[attr-defined]
        assert len(codes) == 300 and set(codes) <= {200, 503}
        assert codes.count(503) == target.limiter.rejected
        assert target.limiter.in_flight == 0


def closed_by_server(sock: socket.socket, trickle: bytes, every: float, budget: float) -> bool:
    """Send ``trickle`` a byte at a time; True once the server hangs up (within ``budget``)."""
    deadline = time.monotonic() + budget
    for byte in trickle:
        if time.monotonic() > deadline:
            return False
        readable, _, _ = select.select([sock], [], [], every)
        if readable:
            try:
                if sock.recv(4096) == b"":
                    return True
            except ConnectionError:
                return True
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionError):
            return True
    return False


def test_a_slowloris_client_is_cut_off(serve: Serve) -> None:
    with serve(Gate(open_=True), read_header_timeout=0.5) as target:
        with socket.create_connection((LOOPBACK, target.port), timeout=5) as sock:
            trickle = b"GET /metrics HTTP/1.1\r\n" + b"X-Slow: " + b"a" * 10_000
            # Each byte well inside the per-read timeout; only the whole-header deadline cuts it.
            assert closed_by_server(sock, trickle, every=0.05, budget=20)
        assert get(target.port)[0] == 200


def raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        try:
            sock.sendall(request)
        except ConnectionError:
            pass  # the server may answer and close before taking all of it
        out = b""
        with contextlib.suppress(ConnectionError):
            while chunk := sock.recv(65536):
                out += chunk
        return out


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\n"
        + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 900) for i in range(90)),
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n",
    ],
    ids=["one-big-header", "many-headers", "long-request-line"],
)
def test_oversized_headers_get_431(serve: Serve, request_bytes: bytes) -> None:
    with serve(Gate(open_=True)) as target:
        answer = raw_request(target.port, request_bytes)
        assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == b"431"
        assert get(target.port)[0] == 200


def test_a_thousand_idle_connections_do_not_block_a_scrape(serve: Serve) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * 1000 + 200  # both ends of each connection live in this process
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"needs {need} open files, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    idle: list[socket.socket] = []
    try:
        with serve(Gate(open_=True)) as target:
            for i in range(1000):
                s = socket.create_connection((LOOPBACK, target.port), timeout=10)
                if i % 2:
                    s.sendall(b"GET /metrics HTTP/1.1\r\n")  # started, never finished
                idle.append(s)
            status, body = get(target.port)
            assert status == 200 and b"ortel_memory_total_bytes" in body
    finally:
        for s in idle:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_client_that_reads_slowly_holds_no_slot_and_no_collection(serve: Serve) -> None:
    big = [
        reading(c.PROCESS_THREADS, i, pid=str(i), name="w" * 200, role="r") for i in range(20_000)
    ]  # several MB: more than the socket buffers hold, so the server blocks writing it
    gate = Gate(big, open_=True)
    with serve(gate, max_requests=1) as target:
        slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect((LOOPBACK, target.port))
        try:
            slow.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")  # and reads nothing yet
            wait_for(lambda: gate.calls == 1, "the slow client's collection")
            wait_for(lambda: target.limiter.in_flight == 0, "its slot to be given back")
            time.sleep(target.scrapes.max_age)  # past the shim's reuse of the slow one's
            status, body = get(target.port)  # the only slot, and a new collection, are free
            assert status == 200 and body.count(b"ortel_process_threads{") == 20_000
            assert gate.calls == 2
        finally:
            slow.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_a_tls_handshake_that_never_finishes_is_cut_off(pki: PKI, tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    web.write_text(
        f"tls_server_config:\n  cert_file: {pki.server_cert}\n  key_file: {pki.server_key}\n"
    )
    server = make_server(LOOPBACK, 0, Gate(open_=True), [], Security(web, None))
    server.read_header_timeout = 0.5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        port = server.server_address[1]
        with socket.create_connection((LOOPBACK, port), timeout=5) as sock:
            # The start of a ClientHello, a byte at a time, never the rest of it.
            assert closed_by_server(sock, b"\x16\x03\x01\x02\x00" * 200, every=0.05, budget=20)
        ctx = pki.client_context()
        raw = socket.create_connection((LOOPBACK, port), timeout=5)
        with ctx.wrap_socket(raw, server_hostname=LOOPBACK) as tls:
            tls.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            answer = b""
            with contextlib.suppress(ssl.SSLError, ConnectionError):
                while chunk := tls.recv(65536):
                    answer += chunk
        assert answer.startswith(b"HTTP/1.0 200")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize(
    ("args", "env", "want"),
    [
        ([], {}, 40),
        (["--web-max-requests", "7"], {}, 7),
        (["--web.max-requests", "0"], {}, 0),  # node_exporter's spelling; 0: no limit
        ([], {"ORTEL_WEB_MAX_REQUESTS": "3"}, 3),
    ],
)
def test_the_limit_is_a_serve_option(
    args: list[str], env: dict[str, str], want: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ortel.exporter.cli import serve as serve_cmd
    from ortel.exporter.config import build_settings

    monkeypatch.delenv("ORTEL_WEB_MAX_REQUESTS", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    ctx = serve_cmd.make_context("serve", list(args))
    params = dict(ctx.params)
    params.pop("check_config")
    assert build_settings(params).web_max_requests == want


def test_a_negative_limit_is_refused() -> None:
    import click

    from ortel.exporter.cli import serve as serve_cmd

    with pytest.raises(click.BadParameter):
        serve_cmd.make_context("serve", ["--web-max-requests", "-1"])
