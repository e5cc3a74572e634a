"""Background sampling: every collector runs on its own thread at the interval, so a scrape only
reads the latest results and one slow or hung collector never delays the others."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from ortel.instrumentation import catalog as c
from ortel.instrumentation.readings import Reading

from .collectors.base import Collector, NoDataError

log = logging.getLogger("ortel.exporter")

STALE_INTERVALS = 3  # a collector with no finished sample for this many intervals counts as failed


@dataclass
class Sample:
    readings: list[Reading] = field(default_factory=list)
    duration: float = 0.0
    success: bool = False
    has_data: bool = False
    finished: float = 0.0  # monotonic time; 0 = never


class Sampler:
    def __init__(self, collectors: list[Collector], interval: float) -> None:
        self.collectors = collectors
        self.interval = interval
        self._samples: dict[str, Sample] = {col.name: Sample() for col in collectors}
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

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.interval + 1.0)

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
        return s

    def _say(self, name: str, msg: str, level: int) -> None:
        if self._said.get(name, "") != msg:
            self._said[name] = msg
            if msg:
                log.log(level, "collector %s: %s", name, msg)

    def _loop(self, col: Collector) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._samples[col.name] = self.sample_once(col)
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
            stale = s.finished == 0 or now - s.finished > STALE_INTERVALS * self.interval + 1
            ok = s.success and not stale
            if ok:
                out.extend(s.readings)
            out.append(Reading(c.COLLECTOR_DURATION, (name,), s.duration))
            out.append(Reading(c.COLLECTOR_SUCCESS, (name,), 1.0 if ok else 0.0))
            out.append(Reading(c.COLLECTOR_HAS_DATA, (name,), 1.0 if ok and s.has_data else 0.0))
        return out
