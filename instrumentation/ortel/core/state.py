"""Mergeable inference state: what a recorder holds once folded, what snapshots carry, what the
daemon merges.

Everything here can be summed or merged (counts, bucket arrays, window slices, sketches), so
per-process and per-host aggregation are the same operation. Copies are structural. Encoding and
validation live in ``snapshot.py`` alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from . import catalog as c
from .hist import NS, Hist
from .opstate import OperatorState
from .opstate import readings as operator_readings
from .readings import Reading, SummaryValue
from .window import Window, WindowStats, oldest_key

DEFAULT_WINDOW_SECONDS = 60.0


@dataclass
class Stamped:
    """A gauge value with the wall time it was taken: merging keeps the newest."""

    value: float
    at: float

    @staticmethod
    def newest(a: Stamped | None, b: Stamped | None) -> Stamped | None:
        if a is None or b is None:
            return a or b
        return b if b.at > a.at else a


@dataclass
class GenerationState:
    """LLM generations tracked for one (model, provider): time to first token, inter-token
    latency, token counts. Present in a SeriesState only once a generation was tracked."""

    ttft: Hist = field(default_factory=lambda: Hist.empty(c.TTFT_BUCKETS))
    itl: Hist = field(default_factory=lambda: Hist.empty(c.TPOT_BUCKETS))
    generated_tokens: int = 0
    prompt_tokens: int = 0

    def merge(self, o: GenerationState) -> None:
        self.ttft.merge(o.ttft)
        self.itl.merge(o.itl)
        self.generated_tokens += o.generated_tokens
        self.prompt_tokens += o.prompt_tokens

    def copy(self) -> GenerationState:
        return GenerationState(
            self.ttft.copy(), self.itl.copy(), self.generated_tokens, self.prompt_tokens
        )


@dataclass
class SeriesState:
    """Everything recorded for one (model, provider)."""

    model: str
    provider: str
    bounds: tuple[float, ...] = c.DEFAULT_LATENCY_BUCKETS
    sla_seconds: float | None = None
    ok: Hist = None  # type: ignore[assignment]  # set in __post_init__
    error: Hist = None  # type: ignore[assignment]
    items: int = 0
    error_types: dict[str, int] = field(default_factory=dict)
    sla_violations: int = 0
    load: Stamped | None = None
    first_inference: Stamped | None = None
    window: Window = field(default_factory=Window)
    generation: GenerationState | None = None  # only once a generation was tracked
    operators: OperatorState | None = None  # only once an inference was sampled (opsampling)
    flops: float | None = None  # FLOPs of one inference, where the caller declared them
    # Joules measured by ortel.instrumentation.energy() blocks, by (device, source).
    block_energy: dict[tuple[str, str], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ok = self.ok or Hist.empty(self.bounds)
        self.error = self.error or Hist.empty(self.bounds)

    @property
    def has_inferences(self) -> bool:
        """Whether any inference API touched the series (a generation-only one has not)."""
        return bool(
            self.ok.count or self.error.count or self.items or self.load or self.first_inference
        )

    @property
    def key(self) -> tuple[str, str]:
        return (self.model, self.provider)

    def prune(self, now: float, window_seconds: float) -> None:
        self.window.prune(oldest_key(now, window_seconds))

    def merge(self, o: SeriesState) -> None:
        if o.bounds != self.bounds:
            raise ValueError(f"{self.model}: processes disagree on histogram buckets")
        self.ok.merge(o.ok)
        self.error.merge(o.error)
        self.window.merge(o.window)
        self._merge_rest(o)

    def _merge_rest(self, o: SeriesState) -> None:
        """Merge everything but the histograms and the window."""
        self.items += o.items
        self.sla_violations += o.sla_violations
        for k, n in o.error_types.items():
            self.error_types[k] = self.error_types.get(k, 0) + n
        if self.sla_seconds is None:
            self.sla_seconds = o.sla_seconds
        if self.flops is None:
            self.flops = o.flops
        self.load = Stamped.newest(self.load, o.load)
        self.first_inference = Stamped.newest(self.first_inference, o.first_inference)
        if o.generation is not None:
            if self.generation is None:
                self.generation = GenerationState()
            self.generation.merge(o.generation)
        if o.operators is not None:
            if self.operators is None:
                self.operators = o.operators.copy()
            else:
                self.operators.merge(o.operators)
        for part, j in o.block_energy.items():
            self.block_energy[part] = self.block_energy.get(part, 0.0) + j

    def copy(self) -> SeriesState:
        return SeriesState(
            self.model,
            self.provider,
            self.bounds,
            self.sla_seconds,
            self.ok.copy(),
            self.error.copy(),
            self.items,
            dict(self.error_types),
            self.sla_violations,
            self.load,  # Stamped values are replaced, never changed in place
            self.first_inference,
            self.window.copy(),
            None if self.generation is None else self.generation.copy(),
            None if self.operators is None else self.operators.copy(),
            self.flops,
            dict(self.block_energy),
        )


def busy_ns(s: SeriesState) -> int:
    """Wall time inside the series' inference calls, or inside its tracked generations (first
    token plus inter-token times) where that is more: a generation loop may record only tokens,
    or also time each decode step as a call, which covers the same time."""
    calls = s.ok.sum_ns + s.error.sum_ns
    g = s.generation
    return calls if g is None else max(calls, g.ttft.sum_ns + g.itl.sum_ns)


def merge_all(groups: Iterable[Iterable[SeriesState]]) -> dict[tuple[str, str], SeriesState]:
    """Merge series from many sources by (model, provider); inputs are not modified."""
    by_key: dict[tuple[str, str], list[SeriesState]] = {}
    for group in groups:
        for s in group:
            by_key.setdefault(s.key, []).append(s)
    return {k: merged(same) for k, same in by_key.items()}


def merged(same: list[SeriesState]) -> SeriesState:
    """The merge of states of one (model, provider), as a new state: the many-way form of
    ``SeriesState.merge``, which matters to a daemon merging hundreds of processes."""
    first = same[0]
    if len(same) == 1:
        return first.copy()
    for s in same[1:]:
        if s.bounds != first.bounds:
            raise ValueError(f"{first.model}: processes disagree on histogram buckets")
    out = SeriesState(
        first.model,
        first.provider,
        first.bounds,
        ok=_sum_hists([s.ok for s in same]),
        error=_sum_hists([s.error for s in same]),
        window=Window.merged([s.window for s in same]),
    )
    for s in same:
        out._merge_rest(s)
    return out


def _sum_hists(hists: list[Hist]) -> Hist:
    n = len(hists[0].counts)
    if any(len(h.counts) != n for h in hists):
        raise ValueError("histograms with different buckets cannot be merged")
    return Hist(
        list(map(sum, zip(*(h.counts for h in hists)))),
        sum(h.sum_ns for h in hists),
        sum(h.count for h in hists),
    )


def _window(s: SeriesState, now: float, window_seconds: float) -> WindowStats:
    return s.window.stats(oldest_key(now, window_seconds))


def readings(
    series: Iterable[SeriesState], now: float, window_seconds: float = DEFAULT_WINDOW_SECONDS
) -> Iterator[Reading]:
    """The shim's metrics for merged series, in base units."""
    per_model: dict[str, list[SeriesState]] = {}
    for s in series:
        per_model.setdefault(s.model, []).append(s)
        ml = (s.model, s.provider)
        if s.generation is not None:
            g = s.generation
            yield Reading(c.TIME_TO_FIRST_TOKEN, ml, g.ttft.value(c.TTFT_BUCKETS))
            yield Reading(c.INTER_TOKEN_LATENCY, ml, g.itl.value(c.TPOT_BUCKETS))
            yield Reading(c.GENERATED_TOKENS, ml, float(g.generated_tokens))
            yield Reading(c.PROMPT_TOKENS, ml, float(g.prompt_tokens))
        # Generation-only or energy-block-only series: no all-zero inference series.
        if not s.has_inferences and (s.generation is not None or s.block_energy):
            continue
        for status, h in (("ok", s.ok), ("error", s.error)):
            if h.count or status == "ok":
                yield Reading(c.INFERENCE_DURATION, ml + (status,), h.value(s.bounds))
                yield Reading(c.INFERENCES, ml + (status,), float(h.count))
        yield Reading(c.INFERENCE_ITEMS, ml, float(s.items))
        if s.load is not None:
            yield Reading(c.SESSION_LOAD, ml, s.load.value)
        if s.first_inference is not None:
            yield Reading(c.FIRST_INFERENCE, ml, s.first_inference.value)
        w = _window(s, now, window_seconds)
        yield Reading(c.WINDOW_INFERENCES, ml, float(w.count))
        quantiles = tuple(zip(c.QUANTILES, w.quantiles(c.QUANTILES))) if w.count else ()
        yield Reading(c.LATENCY_QUANTILE, ml, SummaryValue(quantiles, s.ok.sum_ns * NS, s.ok.count))
        if w.count:
            mean = w.sum_ns * NS / w.count
            yield Reading(c.LATENCY_MEAN, ml, mean)
            var = max(w.sumsq / w.count - mean * mean, 0.0)
            yield Reading(c.LATENCY_STDDEV, ml, math.sqrt(var))
            yield Reading(c.LATENCY_MIN, ml, w.min_ns * NS)
            yield Reading(c.LATENCY_MAX, ml, w.max_ns * NS)
    for model, group in per_model.items():
        errors: dict[str, int] = {}
        for s in group:
            for k, n in s.error_types.items():
                errors[k] = errors.get(k, 0) + n
        for k, n in sorted(errors.items()):
            yield Reading(c.INFERENCE_ERRORS, (model, k), float(n))
        targets = [s.sla_seconds for s in group if s.sla_seconds is not None]
        if not targets:
            continue
        yield Reading(c.SLA_TARGET, (model,), targets[0])
        yield Reading(c.SLA_VIOLATIONS, (model,), float(sum(s.sla_violations for s in group)))
        total = viol = 0
        for s in group:
            w = _window(s, now, window_seconds)
            total += w.count
            viol += w.violations
        if total:
            yield Reading(c.SLA_COMPLIANCE, (model,), 1.0 - viol / total)
    for model, group in per_model.items():
        block: dict[tuple[str, str], float] = {}
        for s in group:
            for part, j in s.block_energy.items():
                block[part] = block.get(part, 0.0) + j
        for (device, source), j in sorted(block.items()):
            yield Reading(c.BLOCK_ENERGY, (model, device, source), j)
    sampled = {m: [s.operators for s in g if s.operators] for m, g in per_model.items()}
    if any(sampled.values()):
        yield from operator_readings({m: ops for m, ops in sampled.items() if ops})


def dropped_readings(dropped: dict[str, int]) -> Iterator[Reading]:
    """``ortel_label_values_dropped_total`` per capped label (0 included, so rate() works)."""
    for label, n in sorted(dropped.items()):
        yield Reading(c.LABEL_VALUES_DROPPED, (label,), float(n))
