"""Background sampling: every collector runs on its own thread at the interval, so a scrape only
reads the latest results and one slow or hung collector never delays the others.

A collector whose sample raised, or whose sample in progress has run longer than the timeout
(hung), reports success 0 and none of its readings: serving old values as if they were current is
what Prometheus exporters avoid. ``ortel_collector_last_success_timestamp_seconds`` says how old
its last good sample is. When a hung sample finally returns, its result counts as usual.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from ortel.collectors.base import Collector, NoDataError
from ortel.core import catalog as c
from ortel.core.readings import Reading

log = logging.getLogger("ortel.exporter")

MIN_TIMEOUT = 1.0  # seconds: below this, scheduler noise on a busy host would look like a hang
STOP_GRACE = 1.0  # seconds stop() waits for samples in progress; threads are daemons after that


def default_timeout(interval: float) -> float:
    """How long a sample may run before it counts as hung: two intervals, at least 1 s."""
    return max(2.0 * interval, MIN_TIMEOUT)


@dataclass
class Sample:
    readings: list[Reading] = field(default_factory=list)
    duration: float = 0.0
    success: bool = False
    has_data: bool = False
    finished: float = 0.0  # monotonic time; 0 = never
    finished_at: float = 0.0  # wall time of the same moment, for the last-success timestamp


class Sampler:
    def __init__(
        self, collectors: list[Collector], interval: float, timeout: float | None = None
    ) -> None:
        self.collectors = collectors
        self.interval = interval
        self.timeout = default_timeout(interval) if timeout is None else timeout
        self._samples: dict[str, Sample] = {col.name: Sample() for col in collectors}
        self._running: dict[str, float] = {col.name: 0.0 for col in collectors}  # 0 = idle
        self._last_success: dict[str, float] = {}  # wall time of the latest successful sample
        self._hung: set[str] = set()  # collectors whose hang was logged
        self._first = {col.name: threading.Event() for col in collectors}
        self._said: dict[str, str] = {}  # last message logged per collector: log changes only
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, wait: float = 2.0) -> None:
        for col in self.collectors:
            t = threading.Thread(
                target=self._loop, args=(col,), name=f"ortel-{col.name}", daemon=True
            )
            t.start()
            self._threads.append(t)
        deadline = time.monotonic() + wait
        for ev in self._first.values():  # serve the first scrape with data where we can
            ev.wait(max(0.0, deadline - time.monotonic()))

    def stop(self) -> list[str]:
        """Stop sampling; returns the collectors still stuck in a sample (their threads are left
        to finish on their own: a thread cannot be killed)."""
        self._stop.set()
        deadline = time.monotonic() + STOP_GRACE
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        return [col.name for col, t in zip(self.collectors, self._threads) if t.is_alive()]

    def sample_once(self, col: Collector) -> Sample:
        t0 = time.perf_counter()
        try:
            readings = list(col.collect())
            s = Sample(readings, success=True, has_data=True)
            self._say(col.name, "", logging.DEBUG)
        except NoDataError as e:
            s = Sample(success=True, has_data=False)
            self._say(col.name, f"no data on this machine: {e}", logging.INFO)
        except Exception as e:  # any collector bug is that collector's failure, not the daemon's
            s = Sample(success=False)
            self._say(col.name, f"failed: {type(e).__name__}: {e}", logging.WARNING)
        s.duration = time.perf_counter() - t0
        s.finished = time.monotonic()
        s.finished_at = time.time()
        return s

    def _say(self, name: str, msg: str, level: int) -> None:
        if self._said.get(name, "") != msg:
            self._said[name] = msg
            if msg:
                log.log(level, "collector %s: %s", name, msg)

    def _loop(self, col: Collector) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._running[col.name] = time.monotonic()
            s = self._samples[col.name] = self.sample_once(col)
            self._running[col.name] = 0.0
            if s.success:
                self._last_success[col.name] = s.finished_at
            if col.name in self._hung:
                self._hung.discard(col.name)
                log.info("collector %s: returned after %.1fs", col.name, s.duration)
            self._first[col.name].set()
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:  # fell behind: skip missed ticks rather than bursting
                next_at = time.monotonic()
                delay = 0
            self._stop.wait(delay)

    def readings(self) -> list[Reading]:
        """Latest readings of every collector plus the self-metrics about them."""
        out: list[Reading] = []
        now = time.monotonic()
        for name, s in self._samples.items():
            started = self._running[name]
            hung = started > 0 and now - started > self.timeout
            if hung and name not in self._hung:
                self._hung.add(name)
                log.warning(
                    "collector %s: sample running for %.1fs (timeout %.1fs): failed until it "
                    "returns",
                    name,
                    now - started,
                    self.timeout,
                )
            ok = s.success and s.finished > 0 and not hung
            if ok:
                out.extend(s.readings)
            # A hung sample's duration so far says more than the last finished one's.
            duration = now - started if hung else s.duration
            out.append(Reading(c.COLLECTOR_DURATION, (name,), duration))
            out.append(Reading(c.COLLECTOR_SUCCESS, (name,), 1.0 if ok else 0.0))
            out.append(Reading(c.COLLECTOR_HAS_DATA, (name,), 1.0 if ok and s.has_data else 0.0))
            last = self._last_success.get(name)
            if last is not None:  # never succeeded: absent (unknown), not 0
                out.append(Reading(c.COLLECTOR_LAST_SUCCESS, (name,), last))
        return out
