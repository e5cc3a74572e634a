"""The collector interface: a class with one ``collect()`` generator of typed readings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ortel.core.cardinality import DEFAULT_LIMITS
from ortel.core.catalog import MetricDef
from ortel.core.readings import Reading


class NoDataError(Exception):
    """The collector's data source does not exist (or is not readable) on this machine.

    Not a failure: the sampler reports success=1, has_data=0, and logs the reason once.
    """


@dataclass(frozen=True)
class CollectorOptions:
    """Everything a collector factory may need; every OS path is an option so tests use fixtures."""

    sysfs: Path = Path("/sys")
    procfs: Path = Path("/proc")
    multiproc_dir: Path | None = None
    per_core: bool = False
    interval: float = 1.0
    window_seconds: float = 60.0
    # Per-logical-CPU power profile of the estimate collector (defaults: estimate.DEFAULT_*).
    cpu_idle_watts: float = 0.74
    cpu_max_watts: float = 3.5
    # Caps on distinct label values (cardinality.DEFAULT_LIMITS unless --label-limits says).
    label_limits: tuple[tuple[str, int], ...] = tuple(DEFAULT_LIMITS.items())
    # Windows: the TraceEvent assembly for the etw collector (--etw-traceevent).
    etw_traceevent: Path | None = None


class Collector:
    name: str = ""

    def collect(self) -> Iterator[Reading]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the collector holds (a child process, a library); called at shutdown."""


@dataclass(frozen=True)
class CollectorSpec:
    name: str
    enabled_by_default: bool
    factory: Callable[[CollectorOptions], Collector]
    help: str
    # What the collector emits (for generated docs; optional) and whether its values are a model
    # rather than a measurement.
    metrics: tuple[MetricDef, ...] = ()
    estimated: bool = False
