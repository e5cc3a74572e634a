"""The benchmark loop: warm-up until steady state, then a measured phase.

Warm-up runs in windows (at least ``warmup_window`` seconds and ``window_min`` inferences each)
and ends when the last ``windows`` windows agree — their median latency and their throughput each
within ``tolerance`` of their mean, as perf_analyzer judges stability — or at ``warmup_max``
seconds, reported as "steady state not reached". The measured phase then ends only when both
``min_duration`` and ``min_samples`` are met, as MLPerf LoadGen does.

One call of ``fn`` is one inference. With ``concurrency`` > 1 that many threads call it in a
closed loop (onnxruntime releases the GIL while it runs); latency is each call's own wall time,
throughput is completions over the phase's wall time. Ctrl-C ends the loop and keeps everything
measured so far.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any

import numpy as np

from .stats import stable

POLL_NS = 5_000_000  # how often the controller looks at new results


@dataclass(frozen=True)
class Policy:
    min_duration: float = 5.0  # seconds of measured phase, at least
    min_samples: int = 1000  # inferences in the measured phase, at least (p99 on >= 10 tail)
    warmup_window: float = 0.5  # seconds per warm-up window, at least
    window_min: int = 3  # inferences per warm-up window, at least
    windows: int = 3  # consecutive agreeing windows mean steady
    tolerance: float = 0.10  # relative spread allowed among those windows
    warmup_max: float = 30.0  # give up on steady state after this many seconds
    max_duration: float | None = None  # hard cap on the measured phase (None: none)

    def __post_init__(self) -> None:
        if self.min_duration < 0 or self.min_samples < 1 or self.warmup_window <= 0:
            raise ValueError("min-duration >= 0, min-samples >= 1 and warmup-window > 0")
        if self.windows < 2 or self.tolerance <= 0 or self.warmup_max < 0:
            raise ValueError("warm-up needs >= 2 windows, a tolerance > 0 and warmup-max >= 0")


@dataclass(frozen=True)
class Window:
    end: float  # seconds since warm-up began
    count: int
    median: float  # seconds
    throughput: float  # inferences per second


@dataclass
class PhaseResult:
    concurrency: int
    warmup_latencies: np.ndarray = field(default_factory=lambda: np.empty(0))  # seconds, in order
    warmup_ends: np.ndarray = field(default_factory=lambda: np.empty(0))  # seconds since start
    windows: list[Window] = field(default_factory=list)
    steady: bool = False
    warmup_seconds: float = 0.0
    samples: np.ndarray = field(default_factory=lambda: np.empty(0))  # measured latencies (s)
    sample_ends: np.ndarray = field(default_factory=lambda: np.empty(0))  # s since measure start
    measured_seconds: float = 0.0
    measure_started: float = 0.0  # wall clock (time.time()) of the measured phase's start
    measure_ended: float = 0.0
    interrupted: bool = False

    @property
    def throughput(self) -> float | None:
        """Completed inferences per second of the measured phase (None without samples)."""
        if not len(self.samples) or self.measured_seconds <= 0:
            return None
        return len(self.samples) / self.measured_seconds


Progress = Callable[[str, float, int], None]  # (phase, fraction done, inferences)


class _Controller:
    """Decides, from the stream of (latency, completion time) pairs, when to switch from
    warm-up to measuring and when to stop."""

    def __init__(self, policy: Policy, start_ns: int, progress: Progress | None) -> None:
        self.p = policy
        self.start_ns = start_ns
        self.progress = progress
        self.phase = "warmup"
        self.warm_lat: list[np.ndarray] = []
        self.warm_end: list[np.ndarray] = []
        self.win_lat: list[np.ndarray] = []
        self.win_start = start_ns
        self.windows: list[Window] = []
        self.steady = False
        self.measure_start_ns = 0
        self.measure_start_wall = 0.0
        self.lat: list[np.ndarray] = []
        self.end: list[np.ndarray] = []
        self.count = 0
        self.last_end_ns = start_ns

    def feed(self, lat: np.ndarray, end: np.ndarray, now: int) -> bool:
        """Take new results; True when the measured phase is complete."""
        if len(end):
            self.last_end_ns = max(self.last_end_ns, int(end.max()))
        if self.phase == "warmup":
            if len(lat):
                self.warm_lat.append(lat)
                self.warm_end.append(end)
                self.win_lat.append(lat)
            self._close_windows(now)  # may switch to measuring: later results count there
            return False
        if len(lat):
            keep = end > self.measure_start_ns
            self.lat.append(lat[keep])
            self.end.append(end[keep])
            self.count += int(keep.sum())
        elapsed = (now - self.measure_start_ns) * 1e-9
        p = self.p
        if self.progress:
            frac = min(
                1.0,
                min(
                    elapsed / p.min_duration if p.min_duration else 1.0, self.count / p.min_samples
                ),
            )
            self.progress("measure", frac, self.count)
        if p.max_duration is not None and elapsed >= p.max_duration:
            return True
        return elapsed >= p.min_duration and self.count >= p.min_samples

    def _close_windows(self, now: int) -> None:
        p = self.p
        elapsed = (now - self.start_ns) * 1e-9
        n_win = sum(len(a) for a in self.win_lat)
        win_s = (now - self.win_start) * 1e-9
        if win_s >= p.warmup_window and n_win >= p.window_min:
            lat = np.concatenate(self.win_lat)
            median = float(np.median(lat)) * 1e-9
            self.windows.append(Window(elapsed, n_win, median, n_win / win_s))
            self.win_lat = []
            self.win_start = now
            last = self.windows[-p.windows :]
            if len(last) == p.windows and (
                stable([w.median for w in last], p.tolerance)
                and stable([w.throughput for w in last], p.tolerance)
            ):
                self.steady = True
        if self.progress:
            self.progress("warmup", min(1.0, elapsed / p.warmup_max if p.warmup_max else 1), 0)
        if self.steady or elapsed >= p.warmup_max:
            self.phase = "measure"
            self.measure_start_ns = now
            self.measure_start_wall = time.time()

    def result(self, concurrency: int, interrupted: bool) -> PhaseResult:
        cat = lambda xs: np.concatenate(xs) if xs else np.empty(0)  # noqa: E731
        r = PhaseResult(concurrency, interrupted=interrupted, steady=self.steady)
        r.warmup_latencies = cat(self.warm_lat) * 1e-9
        r.warmup_ends = (cat(self.warm_end) - self.start_ns) * 1e-9
        r.windows = self.windows
        if self.measure_start_ns:
            r.warmup_seconds = (self.measure_start_ns - self.start_ns) * 1e-9
            r.samples = cat(self.lat) * 1e-9
            r.sample_ends = (cat(self.end) - self.measure_start_ns) * 1e-9
            end_ns = max(self.last_end_ns, self.measure_start_ns)
            r.measured_seconds = (end_ns - self.measure_start_ns) * 1e-9
            r.measure_started = self.measure_start_wall
            r.measure_ended = self.measure_start_wall + r.measured_seconds
        else:
            r.warmup_seconds = (self.last_end_ns - self.start_ns) * 1e-9
        return r


def time_once(fn: Callable[[], Any]) -> float:
    """Seconds one call takes (the cold first inference, a session load)."""
    t0 = perf_counter_ns()
    fn()
    return (perf_counter_ns() - t0) * 1e-9


def run(
    fn: Callable[[], Any],
    policy: Policy,
    concurrency: int = 1,
    progress: Progress | None = None,
) -> PhaseResult:
    """Warm-up then measure ``fn``. An exception from ``fn`` propagates (after the workers stop);
    KeyboardInterrupt returns what was measured, flagged ``interrupted``."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    start = perf_counter_ns()
    ctl = _Controller(policy, start, progress)
    inline = concurrency == 1  # no thread hand-off for the common case
    interrupted = _run_inline(fn, ctl) if inline else _run_threads(fn, ctl, concurrency)
    return ctl.result(concurrency, interrupted)


def _run_inline(fn: Callable[[], Any], ctl: _Controller) -> bool:
    lat: list[int] = []
    end: list[int] = []
    clock = perf_counter_ns
    next_poll = clock() + POLL_NS
    try:
        while True:
            t0 = clock()
            fn()
            t1 = clock()
            lat.append(t1 - t0)
            end.append(t1)
            if t1 >= next_poll:
                done = ctl.feed(np.array(lat, np.int64), np.array(end, np.int64), t1)
                lat.clear()
                end.clear()
                next_poll = clock() + POLL_NS
                if done:
                    return False
    except KeyboardInterrupt:
        if lat:
            ctl.feed(np.array(lat, np.int64), np.array(end, np.int64), clock())
        return True


def _run_threads(fn: Callable[[], Any], ctl: _Controller, concurrency: int) -> bool:
    stop = threading.Event()
    bufs: list[tuple[list[int], list[int]]] = [([], []) for _ in range(concurrency)]
    errors: list[BaseException] = []

    def worker(lat: list[int], end: list[int]) -> None:
        clock = perf_counter_ns
        try:
            while not stop.is_set():
                t0 = clock()
                fn()
                t1 = clock()
                lat.append(t1 - t0)  # list.append is atomic: the reader below takes a prefix
                end.append(t1)
        except BaseException as e:  # surfaced in the main thread
            errors.append(e)
            stop.set()

    threads = [
        threading.Thread(target=worker, args=b, name=f"ortel-profile-{i}", daemon=True)
        for i, b in enumerate(bufs)
    ]
    seen = [0] * concurrency
    interrupted = False
    try:
        for t in threads:
            t.start()
        while not stop.is_set():
            time.sleep(POLL_NS * 1e-9)
            if _drain(ctl, bufs, seen, perf_counter_ns()):
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        stop.set()
        for t in threads:
            t.join()
    if errors:
        raise errors[0]
    # Results that completed while stopping are real measurements too.
    _drain(ctl, bufs, seen, perf_counter_ns(), final=True)
    return interrupted


def _drain(ctl, bufs, seen, now: int, final: bool = False) -> bool:
    lats, ends = [], []
    for i, (lat, end) in enumerate(bufs):
        n = min(len(lat), len(end))  # end is appended second: both have n items
        lats.extend(lat[seen[i] : n])
        ends.extend(end[seen[i] : n])
        seen[i] = n
    if final and ctl.phase != "measure":
        return False
    return ctl.feed(np.array(lats, np.int64), np.array(ends, np.int64), now)
