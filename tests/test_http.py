"""The daemon's HTTP endpoint on its own: make_server with a fake readings source."""

from __future__ import annotations

import base64
import contextlib
import gzip
import http.client
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path

import bcrypt
import pytest
from harness import LOOPBACK
from pki import CLIENT_SAN, PKI, make_pki
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from ortel.core import catalog as c
from ortel.core.readings import HistogramValue, Reading, reading
from ortel.exporter.http import make_server
from ortel.exporter.webconfig import Security

COLLECTORS = ["cpu", "memory", "<script>"]


@dataclass
class Source:
    """A readings source the test can change between scrapes; counts its calls."""

    readings: list[Reading] = field(default_factory=list)
    calls: int = 0

    def __call__(self) -> Iterable[Reading]:
        self.calls += 1
        return list(self.readings)


def small() -> list[Reading]:
    return [
        reading(c.MEMORY_TOTAL, 16 * 2**30),
        reading(c.CPU_SECONDS, 12.5, mode="user"),
        reading(c.COLLECTOR_SUCCESS, 1, collector="memory"),
        reading(
            c.INFERENCE_DURATION,
            HistogramValue(bounds=(0.01, 0.1), counts=(3, 2, 1), sum=0.5, count=6),
            model="mlp",
            provider="CPUExecutionProvider",
            status="ok",
        ),
    ]


def large() -> list[Reading]:
    """Well over the 1 KiB below which the server does not bother compressing."""
    return small() + [
        reading(c.PROCESS_THREADS, i, pid=str(1000 + i), name="worker", role="instrumented")
        for i in range(50)
    ]


@dataclass
class Served:
    server: ThreadingHTTPServer
    source: Source
    port: int

    def get(self, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
        return get(LOOPBACK, self.port, path, **headers)


@contextlib.contextmanager
def serving(
    host: str, source: Callable[[], Iterable[Reading]], collectors: list[str]
) -> Iterator[ThreadingHTTPServer]:
    server = make_server(host, 0, source, collectors)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def get(host: str, port: int, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=5)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.fixture
def served() -> Iterator[Served]:
    source = Source(small())
    with serving(LOOPBACK, source, COLLECTORS) as server:
        yield Served(server, source, server.server_address[1])


def test_port_0_binds_a_free_port(served: Served) -> None:
    assert served.port > 0
    assert served.server.server_address[0] == LOOPBACK


def test_metrics_text_format_has_help_and_type_from_the_catalogue(served: Served) -> None:
    status, headers, body = served.get("/metrics")
    assert status == 200
    assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = body.decode()
    for m in (c.MEMORY_TOTAL, c.CPU_SECONDS, c.COLLECTOR_SUCCESS, c.INFERENCE_DURATION):
        # The 0.0.4 text format names a counter's family with its _total suffix.
        assert f"# HELP {m.name} {m.help}\n" in text
        assert f"# TYPE {m.name} {m.kind}\n" in text
    assert 'ortel_cpu_seconds_total{mode="user"} 12.5\n' in text
    assert 'ortel_scrape_collector_success{collector="memory"} 1.0\n' in text


def test_metrics_text_format_parses_back_to_the_readings(served: Served) -> None:
    _, _, body = served.get("/metrics")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in parse_text(body.decode())
        for s in fam.samples
    }
    assert samples[("ortel_memory_total_bytes", ())] == 16 * 2**30
    ml = (("model", "mlp"), ("provider", "CPUExecutionProvider"), ("status", "ok"))
    assert samples[("ortel_inference_duration_seconds_bucket", (("le", "0.01"), *ml))] == 3
    assert samples[("ortel_inference_duration_seconds_bucket", (("le", "0.1"), *ml))] == 5
    assert samples[("ortel_inference_duration_seconds_bucket", (("le", "+Inf"), *ml))] == 6
    assert samples[("ortel_inference_duration_seconds_count", ml)] == 6
    assert samples[("ortel_inference_duration_seconds_sum", ml)] == 0.5


def test_every_scrape_reads_the_source_afresh(served: Served) -> None:
    served.get("/metrics")
    served.source.readings = [reading(c.MEMORY_TOTAL, 1.0)]
    _, _, body = served.get("/metrics")
    assert b"ortel_memory_total_bytes 1.0\n" in body
    assert b"ortel_cpu_seconds_total" not in body
    assert served.source.calls == 2


def test_empty_source_is_an_empty_200(served: Served) -> None:
    served.source.readings = []
    status, _, body = served.get("/metrics")
    assert (status, body) == (200, b"")


@pytest.mark.parametrize(
    "accept",
    [
        "application/openmetrics-text",
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    ],
)
def test_openmetrics_when_asked(served: Served, accept: str) -> None:
    status, headers, body = served.get("/metrics", Accept=accept)
    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    text = body.decode()
    assert text.endswith("# EOF\n")
    names = {fam.name for fam in parse_om(text)}  # a strict parser: the body is valid
    assert {"ortel_memory_total_bytes", "ortel_cpu_seconds", "ortel_scrape_collector_success"} <= (
        names
    )
    assert "# UNIT ortel_memory_total_bytes bytes\n" in text


@pytest.mark.parametrize("accept", ["text/plain", "*/*", "application/json", ""])
def test_text_format_otherwise(served: Served, accept: str) -> None:
    _, headers, body = served.get("/metrics", Accept=accept)
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert b"# EOF" not in body


def test_gzip_when_accepted(served: Served) -> None:
    served.source.readings = large()
    _, plain_headers, plain = served.get("/metrics")
    assert "content-encoding" not in plain_headers
    assert len(plain) > 1024

    status, headers, body = served.get("/metrics", **{"Accept-Encoding": "gzip, deflate"})
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert int(headers["content-length"]) == len(body) < len(plain)
    assert gzip.decompress(body) == plain
    assert headers["content-type"].startswith("text/plain")


def test_gzip_with_openmetrics(served: Served) -> None:
    served.source.readings = large()
    _, headers, body = served.get(
        "/metrics", Accept="application/openmetrics-text", **{"Accept-Encoding": "gzip"}
    )
    assert headers["content-encoding"] == "gzip"
    assert gzip.decompress(body).endswith(b"# EOF\n")


def test_small_bodies_are_not_compressed(served: Served) -> None:
    _, headers, body = served.get("/healthz", **{"Accept-Encoding": "gzip"})
    assert "content-encoding" not in headers
    assert body == b"ok\n"


def test_healthz(served: Served) -> None:
    status, headers, body = served.get("/healthz")
    assert (status, body) == (200, b"ok\n")
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert served.source.calls == 0  # health checks never run the collectors


def test_index_links_the_endpoints_and_escapes_names(served: Served) -> None:
    status, headers, body = served.get("/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    page = body.decode()
    assert '<a href="/metrics">/metrics</a>' in page
    assert '<a href="/healthz">/healthz</a>' in page
    assert "<li>cpu</li>" in page and "<li>memory</li>" in page
    assert "<li>&lt;script&gt;</li>" in page and "<script>" not in page


@pytest.mark.parametrize("path", ["/nope", "/metrics.txt", "/favicon.ico", "/metrics/"])
def test_unknown_paths_are_404(served: Served, path: str) -> None:
    status, headers, body = served.get(path)
    assert (status, body) == (404, b"not found\n")
    assert headers["content-length"] == str(len(body))


def test_query_string_does_not_change_the_route(served: Served) -> None:
    status, _, body = served.get("/metrics?name[]=ortel_memory_total_bytes")
    assert status == 200
    assert b"ortel_cpu_seconds_total" in body


def test_server_header_names_ortel(served: Served) -> None:
    _, headers, _ = served.get("/healthz")
    assert headers["server"].startswith("ortel/")


def _connect(port: int) -> None:
    with socket.create_connection((LOOPBACK, port), timeout=1):
        pass


def test_server_close_releases_the_port() -> None:
    server = make_server(LOOPBACK, 0, Source(), [])
    port = server.server_address[1]
    _connect(port)  # the socket listens as soon as make_server returns
    server.server_close()
    with pytest.raises(ConnectionRefusedError):
        _connect(port)
    # ... and the same port can be bound again at once.
    again = make_server(LOOPBACK, port, Source(), [])
    again.server_close()


def test_port_in_use_raises_oserror() -> None:
    first = make_server(LOOPBACK, 0, Source(), [])
    try:
        with pytest.raises(OSError):
            make_server(LOOPBACK, first.server_address[1], Source(), [])
    finally:
        first.server_close()


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_ipv6_listen_address() -> None:
    with serving("::1", Source(small()), []) as server:
        status, _, body = get("::1", server.server_address[1], "/metrics")
    assert status == 200
    assert b"ortel_memory_total_bytes" in body


def test_a_failing_source_does_not_take_the_server_down() -> None:
    def boom() -> Iterable[Reading]:
        raise RuntimeError("source failed")

    with serving(LOOPBACK, boom, []) as server:
        port = server.server_address[1]
        try:
            status, _, _ = get(LOOPBACK, port, "/metrics")
        except (http.client.HTTPException, ConnectionError):
            pass  # today: the connection is dropped (socketserver logs the traceback)
        else:
            assert status >= 500
        assert get(LOOPBACK, port, "/healthz")[2] == b"ok\n"  # the next request is served


# --- TLS, authentication and draining (webconfig.Security on a real server) --------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def secured(tmp_path: Path, web: str | None = None, tokens: str | None = None) -> Security:
    cfg = tok = None
    if web is not None:
        cfg = tmp_path / "web.yml"
        cfg.write_text(web)
    if tokens is not None:
        tok = tmp_path / "tokens"
        tok.write_text(tokens)
    return Security(cfg, tok)


@contextlib.contextmanager
def serving_secure(security: Security) -> Iterator[int]:
    server = make_server(LOOPBACK, 0, Source(small()), ["cpu"], security)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def https_get(
    port: int, path: str, ctx: ssl.SSLContext, **headers: str
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPSConnection(LOOPBACK, port, timeout=5, context=ctx)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def tls_yaml(pki: PKI, extra: str = "") -> str:
    return (
        "tls_server_config:\n"
        f"  cert_file: {pki.server_cert}\n"
        f"  key_file: {pki.server_key}\n" + extra
    )


HANDSHAKE_FAILED = (ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)


def test_tls_serves_metrics_to_a_client_that_trusts_the_ca(pki: PKI, tmp_path: Path) -> None:
    with serving_secure(secured(tmp_path, tls_yaml(pki))) as port:
        status, _, body = https_get(port, "/metrics", pki.client_context())
        assert status == 200 and b"ortel_memory_total_bytes" in body
        # Plain HTTP on the TLS port gets no metrics, and the server carries on.
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            get(LOOPBACK, port, "/metrics")
        assert https_get(port, "/healthz", pki.client_context())[0] == 200


def test_a_client_that_does_not_trust_the_server_certificate_fails(
    pki: PKI, tmp_path: Path
) -> None:
    sec = secured(tmp_path, tls_yaml(pki))
    with serving_secure(sec) as port, pytest.raises(ssl.SSLCertVerificationError):
        https_get(port, "/metrics", ssl.create_default_context())


def test_min_version_refuses_older_clients(pki: PKI, tmp_path: Path) -> None:
    with serving_secure(secured(tmp_path, tls_yaml(pki, "  min_version: TLS13\n"))) as port:
        old = pki.client_context()
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(HANDSHAKE_FAILED):
            https_get(port, "/metrics", old)
        assert https_get(port, "/metrics", pki.client_context())[0] == 200


def mtls_yaml(pki: PKI, auth: str, sans: str = "") -> str:
    extra = f"  client_ca_file: {pki.ca}\n  client_auth_type: {auth}\n"
    if sans:
        extra += f"  client_allowed_sans: [{sans}]\n"
    return tls_yaml(pki, extra)


def test_required_client_certificates_fail_the_handshake_when_absent_or_untrusted(
    pki: PKI, tmp_path: Path
) -> None:
    with serving_secure(secured(tmp_path, mtls_yaml(pki, "RequireAndVerifyClientCert"))) as port:
        ok = pki.client_context(pki.client_cert, pki.client_key)
        assert https_get(port, "/metrics", ok)[0] == 200
        with pytest.raises(HANDSHAKE_FAILED):
            https_get(port, "/metrics", pki.client_context())  # no certificate
        with pytest.raises(HANDSHAKE_FAILED):  # same subject, signed by a CA nobody trusts
            https_get(
                port, "/metrics", pki.client_context(pki.rogue_client_cert, pki.rogue_client_key)
            )
        assert https_get(port, "/metrics", ok)[0] == 200  # still serving


def test_a_trusted_certificate_not_on_the_allow_list_is_403(pki: PKI, tmp_path: Path) -> None:
    web = mtls_yaml(pki, "VerifyClientCertIfGiven", CLIENT_SAN)
    with serving_secure(secured(tmp_path, web)) as port:
        ok = pki.client_context(pki.client_cert, pki.client_key)
        other = pki.client_context(pki.other_client_cert, pki.other_client_key)
        assert https_get(port, "/metrics", ok)[0] == 200
        status, _, body = https_get(port, "/metrics", other)
        assert (status, body) == (403, b"forbidden\n")
        assert https_get(port, "/metrics", pki.client_context())[0] == 403  # none given
        assert https_get(port, "/healthz", pki.client_context())[0] == 200


def test_basic_auth_over_tls(pki: PKI, tmp_path: Path) -> None:
    h = bcrypt.hashpw(b"s3cret-pass", bcrypt.gensalt(rounds=4)).decode()
    web = tls_yaml(pki) + f"basic_auth_users:\n  prometheus: '{h}'\n"
    with serving_secure(secured(tmp_path, web)) as port:
        ctx = pki.client_context()
        status, headers, body = https_get(port, "/metrics", ctx)
        assert (status, body) == (401, b"unauthorized\n")
        assert headers["www-authenticate"].startswith('Basic realm="ortel"')
        auth = "Basic " + base64.b64encode(b"prometheus:s3cret-pass").decode()
        assert https_get(port, "/metrics", ctx, Authorization=auth)[0] == 200
        wrong = "Basic " + base64.b64encode(b"prometheus:guess").decode()
        assert https_get(port, "/metrics", ctx, Authorization=wrong)[0] == 401
        assert https_get(port, "/", ctx)[0] == 401  # the index too
        assert https_get(port, "/healthz", ctx)[0] == 200


def test_token_rotation_applies_without_a_restart(tmp_path: Path) -> None:
    old, new = "old-token-0123456789", "new-token-0123456789"
    sec = secured(tmp_path, tokens=old + "\n")
    with serving_secure(sec) as port:
        assert get(LOOPBACK, port, "/metrics", Authorization=f"Bearer {old}")[0] == 200
        status, headers, _ = get(LOOPBACK, port, "/metrics")
        assert status == 401 and headers["www-authenticate"] == 'Bearer realm="ortel"'
        tok = tmp_path / "tokens"
        tok.write_text(f"{old}\n{new}\n")  # overlap while scrapers move over
        st = tok.stat()
        os.utime(tok, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        assert get(LOOPBACK, port, "/metrics", Authorization=f"Bearer {new}")[0] == 200
        assert get(LOOPBACK, port, "/metrics", Authorization=f"Bearer {old}")[0] == 200
        tok.write_text(f"{new}\n")
        os.utime(tok, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000))
        assert get(LOOPBACK, port, "/metrics", Authorization=f"Bearer {old}")[0] == 401


def test_tls_can_be_switched_on_by_editing_the_web_config(pki: PKI, tmp_path: Path) -> None:
    sec = secured(tmp_path, "")
    with serving_secure(sec) as port:
        assert get(LOOPBACK, port, "/metrics")[0] == 200
        cfg = tmp_path / "web.yml"
        cfg.write_text(tls_yaml(pki))
        st = cfg.stat()
        os.utime(cfg, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        assert https_get(port, "/metrics", pki.client_context())[0] == 200


class Gate:
    """A readings source that blocks until released: a scrape held in flight."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> Iterable[Reading]:
        self.entered.set()
        self.release.wait(10)
        return small()


def test_drain_lets_a_scrape_in_flight_finish() -> None:
    gate = Gate()
    server = make_server(LOOPBACK, 0, gate, [])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    port = server.server_address[1]
    result: list[tuple[int, dict[str, str], bytes]] = []
    client = threading.Thread(target=lambda: result.append(get(LOOPBACK, port, "/metrics")))
    client.start()
    assert gate.entered.wait(5)
    server.shutdown()  # what SIGTERM does first: no new connections
    thread.join(5)
    left: list[int] = []
    drainer = threading.Thread(target=lambda: left.append(server.drain(5.0)))
    drainer.start()
    drainer.join(0.3)
    assert drainer.is_alive()  # waiting for the scrape...
    gate.release.set()
    drainer.join(5)
    client.join(5)
    server.server_close()
    assert left == [0]
    status, _, body = result[0]
    assert status == 200 and b"ortel_memory_total_bytes" in body  # ...which got all of it


def test_drain_gives_up_after_its_timeout() -> None:
    server = make_server(LOOPBACK, 0, Source(), [])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        with socket.create_connection(server.server_address[:2], timeout=5) as idle:
            idle.sendall(b"GET /metrics HTTP/1.0\r\n")  # and never finishes the request
            deadline = time.monotonic() + 5
            while server.inflight == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            server.shutdown()
            t0 = time.monotonic()
            assert server.drain(0.3) == 1
            assert 0.25 <= time.monotonic() - t0 < 2
    finally:
        server.server_close()
        thread.join(5)
