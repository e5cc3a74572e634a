import urllib.request

from harness import free_port

from ortel.instrumentation.recorder import Recorder
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
