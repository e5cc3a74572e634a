"""Label values on the way in: cleaned (``clean_label``) and capped.

Caps on distinct label values: a process naming models after request ids must not turn into
millions of series in its own memory, in its snapshot files, in the daemon and in Prometheus.

Each capped label admits its first ``limit`` distinct values; every later value becomes
``__other__`` and is counted once in ``ortel_label_values_dropped_total{label}``. Admission runs
where a series is created (``Recorder.series``, the fold of error types, the daemon's merge), never
on the inference hot path. Labels without a limit are not capped.

Limits come from ``ORTEL_LABEL_LIMITS`` in instrumented processes and ``--label-limits`` in the
daemon, both ``label=N,label=N``; a label not named keeps its default.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

OTHER = "__other__"
MAX_LABEL_CHARS = 256  # a model name longer than this is a bug upstream, not a label


def clean_label(value: str) -> str:
    """Labels must be valid UTF-8 for every scraper: a stray surrogate (a non-UTF-8 file name
    decoded with surrogateescape) would otherwise fail the whole scrape. Overlong values are cut."""
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    if len(value) > MAX_LABEL_CHARS:
        value = value[: MAX_LABEL_CHARS - 1] + "…"
    return value


ENV = "ORTEL_LABEL_LIMITS"

# Generous for real deployments (a host serving 100 models is rare), small enough that a label
# fed with ids is caught long before it hurts.
DEFAULT_LIMITS: dict[str, int] = {
    "model": 100,
    "provider": 16,
    "error_type": 50,
    "op_type": 256,
}

# Refused values are remembered (so each is counted once and found again without the lock) up to
# this many per label; beyond it a refused value may be counted again when it comes back.
REMEMBER_REFUSED = 10_000
MAX_LIMIT = 1_000_000


def parse_limits(text: str, base: Mapping[str, int] | None = None) -> dict[str, int]:
    """``"model=50,error_type=20"`` over ``base`` (the defaults); raises ValueError when bad."""
    out = dict(DEFAULT_LIMITS if base is None else base)
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        label, sep, n = item.partition("=")
        label, n = label.strip(), n.strip()
        if not sep or not label.isidentifier():
            raise ValueError(f"label limit {item!r}: expected LABEL=N, e.g. model=100")
        if not (n.isascii() and n.isdigit()) or not 1 <= int(n) <= MAX_LIMIT:
            raise ValueError(f"label limit {item!r}: N must be a whole number, 1 to {MAX_LIMIT}")
        out[label] = int(n)
    return out


def format_limits(limits: Mapping[str, int]) -> str:
    return ",".join(f"{k}={v}" for k, v in limits.items())


class LabelLimiter:
    """First come, first admitted; thread-safe; cheap for values already decided."""

    def __init__(self, limits: Mapping[str, int] | None = None) -> None:
        self.limits = dict(DEFAULT_LIMITS if limits is None else limits)
        self._admitted: dict[str, set[str]] = {k: set() for k in self.limits}
        self._refused: dict[str, set[str]] = {k: set() for k in self.limits}
        self._dropped: dict[str, int] = dict.fromkeys(self.limits, 0)
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> LabelLimiter:
        text = os.environ.get(ENV, "")
        try:
            return cls(parse_limits(text))
        except ValueError as e:  # a bad variable must not stop inference: defaults, said once
            import logging

            logging.getLogger("ortel.instrumentation").warning("ortel: %s=%r: %s", ENV, text, e)
            return cls()

    def admit(self, label: str, value: str) -> str:
        """``value`` while the label has room (or already holds it), else ``OTHER``."""
        admitted = self._admitted.get(label)
        if admitted is None or value == OTHER or value in admitted:
            return value
        with self._lock:
            if value in admitted:
                return value
            if len(admitted) < self.limits[label]:
                admitted.add(value)
                return value
            refused = self._refused[label]
            if value not in refused:
                self._dropped[label] += 1
                if len(refused) < REMEMBER_REFUSED:
                    refused.add(value)
            return OTHER

    def admitted(self, label: str) -> frozenset[str]:
        return frozenset(self._admitted.get(label, ()))

    def dropped(self) -> dict[str, int]:
        """Distinct values replaced by ``OTHER`` so far, per capped label (0 included)."""
        with self._lock:
            return dict(self._dropped)

    def forget_dropped(self) -> None:
        """Zero the counts but keep what was admitted (a forked child reports its own drops)."""
        with self._lock:
            self._dropped = dict.fromkeys(self.limits, 0)
            self._refused = {k: set() for k in self.limits}


def add_counts(into: dict[str, int], more: Mapping[str, int]) -> dict[str, int]:
    for k, n in more.items():
        into[k] = into.get(k, 0) + n
    return into


def parse_counts(v: object, max_int: int) -> dict[str, int]:
    """Validate a snapshot's ``dropped`` mapping (untrusted input); raises ValueError."""
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ValueError("dropped must map label names to counts")
    out: dict[str, int] = {}
    for k, n in v.items():
        if not isinstance(k, str) or not k.isidentifier() or len(k) > 100:
            raise ValueError("dropped: label names must be identifiers")
        if type(n) is not int or not 0 <= n <= max_int:
            raise ValueError("dropped: counts must be non-negative integers")
        out[k] = n
    return out
