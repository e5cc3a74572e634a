"""The sampler: one thread per collector, latest results plus self-metrics, failures isolated."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from helpers import as_dict

from ortel.collectors.base import Collector, NoDataError
from ortel.core import catalog as c
from ortel.core.readings import Reading, reading
from ortel.exporter import sampler as sampler_mod
from ortel.exporter.sampler import Sampler

FAST = 0.05  # seconds between samples: small, so the loop tests finish quickly

_ids = itertools.count()


def unique(name: str) -> str:
    """Collector names are thread names (ortel-NAME): keep them unique across tests."""
    return f"{name}{next(_ids)}"


class Fixed(Collector):
    """Always the same readings."""

    def __init__(self, name: str, *readings: Reading) -> None:
        self.name = name
        self.readings = readings
        self.calls = 0

    def collect(self) -> Iterator[Reading]:
        self.calls += 1
        yield from self.readings


class Counting(Collector):
    """A counter that goes up by one per sample, so a test can see samples keep coming."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    def collect(self) -> Iterator[Reading]:
        self.calls += 1
        yield reading(c.CONTEXT_SWITCHES, self.calls)


class Raising(Collector):
    def __init__(self, name: str, exc: Callable[[], BaseException]) -> None:
        self.name = name
        self.exc = exc
        self.calls = 0

    def collect(self) -> Iterator[Reading]:
        self.calls += 1
        raise self.exc()


class HalfThenRaise(Collector):
    """Yields one reading, then fails: nothing of a failed sample may be exported."""

    def __init__(self, name: str) -> None:
        self.name = name

    def collect(self) -> Iterator[Reading]:
        yield reading(c.MEMORY_TOTAL, 1.0)
        raise ValueError("parse error half way")


class Hangs(Collector):
    """Succeeds ``ok_samples`` times, then blocks on an Event until the test releases it."""

    def __init__(self, name: str, ok_samples: int = 0) -> None:
        self.name = name
        self.ok_samples = ok_samples
        self.calls = 0
        self.release = threading.Event()

    def collect(self) -> Iterator[Reading]:
        self.calls += 1
        if self.calls > self.ok_samples:
            self.release.wait(30)
        yield reading(c.MEMORY_TOTAL, 42.0)


def self_metrics(
    readings: list[Reading], name: str
) -> tuple[float | None, float | None, float | None]:
    """(duration, success, has_data) of one collector from a readings list."""
    d = as_dict(readings)
    return (
        d.get((c.COLLECTOR_DURATION.name, (name,))),
        d.get((c.COLLECTOR_SUCCESS.name, (name,))),
        d.get((c.COLLECTOR_HAS_DATA.name, (name,))),
    )


def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.01)


@pytest.fixture
def started() -> Iterator[Callable[..., Sampler]]:
    """``started(collectors, interval, wait)`` -> a running Sampler, always stopped afterwards."""
    running: list[Sampler] = []

    def start(collectors: list[Collector], interval: float = FAST, wait: float = 2.0) -> Sampler:
        s = Sampler(collectors, interval)
        running.append(s)
        s.start(wait=wait)
        return s

    yield start
    for s in running:
        s.stop()


def test_success_exports_readings_and_self_metrics(started: Callable[..., Sampler]) -> None:
    name = unique("mem")
    col = Fixed(name, reading(c.MEMORY_TOTAL, 1024.0), reading(c.PAGE_FAULTS, 7, type="major"))
    before = time.time()
    s = started([col])
    d = as_dict(s.readings())
    duration = d.pop((c.COLLECTOR_DURATION.name, (name,)))
    assert isinstance(duration, float) and 0 <= duration < 1
    assert before <= d.pop((c.COLLECTOR_LAST_SUCCESS.name, (name,))) <= time.time()
    assert d == {
        (c.MEMORY_TOTAL.name, ()): 1024.0,
        (c.PAGE_FAULTS.name, ("major",)): 7,
        (c.COLLECTOR_SUCCESS.name, (name,)): 1.0,
        (c.COLLECTOR_HAS_DATA.name, (name,)): 1.0,
    }


def test_every_collector_gets_its_own_self_metrics(started: Callable[..., Sampler]) -> None:
    a, b = unique("a"), unique("b")
    s = started([Fixed(a, reading(c.MEMORY_TOTAL, 1.0)), Raising(b, lambda: OSError("boom"))])
    readings = s.readings()
    assert self_metrics(readings, a)[1:] == (1.0, 1.0)
    assert self_metrics(readings, b)[1:] == (0.0, 0.0)
    assert as_dict(readings)[(c.MEMORY_TOTAL.name, ())] == 1.0


def test_no_data_is_success_without_data_or_readings(started: Callable[..., Sampler]) -> None:
    name = unique("nodata")
    s = started([Raising(name, lambda: NoDataError("no /sys/class/powercap here"))])
    readings = s.readings()
    _, success, has_data = self_metrics(readings, name)
    assert (success, has_data) == (1.0, 0.0)
    self_names = {
        c.COLLECTOR_DURATION.name,
        c.COLLECTOR_SUCCESS.name,
        c.COLLECTOR_HAS_DATA.name,
        c.COLLECTOR_LAST_SUCCESS.name,  # "no data here" is a success
    }
    assert {r.metric.name for r in readings} == self_names


def test_exception_is_failure(started: Callable[..., Sampler]) -> None:
    name = unique("broken")
    s = started([Raising(name, lambda: RuntimeError("bug"))])
    readings = s.readings()
    _, success, has_data = self_metrics(readings, name)
    assert (success, has_data) == (0.0, 0.0)
    assert len(readings) == 3  # only the self-metrics


def test_a_failed_sample_exports_nothing_it_yielded_before_failing() -> None:
    col = HalfThenRaise(unique("half"))
    sample = Sampler([col], FAST).sample_once(col)
    assert (sample.success, sample.readings) == (False, [])


def test_sample_once_records_duration_and_finish_time() -> None:
    col = Fixed(unique("f"), reading(c.MEMORY_TOTAL, 1.0))
    before = time.monotonic()
    sample = Sampler([col], FAST).sample_once(col)
    assert sample.success and sample.has_data
    assert sample.duration >= 0
    assert before <= sample.finished <= time.monotonic()


def _messages(caplog: pytest.LogCaptureFixture, name: str) -> list[tuple[int, str]]:
    return [
        (r.levelno, r.getMessage())
        for r in caplog.records
        if r.name == "ortel.exporter" and f"collector {name}:" in r.getMessage()
    ]


def test_failure_is_logged_once_not_per_sample(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ortel.exporter")
    col = Raising(unique("flaky"), lambda: RuntimeError("disk on fire"))
    s = Sampler([col], FAST)
    for _ in range(5):
        assert not s.sample_once(col).success
    assert _messages(caplog, col.name) == [
        (logging.WARNING, f"collector {col.name}: failed: RuntimeError: disk on fire")
    ]


def test_no_data_is_logged_once_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ortel.exporter")
    col = Raising(unique("absent"), lambda: NoDataError("no RAPL"))
    s = Sampler([col], FAST)
    for _ in range(5):
        s.sample_once(col)
    assert _messages(caplog, col.name) == [
        (logging.INFO, f"collector {col.name}: no data on this machine: no RAPL")
    ]


def test_a_failure_after_recovery_is_logged_again(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="ortel.exporter")
    name = unique("recovers")
    failing = Raising(name, lambda: RuntimeError("down"))
    working = Fixed(name)
    s = Sampler([failing], FAST)
    for col in (failing, failing, working, working, failing):
        s.sample_once(col)
    warnings = [m for level, m in _messages(caplog, name) if level == logging.WARNING]
    assert len(warnings) == 2  # one per outage, none while it stays down or up


def test_failure_is_logged_once_while_the_loop_runs(
    started: Callable[..., Sampler], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ortel.exporter")
    col = Raising(unique("loop"), lambda: RuntimeError("still broken"))
    started([col])
    wait_until(lambda: col.calls >= 4)
    assert len(_messages(caplog, col.name)) == 1


def test_a_hung_collector_does_not_delay_the_others(
    started: Callable[..., Sampler],
) -> None:
    fast, hung = Counting(unique("fast")), Hangs(unique("hung"), ok_samples=1)
    try:
        t0 = time.monotonic()
        s = started([hung, fast], interval=FAST, wait=1.0)
        assert time.monotonic() - t0 < 0.5  # both had their first sample at once
        wait_until(lambda: hung.calls >= 2)  # now blocked inside collect()

        hung_at = time.monotonic()
        # The hung collector's last good sample still counts until its timeout...
        assert self_metrics(s.readings(), hung.name)[1] == 1.0
        seen = fast.calls
        wait_until(lambda: fast.calls >= seen + 3, timeout=2.0)  # ...and the fast one goes on
        latest = as_dict(s.readings())[(c.CONTEXT_SWITCHES.name, ())]
        assert latest >= seen + 2

        # A sample running longer than the timeout (2 intervals, at least 1 s): failed.
        assert s.timeout == sampler_mod.default_timeout(FAST) == sampler_mod.MIN_TIMEOUT
        wait_until(lambda: self_metrics(s.readings(), hung.name)[1] == 0.0, timeout=s.timeout + 2)
        assert time.monotonic() - hung_at >= s.timeout - FAST
        readings = s.readings()
        assert self_metrics(readings, hung.name)[1:] == (0.0, 0.0)
        assert (c.MEMORY_TOTAL.name, ()) not in as_dict(readings)  # its stale readings are gone
        assert self_metrics(readings, fast.name)[1:] == (1.0, 1.0)
    finally:
        hung.release.set()


def test_a_collector_hung_from_the_start_is_failed_at_once(
    started: Callable[..., Sampler],
) -> None:
    fast, hung = Counting(unique("fast")), Hangs(unique("stuck"))
    try:
        s = started([fast, hung], wait=0.2)  # start() gives up waiting for the stuck one
        readings = s.readings()
        assert self_metrics(readings, hung.name)[1:] == (0.0, 0.0)
        assert self_metrics(readings, fast.name)[1:] == (1.0, 1.0)
        assert (c.CONTEXT_SWITCHES.name, ()) in as_dict(readings)
    finally:
        hung.release.set()


def test_nothing_is_reported_as_success_before_start() -> None:
    name = unique("idle")
    s = Sampler([Fixed(name, reading(c.MEMORY_TOTAL, 1.0))], FAST)
    assert self_metrics(s.readings(), name) == (0.0, 0.0, 0.0)


def _threads(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"ortel-{prefix}")]


def test_stop_joins_the_threads_promptly() -> None:
    names = [unique("join"), unique("join")]
    # A long interval: stop() must wake the loops, not wait for the next tick.
    s = Sampler([Fixed(n) for n in names], interval=30.0)
    s.start()
    assert all(_threads(n) for n in names)
    t0 = time.monotonic()
    s.stop()
    assert time.monotonic() - t0 < 1.0
    assert not any(_threads(n) for n in names)


def test_samples_repeat_at_the_interval(started: Callable[..., Sampler]) -> None:
    col = Counting(unique("tick"))
    started([col], interval=FAST)
    t0 = time.monotonic()
    wait_until(lambda: col.calls >= 5, timeout=2.0)
    # Five samples at 0.05 s take about 0.2 s; far less would mean the loop is spinning.
    assert time.monotonic() - t0 >= 3 * FAST


# --- failures and hangs: last good sample's age, timeout, the scrape never waits ---------------


class Toggle(Collector):
    """Succeeds while ``ok`` is set, raises otherwise."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ok = True
        self.calls = 0

    def collect(self) -> Iterator[Reading]:
        self.calls += 1
        if not self.ok:
            raise OSError("sensor gone")
        yield reading(c.MEMORY_TOTAL, 7.0)


def last_success(readings: list[Reading], name: str) -> float | None:
    return as_dict(readings).get((c.COLLECTOR_LAST_SUCCESS.name, (name,)))  # type: ignore[return-value]


def test_last_success_is_absent_before_any_success(started: Callable[..., Sampler]) -> None:
    name = unique("never")
    s = started([Raising(name, lambda: RuntimeError("always"))])
    wait_until(lambda: s._samples[name].finished > 0)
    assert last_success(s.readings(), name) is None  # unknown, not 0


def test_a_failing_collector_keeps_its_last_success_time(started: Callable[..., Sampler]) -> None:
    col = Toggle(unique("toggle"))
    s = started([col])
    wait_until(lambda: last_success(s.readings(), col.name) is not None)
    col.ok = False
    calls = col.calls
    wait_until(lambda: col.calls >= calls + 2 and self_metrics(s.readings(), col.name)[1] == 0)
    frozen = last_success(s.readings(), col.name)
    wait_until(lambda: col.calls >= calls + 4)
    readings = s.readings()
    assert last_success(readings, col.name) == frozen  # no success since: the age grows
    assert (c.MEMORY_TOTAL.name, ()) not in as_dict(readings)  # old values are not served
    assert time.time() - frozen >= 2 * FAST
    col.ok = True
    wait_until(lambda: (last_success(s.readings(), col.name) or 0) > frozen)
    assert self_metrics(s.readings(), col.name)[1] == 1.0


def test_the_timeout_can_be_set(started: Callable[..., Sampler]) -> None:
    hung = Hangs(unique("short"), ok_samples=1)
    try:
        s = Sampler([hung], FAST, timeout=0.3)
        s.start()
        wait_until(lambda: hung.calls >= 2)
        t0 = time.monotonic()
        assert self_metrics(s.readings(), hung.name)[1] == 1.0
        wait_until(lambda: self_metrics(s.readings(), hung.name)[1] == 0.0, timeout=3)
        assert 0.3 - FAST <= time.monotonic() - t0 < 1.5
        # While hung, the duration is how long the sample has been running.
        assert self_metrics(s.readings(), hung.name)[0] >= 0.3
    finally:
        hung.release.set()
        s.stop()


def test_a_hung_collector_recovers_when_its_sample_returns(
    started: Callable[..., Sampler],
) -> None:
    hung = Hangs(unique("back"), ok_samples=1)
    s = Sampler([hung], FAST, timeout=0.2)
    s.start()
    try:
        wait_until(lambda: hung.calls >= 2)
        wait_until(lambda: self_metrics(s.readings(), hung.name)[1] == 0.0)
        hung.ok_samples = 10**9  # from now on it answers at once
        hung.release.set()
        wait_until(lambda: self_metrics(s.readings(), hung.name)[1] == 1.0)
        assert as_dict(s.readings())[(c.MEMORY_TOTAL.name, ())] == 42.0
    finally:
        hung.release.set()
        s.stop()


def test_stop_does_not_wait_for_a_hung_collector_and_names_it() -> None:
    hung, fine = Hangs(unique("stuck")), Fixed(unique("fine"))
    s = Sampler([hung, fine], FAST)
    s.start(wait=0.2)
    t0 = time.monotonic()
    try:
        assert s.stop() == [hung.name]
        assert time.monotonic() - t0 < sampler_mod.STOP_GRACE + 0.5
    finally:
        hung.release.set()


def test_a_scrape_is_served_within_a_second_while_a_collector_hangs() -> None:
    """The issue's promise end to end over HTTP: a hung collector never delays /metrics, and
    only its own success drops to 0 (after the timeout: 1 s at this interval)."""
    import http.client

    from prometheus_client.parser import text_string_to_metric_families

    from ortel.exporter.http import make_server

    fast, hung = Counting(unique("ok")), Hangs(unique("hangs"), ok_samples=1)
    s = Sampler([fast, hung], FAST)
    s.start()
    server = make_server("127.0.0.1", 0, s.readings, [fast.name, hung.name])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    port = server.server_address[1]

    def scrape() -> tuple[float, dict[tuple[str, str], float]]:
        t0 = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/metrics")
        body = conn.getresponse().read().decode()
        conn.close()
        took = time.monotonic() - t0
        out = {}
        for fam in text_string_to_metric_families(body):
            for smp in fam.samples:
                out[(smp.name, smp.labels.get("collector", ""))] = smp.value
        return took, out

    try:
        wait_until(lambda: hung.calls >= 2)  # blocked from here on
        hung_at = time.time()
        worst = 0.0
        deadline = time.monotonic() + s.timeout + 3
        while True:
            took, m = scrape()
            worst = max(worst, took)
            if m[("ortel_scrape_collector_success", hung.name)] == 0.0:
                break
            assert time.monotonic() < deadline, "hung collector never reported as failed"
            time.sleep(0.05)
        print(f"worst scrape while a collector hung: {worst * 1e3:.1f} ms")  # docs/reliability.md
        assert worst < 1.0
        assert m[("ortel_scrape_collector_success", fast.name)] == 1.0
        assert m[("ortel_collector_last_success_timestamp_seconds", hung.name)] <= hung_at
        assert ("ortel_memory_total_bytes", "") not in m  # the hung one's readings are gone
        assert ("ortel_context_switches_total", "") in m  # the other's are there
    finally:
        hung.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
        s.stop()
