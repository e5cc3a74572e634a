"""Inference metrics of every instrumented process on the host, merged from snapshot files."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ortel.core import catalog as c
from ortel.core.cardinality import DEFAULT_LIMITS, LabelLimiter
from ortel.core.readings import Reading

from .base import Collector, CollectorSpec, NoDataError

if TYPE_CHECKING:
    from .multiproc_reader import MergeResult


class InferenceCollector(Collector):
    name = "inference"

    def __init__(
        self,
        multiproc_dir: Path | None,
        procfs: Path = Path("/proc"),
        window_seconds: float = 60.0,
        label_limits: dict[str, int] | None = None,
    ) -> None:
        self.window_seconds = window_seconds
        # The latest merge, per-process busy time included, for energy attribution (daemon.py).
        self.latest: MergeResult | None = None
        # numpy comes with the merge: loaded when the collector is made, not when the CLI starts.
        from .multiproc_reader import MultiprocReader

        limiter = LabelLimiter(DEFAULT_LIMITS if label_limits is None else label_limits)
        self._reader = (
            None
            if multiproc_dir is None
            else MultiprocReader(multiproc_dir, procfs, window_seconds, limiter)
        )

    def collect(self) -> Iterator[Reading]:
        if self._reader is None:
            raise NoDataError("no multiprocess directory (--multiproc-dir / ORTEL_MULTIPROC_DIR)")
        if not self._reader.directory.is_dir():
            raise NoDataError(f"{self._reader.directory} does not exist yet")
        from ortel.core.state import dropped_readings, readings

        result = self._reader.read()
        self.latest = result
        now = time.time()
        out = list(readings(result.series.values(), now, self.window_seconds))
        out.append(Reading(c.MULTIPROC_PROCESSES, ("live",), float(result.live)))
        out.append(Reading(c.MULTIPROC_PROCESSES, ("exited",), float(result.archived)))
        out.append(Reading(c.MULTIPROC_BAD_FILES, (), float(self._reader.bad_files_total)))
        out.extend(dropped_readings(result.dropped))
        yield from out


SPEC = CollectorSpec(
    "inference",
    True,
    lambda o: InferenceCollector(o.multiproc_dir, o.procfs, o.window_seconds, dict(o.label_limits)),
    "inference metrics merged from instrumented processes' snapshots (--multiproc-dir)",
)
