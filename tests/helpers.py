"""Small helpers shared by the test modules (import as ``from helpers import ...``)."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from ortel.core.readings import HistogramValue, Reading

FIXTURES = Path(__file__).parent / "fixtures"

Key = tuple[str, tuple[str, ...]]


def as_dict(readings: Iterable[Reading]) -> dict[Key, float | HistogramValue]:
    """``{(metric.name, label values in definition order): value}``; a repeated series fails."""
    out: dict[Key, float | HistogramValue] = {}
    for r in readings:
        key = (r.metric.name, r.labels)
        assert key not in out, f"series emitted twice: {key}"
        out[key] = r.value
    return out


def copy_fixture(name: str, dest: Path) -> Path:
    """Copy ``fixtures/<name>`` to ``dest/<name>`` so a test can edit it; returns the copy."""
    # symlinks=True: sysfs fixtures link like the real thing (class/... -> ../../devices/...).
    return Path(shutil.copytree(FIXTURES / name, dest / name, symlinks=True))
