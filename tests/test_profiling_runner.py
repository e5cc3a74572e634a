"""The benchmark loop: warm-up until steady, a measured phase bounded by duration and count,
concurrency, errors and Ctrl-C."""

from __future__ import annotations

import _thread
import itertools
import threading
import time

import numpy as np
import pytest

from ortel.profiling.runner import Policy, run, time_once

FAST = Policy(min_duration=0.05, min_samples=20, warmup_window=0.02, warmup_max=0.5)


class Decay:
    """A workload that starts slow and speeds up geometrically (a cold cache, a JIT, a GPU
    clocking up): ``fast + (slow - fast) * 0.85**k`` seconds on call k."""

    def __init__(self, slow: float, fast: float) -> None:
        self.slow, self.fast, self.calls = slow, fast, 0

    def __call__(self) -> None:
        k = self.calls
        self.calls += 1
        time.sleep(self.fast + (self.slow - self.fast) * 0.85**k)


def test_warm_up_ends_when_windows_agree_and_keeps_the_ramp_out_of_the_samples():
    fn = Decay(slow=0.008, fast=0.0005)
    p = Policy(min_duration=0.1, min_samples=50, warmup_window=0.02, warmup_max=10)
    r = run(fn, p)
    assert r.steady
    # At 0.85**k the extra latency is still above 10% of the fast latency until k ~ 25.
    assert len(r.warmup_latencies) >= 20
    assert len(r.windows) >= 3
    # Relative, so a busy machine (slower wake-ups everywhere) does not change the verdict:
    # the measured samples sit near the fast latency, far below the ramp's start.
    assert np.median(r.samples) < 0.3 * np.median(r.warmup_latencies[:5])
    assert r.warmup_seconds > 0


def test_warm_up_gives_up_at_its_maximum_and_says_so():
    calls = [0]

    def drifting() -> None:  # every call slower than the last: never steady
        calls[0] += 1
        time.sleep(0.0002 * (1 + calls[0] / 5))

    p = Policy(min_duration=0.02, min_samples=5, warmup_window=0.02, tolerance=0.01, warmup_max=0.2)
    r = run(drifting, p)
    assert not r.steady
    assert 0.2 <= r.warmup_seconds < 0.5
    assert len(r.samples) >= 5


def test_measured_phase_needs_both_duration_and_count():
    # Count reached long before the duration: the duration decides.
    r = run(lambda: None, Policy(min_duration=0.2, min_samples=10, warmup_window=0.01,
                                 warmup_max=0.05))  # fmt: skip
    assert r.measured_seconds >= 0.2
    assert len(r.samples) > 10
    # Duration reached long before the count: the count decides.
    r = run(lambda: time.sleep(0.001), Policy(min_duration=0.01, min_samples=150,
                                             warmup_window=0.01, warmup_max=0.05))  # fmt: skip
    assert len(r.samples) >= 150
    assert r.measured_seconds >= 150 * 0.001
    assert r.throughput == pytest.approx(len(r.samples) / r.measured_seconds)


def test_max_duration_caps_the_measured_phase():
    p = Policy(min_duration=10, min_samples=10**9, warmup_window=0.01, warmup_max=0.05,
               max_duration=0.1)  # fmt: skip
    t0 = time.perf_counter()
    r = run(lambda: time.sleep(0.0005), p)
    assert time.perf_counter() - t0 < 2
    assert 0.1 <= r.measured_seconds < 1


def test_sample_timestamps_are_ordered_and_inside_the_phase():
    r = run(lambda: time.sleep(0.0002), FAST)
    assert np.all(np.diff(r.sample_ends) >= 0)
    assert r.sample_ends[0] >= 0 and r.sample_ends[-1] == pytest.approx(r.measured_seconds)
    assert r.measure_ended - r.measure_started == pytest.approx(r.measured_seconds, abs=1e-6)


def test_concurrency_runs_requests_in_parallel():
    def request() -> None:
        time.sleep(0.004)  # releases the GIL, as onnxruntime does while it runs

    p = Policy(min_duration=0.25, min_samples=20, warmup_window=0.03, warmup_max=0.2)
    one = run(request, p, concurrency=1)
    four = run(request, p, concurrency=4)
    assert four.concurrency == 4
    assert four.throughput > 2.5 * one.throughput
    assert np.median(four.samples) < 0.004 * 3  # each request still takes about 4 ms


def test_errors_propagate_after_the_workers_stop():
    before = threading.active_count()  # other tests' threads may still be winding down
    for concurrency in (1, 3):
        counter = itertools.count(1)  # next() on a count is atomic under the GIL

        def flaky(counter=counter) -> None:
            if next(counter) == 30:
                raise RuntimeError("provider crashed")

        with pytest.raises(RuntimeError, match="provider crashed"):
            run(flaky, FAST, concurrency)
        assert threading.active_count() <= before  # no worker left behind


@pytest.mark.parametrize("concurrency", [1, 2])
def test_ctrl_c_keeps_what_was_measured(concurrency):
    p = Policy(min_duration=30, min_samples=10**9, warmup_window=0.01, warmup_max=0.05)
    timer = threading.Timer(0.3, _thread.interrupt_main)  # what Ctrl-C does to the main thread
    timer.start()
    t0 = time.perf_counter()
    r = run(lambda: time.sleep(0.0005), p, concurrency)
    timer.join()
    assert time.perf_counter() - t0 < 5
    assert r.interrupted
    assert len(r.samples) > 10 and r.measured_seconds > 0


def test_progress_reports_both_phases():
    seen: list[tuple[str, float, int]] = []
    run(lambda: time.sleep(0.0002), FAST, progress=lambda *a: seen.append(a))
    phases = [s[0] for s in seen]
    assert "warmup" in phases and "measure" in phases
    assert phases.index("warmup") < phases.index("measure")
    assert seen[-1][1] == pytest.approx(1.0) and seen[-1][2] >= FAST.min_samples


@pytest.mark.parametrize(
    "kw",
    [{"min_samples": 0}, {"warmup_window": 0}, {"windows": 1}, {"tolerance": 0},
     {"min_duration": -1}],
)  # fmt: skip
def test_policy_validation(kw):
    with pytest.raises(ValueError):
        Policy(**kw)


def test_bad_concurrency():
    with pytest.raises(ValueError):
        run(lambda: None, FAST, concurrency=0)


def test_time_once():
    assert 0.01 <= time_once(lambda: time.sleep(0.01)) < 1
