"""``ortel top``: numbers from a real recorder and a real endpoint, rendering captured from a rich
console, the live loop driven headlessly, the command's errors, and once under tmux for real.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from harness import OrtelServe, free_port, require_tool
from rich.console import Console

from ortel.exporter import top as t
from ortel.exporter.cli import cli, main
from ortel.instrumentation import start_http_server, track
from ortel.instrumentation.recorder import Recorder


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.close()


def infer(rec: Recorder, ok: int, errors: int = 0, model: str = "resnet") -> None:
    for _ in range(ok):
        with track(model, provider="CPUExecutionProvider", recorder=rec):
            pass
    for _ in range(errors):
        with pytest.raises(ValueError), track(model, provider="CPUExecutionProvider", recorder=rec):
            raise ValueError("bad input")


def text_of(renderable, width: int = 150) -> str:
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


# --- numbers --------------------------------------------------------------------------------------
def test_rates_span_the_window_and_survive_resets():
    r = t.Rates(window=5.0)
    r.update(0.0, {"a": 10.0})
    assert r.rate("a") is None  # one fetch: no interval yet
    r.update(1.0, {"a": 20.0, "b": 1.0})
    assert r.rate("a") == 10.0
    assert r.rate("b") is None  # appeared within the window
    r.update(7.0, {"a": 80.0, "b": 4.0})
    assert r.rate("a") == pytest.approx((80 - 20) / 6)  # the fetch at 0.0 has left the window
    assert r.rate("b") == pytest.approx(3 / 6)
    r.update(8.0, {"a": 5.0, "b": 4.0})  # "a" restarted (process restart): counts from 0
    assert r.rate("a") == pytest.approx(5 / 7)
    assert r.rate("missing") is None


def test_view_of_a_real_recorder(recorder):
    top = t.Top(t.RecorderSource(recorder), rate_window=5.0)
    infer(recorder, ok=10, errors=1)
    first = top.poll(now=100.0)
    assert [(r.model, r.throughput) for r in first.rows] == [("resnet", None)]
    infer(recorder, ok=30, errors=2)
    view = top.poll(now=102.0)
    (row,) = view.rows
    assert row.provider == "CPUExecutionProvider"
    assert row.throughput == pytest.approx(32 / 2)  # every outcome counts
    assert row.errors == pytest.approx(2 / 2)
    assert row.error_ratio == pytest.approx(1 / 16)
    assert row.p50 is not None and 0 < row.p50 <= row.p99 < 1
    assert row.joules_per_inference is None  # nothing attributes energy: unknown, not 0
    assert view.cpu_busy is None and view.power == () and view.hottest is None


def test_no_errors_reads_zero_once_rates_exist(recorder):
    top = t.Top(t.RecorderSource(recorder))
    infer(recorder, ok=5)
    top.poll(now=0.0)
    infer(recorder, ok=5)
    (row,) = top.poll(now=1.0).rows
    assert (row.throughput, row.errors, row.error_ratio) == (5.0, 0.0, 0.0)


def test_host_power_temperature_and_operators_from_samples():
    from ortel.core import catalog as c

    def samples(op_seconds: float) -> t.Samples:
        return {
            c.CPU_UTILIZATION.name: [({"mode": "user"}, 0.25), ({"mode": "idle"}, 0.7)]
            + [({"mode": "iowait"}, 0.05)],
            c.MEMORY_USED.name: [({}, 2 * 2**30)],
            c.MEMORY_TOTAL.name: [({}, 8 * 2**30)],
            c.POWER.name: [
                ({"source": "rapl", "device": "0", "zone": "package-0"}, 12.5),
                ({"source": "estimated", "device": "cpu", "zone": "package"}, 30.0),
            ],
            c.TEMPERATURE.name: [({"chip": "coretemp", "sensor": "temp1", "label": "P0"}, 61.0)],
            c.THERMAL_ZONE_TEMPERATURE.name: [({"zone": "0", "type": "x86_pkg_temp"}, 48.0)],
            c.INFERENCES.name: [
                ({"model": "m", "provider": "CPU", "status": "ok"}, 10 * op_seconds)
            ],
            c.ENERGY_PER_INFERENCE.name: [
                ({"model": "m", "source": "estimated"}, 0.5),
                ({"model": "m", "source": "measured"}, 2e-4),  # the measurement wins
            ],
            f"{c.OPERATOR_DURATION.name}_sum": [
                ({"model": "m", "op_type": "MatMul", "provider": "CPU"}, 3 * op_seconds),
                ({"model": "m", "op_type": "Relu", "provider": "CPU"}, op_seconds),
            ],
        }

    class Fixed:
        description = "fixed"

        def __init__(self) -> None:
            self.n = 0

        def fetch(self) -> t.Samples:
            self.n += 1
            return samples(float(self.n))

    top = t.Top(Fixed())
    top.poll(now=0.0)
    view = top.poll(now=1.0)
    assert view.cpu_busy == pytest.approx(0.25)
    assert view.hottest == t.Reading("coretemp P0 temp1", 61.0)
    assert [(p.where, p.value, p.estimated) for p in view.power] == [
        ("package-0 (rapl)", 12.5, False),
        ("package (estimated)", 30.0, True),
    ]
    assert view.operators == {"m": (("MatMul", 0.75), ("Relu", 0.25))}
    (row,) = view.rows
    assert (row.joules_per_inference, row.energy_estimated) == (2e-4, False)
    # 10 inferences/s: whole-host CPU+DRAM joules per inference, measured and estimated apart.
    assert view.host_energy_per_inference == (
        t.Reading("estimated", 3.0, True),
        t.Reading("rapl", 1.25, False),
    )
    out = " ".join(text_of(t.render(view, t.State(), "fixed", 10)).split())  # unwrap lines
    assert "CPU busy 25%" in out and "2.0 GiB / 8.0 GiB" in out
    assert "package (estimated) ≈30.0 W" in out and "hottest 61 °C (coretemp P0 temp1)" in out
    assert "top operators m: MatMul 75% Relu 25%" in out
    assert re.search(r"m CPU 10\.0 unknown unknown 0\.0 0\.00% 200 µJ", out), out
    assert "energy/inference (whole host) ≈3 J (estimated), 1.25 J (rapl)" in out


# --- keys and order -------------------------------------------------------------------------------
def rows() -> list[t.Row]:
    return [
        t.Row("a", "CPU", 5.0, 1e-3, 2e-3, 0.0, 0.0, 0.25),
        t.Row("b", "CPU", 50.0, 3e-3, 9e-3, 1.0, 0.02, 0.003, energy_estimated=True),
        t.Row("c", "CUDA", None, None, None, None, None, None),
    ]


def test_keys_sort_reverse_pick_and_quit():
    s = t.State()
    models = ["a", "b", "c"]
    assert [r.model for r in t.ordered(rows(), s)] == ["b", "a", "c"]  # unknown last
    assert s.key("s", models) and s.sort == "p50"
    assert [r.model for r in t.ordered(rows(), s)] == ["b", "a", "c"]
    assert s.key("r", models) and s.reverse
    assert [r.model for r in t.ordered(rows(), s)] == ["a", "b", "c"]
    for _ in range(3):
        s.key("s", models)
    assert s.sort == "model" and [r.model for r in t.ordered(rows(), s)] == ["c", "b", "a"]
    assert s.key("m", models) and s.focus == "a"
    assert s.key("m", models) and s.focus == "b"
    assert [r.model for r in t.ordered(rows(), s)] == ["b"]
    s.key("m", models), s.key("m", models)
    assert s.focus is None  # past the last model: all again
    s.key("m", models)
    assert s.key("a", models) and s.focus is None
    assert s.key("x", models)  # unknown keys are ignored
    assert not s.key("q", models)


def test_render_marks_estimated_energy():
    out = text_of(t.render(t.View(rows=tuple(rows())), t.State(), "somewhere", 10))
    assert re.search(r"\ba +CPU .* 250 mJ", out) and re.search(r"\bb +CPU .* ≈3 mJ", out), out


def test_render_shows_unknown_not_zero():
    view = t.View(rows=tuple(rows()))
    out = text_of(t.render(view, t.State(focus="c"), "somewhere", 10))
    line = next(ln for ln in out.splitlines() if " CUDA " in ln)
    assert line.count("unknown") == 6 and " 0" not in line
    assert "model: c" in out and "power unknown" in out and "hottest unknown" in out
    assert "energy/inference (whole host) unknown" in out


# --- real endpoint --------------------------------------------------------------------------------
@pytest.fixture
def endpoint(recorder) -> Iterator[str]:
    port = free_port()
    server, thread = start_http_server(port, "127.0.0.1", recorder=recorder)
    yield f"http://127.0.0.1:{port}/metrics"
    server.shutdown()
    thread.join(5)


def test_http_source_reads_a_real_endpoint(recorder, endpoint):
    infer(recorder, ok=3, errors=1)
    samples = t.HttpSource(endpoint).fetch()
    from ortel.core import catalog as c

    calls = {lb["status"]: v for lb, v in samples[c.INFERENCES.name]}
    assert calls == {"ok": 3.0, "error": 1.0}


def test_only_the_samples_a_frame_reads_are_parsed(recorder, endpoint):
    """Dropping the rest before parsing changes nothing top shows."""
    from prometheus_client.parser import text_string_to_metric_families

    infer(recorder, ok=7, errors=2)
    with urllib.request.urlopen(endpoint) as r:
        body = r.read().decode()
    everything = t._collect(text_string_to_metric_families(body))
    kept = t.HttpSource(endpoint).fetch()
    assert set(kept) == set(everything) & t.WANTED
    assert {k: sorted(map(repr, v)) for k, v in kept.items()} == {
        k: sorted(map(repr, everything[k])) for k in kept
    }
    assert len(t.only(body, t.WANTED)) < len(body) / 3  # buckets, _created, HELP/TYPE gone
    assert t.HttpSource(endpoint, names=None).fetch() == everything


def test_a_page_that_is_not_ortel_is_an_error():
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html><body>grafana</body></html>\n")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        with pytest.raises(t.FetchError, match="is not an ortel /metrics endpoint"):
            t.HttpSource(url).fetch()
    finally:
        server.shutdown()


def test_http_source_errors_are_one_line():
    port = free_port()
    with pytest.raises(t.FetchError, match=rf"cannot reach http://127.0.0.1:{port}/metrics"):
        t.HttpSource(f"http://127.0.0.1:{port}/metrics", timeout=1).fetch()


def test_fetch_error_keeps_the_last_view(recorder):
    class Flaky(t.RecorderSource):
        fail = False

        def fetch(self) -> t.Samples:
            if self.fail:
                raise t.FetchError("cannot reach x")
            return super().fetch()

    src = Flaky(recorder)
    top = t.Top(src)
    infer(recorder, ok=2)
    good = top.poll(now=0.0)
    src.fail = True
    bad = top.poll(now=1.0)
    assert bad.error == "cannot reach x" and bad.rows == good.rows
    assert "cannot reach x" in text_of(t.render(bad, t.State(), "x", 10))


def test_live_loop_refreshes_at_10_hz_and_obeys_keys(recorder):
    infer(recorder, ok=50)
    keys = iter([None] * 12 + ["s", "m"] + [None] * 3 + ["q"])
    start = time.monotonic()

    def read_key(timeout: float) -> str | None:
        key = next(keys)
        if key is None:
            time.sleep(timeout)
        return key

    console = Console(file=io.StringIO(), force_terminal=True, width=120, record=True)
    state = t.run_live(t.Top(t.RecorderSource(recorder)), t.State(), 10.0, console, read_key)
    elapsed = time.monotonic() - start
    assert state.sort == "p50" and state.focus == "resnet"
    # 15 waits of 1/10 s: one frame each, plus the two redraws that answered keys.
    assert state.frames >= 15
    assert state.frames / elapsed >= 9.0, (state.frames, elapsed)
    assert "resnet" in console.export_text()


# --- the command ----------------------------------------------------------------------------------
def test_command_is_registered_lazily():
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0 and "top" in res.output


def test_once_prints_a_frame(recorder, endpoint):
    infer(recorder, ok=20, errors=1)
    res = CliRunner().invoke(cli, ["top", "--once", "--url", endpoint], env={"COLUMNS": "100"})
    assert res.exit_code == 0, res.output
    assert re.search(r"resnet +CPU +[\d,]+\.\d", res.output), res.output
    assert "sort: throughput" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "ftp://x/metrics"], "expected an http:// or https:// URL"),
        (["--refresh-hz", "0"], "must be a number greater than 0"),
        (["--once", "--url", "http://127.0.0.1:{port}/metrics"], "cannot reach"),
        ([], "needs a terminal"),
        (["--once", "--bearer-token-file", "/nonexistent/token"], "cannot read a token"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    args = [a.replace("{port}", str(free_port())) for a in args]
    with pytest.raises(SystemExit) as exit_:
        main(["top", *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


# --- under a real terminal ------------------------------------------------------------------------
class Tmux:
    def __init__(self, exe: str) -> None:
        self.exe = exe
        self.socket = f"ortel-test-{uuid.uuid4().hex[:8]}"  # a private server: no interference

    def __call__(self, *args: str) -> str:
        res = subprocess.run(
            [self.exe, "-L", self.socket, *args], capture_output=True, text=True, timeout=10
        )
        assert res.returncode == 0, res.stderr
        return res.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "top")

    def wait_for(self, pattern: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if re.search(pattern, screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} never appeared; screen:\n{self.screen()}")


@pytest.mark.slow
def test_under_tmux_against_a_live_daemon():
    tmux = Tmux(require_tool("tmux"))
    with OrtelServe("--demo") as url:
        launcher = "import sys; from ortel.exporter.cli import main; sys.exit(main())"
        # env -u: a COLUMNS inherited by the tmux server would pin rich to that width.
        # The shell prints the exit code: tmux's #{pane_dead_status} is not reliably set here.
        cmd = ["sh", "-c", '"$@"; echo "ortel-top-exit=$?"', "sh"]
        cmd += ["env", "-u", "COLUMNS", "-u", "LINES", sys.executable, "-c", launcher, "top"]
        tmux(
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "80",
            "-y",
            "24",
            *cmd,
            "--url",
            f"{url}/metrics",
        )
        try:
            tmux("set-option", "-t", "top", "remain-on-exit", "on")
            # A standard 80x24 terminal: the whole row fits, numbers untruncated.
            screen = tmux.wait_for(
                r"demo_mlp +CPU +[\d,]+\.\d +[\d.]+ [nµm]?s +[\d.]+ [nµm]?s +[\d.]+ +[\d.]+%"
            )
            assert "sort: throughput ↓" in screen and "CPU busy" in screen
            tmux("send-keys", "-t", "top", "s")
            tmux.wait_for("sort: p50")
            tmux("send-keys", "-t", "top", "m")
            tmux.wait_for("model: demo_mlp")
            tmux("send-keys", "-t", "top", "q")
            # Either our echo or tmux's remain-on-exit banner carries the exit code.
            screen = tmux.wait_for(r"ortel-top-exit=\d+|Pane is dead \(status \d+")
            codes = re.findall(r"ortel-top-exit=(\d+)|Pane is dead \(status (\d+)", screen)
            assert {a or b for a, b in codes} == {"0"}, screen
        finally:
            subprocess.run([tmux.exe, "-L", tmux.socket, "kill-server"], capture_output=True)
