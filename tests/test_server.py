import time
import urllib.request

from harness import free_port

from ortel.instrumentation.recorder import FLUSH_INTERVAL, Recorder
from ortel.instrumentation.server import start_http_server


def test_a_process_can_serve_its_own_metrics():
    rec = Recorder()
    rec.series("m", "cpu").ok.extend([1000, 2000])
    port = free_port()
    server, thread = start_http_server(port, recorder=rec)
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        text = body.decode()
        assert 'ortel_inferences_total{model="m",provider="cpu",status="ok"} 2.0' in text
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_scrape_sees_calls_recorded_a_flush_interval_after_the_last_one():
    """Scrapes reuse a collection younger than FLUSH_INTERVAL (docstring of start_http_server),
    never an older one."""
    rec = Recorder()
    series = rec.series("m", "cpu")
    series.ok.extend([1000, 2000])
    server, thread = start_http_server(0, recorder=rec)
    url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    ok = 'ortel_inferences_total{model="m",provider="cpu",status="ok"}'
    try:
        assert f"{ok} 2.0" in urllib.request.urlopen(url, timeout=5).read().decode()
        series.ok.append(3000)
        time.sleep(FLUSH_INTERVAL)
        assert f"{ok} 3.0" in urllib.request.urlopen(url, timeout=5).read().decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
