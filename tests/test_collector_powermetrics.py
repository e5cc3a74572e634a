"""powermetrics against recorded plist streams, and the real runner against a stand-in binary."""

from __future__ import annotations

import io
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import FIXTURES, as_dict

from ortel.collectors import powermetrics as pm
from ortel.collectors.base import CollectorOptions, NoDataError
from ortel.core import catalog

SONOMA = FIXTURES / "powermetrics" / "m2-sonoma.plist"  # macOS 14: *_power in mW
MONTEREY = FIXTURES / "powermetrics" / "m1pro-monterey.plist"  # macOS 12: *_energy in mJ only
# (elapsed_ns, cpu mW, gpu mW, ane mW) of the three Sonoma samples
SONOMA_SAMPLES = [
    (1_004_592_125, 1250.5, 88.0, 0.0),
    (1_001_934_167, 4312.75, 240.25, 1032.0),
    (998_017_042, 980.0, 35.5, 0.0),
]


def docs(path: Path) -> list[bytes]:
    return list(pm.split_documents(io.BytesIO(path.read_bytes())))


def recorded(*paths: Path):
    """A runner that replays recorded streams and records the command it was given."""
    calls: list[list[str]] = []

    def runner(argv: list[str]) -> Iterator[bytes]:
        calls.append(argv)
        for p in paths:
            yield from docs(p)

    runner.calls = calls  # type: ignore[attr-defined]
    return runner


def collector(runner, **kw) -> pm.PowermetricsCollector:
    return pm.PowermetricsCollector(
        1.0, runner=runner, which=lambda name: f"/usr/bin/{name}", first_sample_timeout=10, **kw
    )


def series(got: dict, metric) -> dict[str, float]:
    return {lab[2]: v for (n, lab), v in got.items() if n == metric.name}


def test_stream_splits_on_nul_whatever_the_read_size():
    whole = SONOMA.read_bytes()
    assert whole.count(b"\0") == 2 and whole.startswith(b"<?xml")

    class Trickle(io.BytesIO):
        def read1(self, n: int = -1) -> bytes:
            return super().read1(7)  # a pipe hands over whatever arrived

    got = list(pm.split_documents(Trickle(whole)))
    assert [d.rstrip(b"\n") for d in got] == [d.rstrip(b"\n") for d in whole.split(b"\0")]
    assert all(d.rstrip().endswith(b"</plist>") for d in got)


def test_parse_sonoma_sample_mw_to_w():
    sample = pm.parse_sample(docs(SONOMA)[1])
    assert sample.elapsed_s == 1.001934167
    assert sample.watts == {"cpu": 4.31275, "gpu": 0.24025, "ane": 1.032}


def test_parse_monterey_sample_mj_over_the_window():
    first, second = (pm.parse_sample(d) for d in docs(MONTEREY))
    assert first.watts == pytest.approx({"cpu": 2.31, "gpu": 0.12, "ane": 0.0})
    assert second.watts == pytest.approx({"cpu": 1.2, "gpu": 0.08, "ane": 0.5})  # 0.5 s window


@pytest.mark.parametrize(
    "doc",
    [
        b"not xml",
        b'<?xml version="1.0"?><plist version="1.0"><array/></plist>',
        # An Intel Mac: no Apple Silicon power keys.
        b'<?xml version="1.0"?><plist version="1.0"><dict><key>elapsed_ns</key>'
        b"<integer>1000</integer><key>processor</key><dict><key>package_watts</key><real>9</real>"
        b"</dict></dict></plist>",
    ],
)
def test_unusable_samples_are_value_errors(doc):
    with pytest.raises(ValueError, match="powermetrics"):
        pm.parse_sample(doc)


def live(*paths: Path):
    """A runner that replays recorded streams, then stays open like a running powermetrics."""
    done = threading.Event()

    def runner(argv: list[str]) -> Iterator[bytes]:
        for p in paths:
            yield from docs(p)
        done.wait(30)

    runner.stop = done.set  # type: ignore[attr-defined]
    return runner


def wait_samples(c: pm.PowermetricsCollector, n: int) -> None:
    for _ in range(200):
        if c._stream is not None and c._stream.samples >= n:
            return
        c.join(0.05)
    raise AssertionError(f"{c._stream.samples if c._stream else 0} samples, expected {n}")


def test_power_is_the_latest_sample_and_energy_the_sum_over_windows():
    runner = live(SONOMA)
    c = collector(runner)
    list(c.collect())  # starts powermetrics and waits for its first sample
    wait_samples(c, 3)
    got = as_dict(c.collect())
    runner.stop()
    assert series(got, catalog.POWER) == {"cpu": 0.98, "gpu": 0.0355, "ane": 0.0}
    joules = {
        comp: sum(ns / 1e9 * s[i] / 1000 for ns, *s in SONOMA_SAMPLES)
        for i, comp in enumerate(("cpu", "gpu", "ane"))
    }
    assert series(got, catalog.ENERGY) == pytest.approx(joules)
    assert (catalog.POWER.name, ("powermetrics", "soc", "cpu")) in got
    assert {catalog.get(name) for name, _ in got} == set(pm.SPEC.metrics)


def test_an_exit_after_samples_is_a_failure_and_the_next_sample_restarts():
    runner = recorded(MONTEREY)
    c = collector(runner)
    c.start()
    c.join(10)
    with pytest.raises(RuntimeError, match="powermetrics output ended"):
        list(c.collect())
    c.start()  # what the next collect() does
    c.join(10)
    assert len(runner.calls) == 2
    # Energy carries on from the first run: 2 x (2.31 J + 1.2 W x 0.5 s).
    assert c._stream.joules["cpu"] == pytest.approx(2 * (2.31 + 0.6))


def test_the_command_line():
    runner = recorded(SONOMA)
    c = pm.PowermetricsCollector(0.5, runner=runner, which=lambda n: f"/usr/bin/{n}")
    c.start()
    assert runner.calls == [
        [
            "/usr/bin/powermetrics",
            "--samplers",
            "cpu_power,gpu_power,ane_power",
            "-f",
            "plist",
            "-i",
            "500",
        ]
    ]


def test_not_on_macos_is_no_data():
    c = pm.PowermetricsCollector(which=lambda name: None)
    with pytest.raises(NoDataError, match=r"powermetrics not found \(macOS only\)"):
        list(c.collect())


def test_only_unusable_samples_then_exit_is_no_data():
    def runner(argv):
        yield b"<plist><dict><key>elapsed_ns</key><integer>5</integer></dict></plist>"

    with pytest.raises(NoDataError, match="no cpu/gpu/ane power"):
        list(collector(runner).collect())


# --- the real runner, with a stand-in for the powermetrics binary -------------------------------


def stand_in(tmp_path: Path, body: str) -> str:
    exe = tmp_path / "powermetrics"
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(0o755)
    return str(exe)


def test_runner_streams_documents_and_reports_the_exit(tmp_path):
    exe = stand_in(tmp_path, f'cat "{SONOMA}"\necho "sampler stopped" >&2\nexit 3\n')
    got = []
    with pytest.raises(pm.PowermetricsExited, match="exited with code 3: sampler stopped"):
        for doc in pm.PowermetricsProcess([exe, "--samplers", pm.SAMPLERS]):
            got.append(pm.parse_sample(doc))
    assert [s.watts["cpu"] for s in got] == [1.2505, 4.31275, 0.98]


def test_without_root_is_no_data_with_the_hint(tmp_path):
    exe = stand_in(tmp_path, 'echo "powermetrics must be invoked as the superuser" >&2\nexit 1\n')
    c = pm.PowermetricsCollector(command=exe, first_sample_timeout=10)
    with pytest.raises(NoDataError) as e:
        list(c.collect())
    assert str(e.value) == (
        "powermetrics exited with code 1: powermetrics must be invoked as the superuser; "
        "run ortel serve as root (sudo)"
    )


def test_live_stand_in_end_to_end_and_close_stops_it(tmp_path):
    # Writes the recorded samples, then stays alive like the real tool until it is stopped.
    exe = stand_in(tmp_path, f'cat "{SONOMA}"\nexec sleep 60\n')
    c = pm.PowermetricsCollector(1.0, command=exe, first_sample_timeout=10)
    try:
        list(c.collect())
        wait_samples(c, 3)
        assert series(as_dict(c.collect()), catalog.POWER)["cpu"] == 0.98
        proc = c._docs.proc
        assert proc.poll() is None
    finally:
        c.close()
    assert proc.wait(5) == -signal.SIGTERM


def test_spec():
    assert pm.SPEC.name == "powermetrics" and pm.SPEC.enabled_by_default
    c = pm.SPEC.factory(CollectorOptions(interval=2.0))
    assert isinstance(c, pm.PowermetricsCollector) and c.argv("pm")[-1] == "2000"
