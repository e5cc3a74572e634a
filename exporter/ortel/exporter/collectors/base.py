"""The collector interface: a class with one ``collect()`` generator of typed readings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ortel.instrumentation.readings import Reading


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


class Collector:
    name: str = ""

    def collect(self) -> Iterator[Reading]:
        raise NotImplementedError


@dataclass(frozen=True)
class CollectorSpec:
    name: str
    enabled_by_default: bool
    factory: Callable[[CollectorOptions], Collector]
    help: str
