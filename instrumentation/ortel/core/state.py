"""Mergeable inference state: what a recorder holds once folded, what snapshots carry, what the
daemon merges. Pure Python (no numpy) so the daemon can use it.

Everything here can be summed or merged (counts, bucket arrays, sketches, time slices), so
per-process and per-host aggregation are the same operation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import catalog as c
from .readings import HistogramValue, Reading, SummaryValue
from .sketch import LogSketch

if TYPE_CHECKING:
    from .opstate import OperatorState

SLICE_SECONDS = 5.0  # the sliding window is made of slices this long, keyed by wall-clock index
DEFAULT_WINDOW_SECONDS = 60.0
NS = 1e-9
# Parsing limits: a snapshot is untrusted input, and anything it holds must survive float() and
# the sketch's GAMMA**index in readings(). Far beyond what a real process can produce.
MAX_INT = 1 << 96
MAX_SKETCH_INDEX = 10_000  # GAMMA**i ~ 1e43; durations of 1 ns ... 292 years lie within ±2,300
MAX_LABEL_CHARS = 1024


def slice_key(now: float) -> int:
    return int(now // SLICE_SECONDS)


def window_keys(window_seconds: float) -> int:
    return max(1, math.ceil(window_seconds / SLICE_SECONDS))


def _int(v: object, what: str) -> int:
    if type(v) is not int or v < 0 or v > MAX_INT:
        raise ValueError(f"{what} must be a non-negative integer")
    return v


def _label(v: object, what: str) -> str:
    if not isinstance(v, str) or len(v) > MAX_LABEL_CHARS:
        raise ValueError(f"{what} must be a string of at most {MAX_LABEL_CHARS} characters")
    return v


def _num(v: object, what: str) -> float:
    if type(v) is int and abs(v) > MAX_INT:  # math.isfinite would raise OverflowError
        raise ValueError(f"{what} is out of range")
    if type(v) not in (int, float) or not math.isfinite(v) or v < 0:
        raise ValueError(f"{what} must be a non-negative number")
    return float(v)


def _opt_num(v: object, what: str) -> float | None:
    return None if v is None else _num(v, what)


@dataclass
class Hist:
    """Histogram buckets (per bucket, last is +Inf), exact integer-nanosecond sum, count."""

    counts: list[int]
    sum_ns: int = 0
    count: int = 0

    @classmethod
    def empty(cls, bounds: tuple[float, ...]) -> Hist:
        return cls([0] * (len(bounds) + 1))

    def merge(self, o: Hist) -> None:
        if len(o.counts) != len(self.counts):
            raise ValueError("histograms with different buckets cannot be merged")
        self.counts = [a + b for a, b in zip(self.counts, o.counts)]
        self.sum_ns += o.sum_ns
        self.count += o.count

    def value(self, bounds: tuple[float, ...]) -> HistogramValue:
        return HistogramValue(bounds, tuple(self.counts), self.sum_ns * NS, self.count)

    def to_json(self) -> dict:
        return {"counts": self.counts, "sum_ns": self.sum_ns, "count": self.count}

    @classmethod
    def from_json(cls, d: dict, n_buckets: int) -> Hist:
        counts = d["counts"]
        if not isinstance(counts, list) or len(counts) != n_buckets:
            raise ValueError("histogram has the wrong number of buckets")
        h = cls(
            [_int(x, "bucket count") for x in counts],
            _int(d["sum_ns"], "sum_ns"),
            _int(d["count"], "count"),
        )
        if sum(h.counts) != h.count:
            raise ValueError("histogram count differs from its buckets")
        return h


@dataclass
class Slice:
    """Successful inferences folded during one SLICE_SECONDS slice of wall-clock time."""

    count: int = 0
    sum_ns: int = 0
    sumsq: float = 0.0  # seconds², for the standard deviation
    min_ns: int | None = None
    max_ns: int | None = None
    violations: int = 0
    sketch: LogSketch = field(default_factory=LogSketch)

    def merge(self, o: Slice) -> None:
        self.count += o.count
        self.sum_ns += o.sum_ns
        self.sumsq += o.sumsq
        self.violations += o.violations
        if o.min_ns is not None:
            self.min_ns = o.min_ns if self.min_ns is None else min(self.min_ns, o.min_ns)
        if o.max_ns is not None:
            self.max_ns = o.max_ns if self.max_ns is None else max(self.max_ns, o.max_ns)
        self.sketch.merge(o.sketch)

    def to_json(self) -> dict:
        return {
            "count": self.count,
            "sum_ns": self.sum_ns,
            "sumsq": self.sumsq,
            "min_ns": self.min_ns,
            "max_ns": self.max_ns,
            "violations": self.violations,
            "sketch": self.sketch.to_json(),
        }

    @classmethod
    def from_json(cls, d: dict) -> Slice:
        s = cls(
            _int(d["count"], "count"),
            _int(d["sum_ns"], "sum_ns"),
            _num(d["sumsq"], "sumsq"),
            None if d["min_ns"] is None else _int(d["min_ns"], "min_ns"),
            None if d["max_ns"] is None else _int(d["max_ns"], "max_ns"),
            _int(d["violations"], "violations"),
            LogSketch.from_json(d["sketch"]),
        )
        if s.sketch.count != s.count:
            raise ValueError("slice count differs from its sketch")
        if s.violations > s.count:
            raise ValueError("slice has more SLA violations than inferences")
        if any(abs(k) > MAX_SKETCH_INDEX for k in s.sketch.counts):
            raise ValueError("sketch index out of range")
        return s


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
    latency, token counts. Optional in a SeriesState (and in snapshots) so older snapshots and
    older daemons keep working."""

    ttft: Hist = None  # type: ignore[assignment]  # set in __post_init__
    itl: Hist = None  # type: ignore[assignment]
    generated_tokens: int = 0
    prompt_tokens: int = 0

    def __post_init__(self) -> None:
        self.ttft = self.ttft or Hist.empty(c.TTFT_BUCKETS)
        self.itl = self.itl or Hist.empty(c.TPOT_BUCKETS)

    def merge(self, o: GenerationState) -> None:
        self.ttft.merge(o.ttft)
        self.itl.merge(o.itl)
        self.generated_tokens += o.generated_tokens
        self.prompt_tokens += o.prompt_tokens

    def to_json(self) -> dict:
        return {
            "ttft": self.ttft.to_json(),
            "itl": self.itl.to_json(),
            "generated_tokens": self.generated_tokens,
            "prompt_tokens": self.prompt_tokens,
        }

    @classmethod
    def from_json(cls, d: dict) -> GenerationState:
        return cls(
            Hist.from_json(d["ttft"], len(c.TTFT_BUCKETS) + 1),
            Hist.from_json(d["itl"], len(c.TPOT_BUCKETS) + 1),
            _int(d["generated_tokens"], "generated_tokens"),
            _int(d["prompt_tokens"], "prompt_tokens"),
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
    slices: dict[int, Slice] = field(default_factory=dict)
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
        oldest = slice_key(now) - window_keys(window_seconds) + 1
        for k in [k for k in self.slices if k < oldest]:
            del self.slices[k]

    def merge(self, o: SeriesState) -> None:
        if o.bounds != self.bounds:
            raise ValueError(f"{self.model}: processes disagree on histogram buckets")
        self.ok.merge(o.ok)
        self.error.merge(o.error)
        self.items += o.items
        for k, n in o.error_types.items():
            self.error_types[k] = self.error_types.get(k, 0) + n
        self.sla_violations += o.sla_violations
        self.sla_seconds = self.sla_seconds if self.sla_seconds is not None else o.sla_seconds
        self.load = Stamped.newest(self.load, o.load)
        self.first_inference = Stamped.newest(self.first_inference, o.first_inference)
        for k, s in o.slices.items():
            if k in self.slices:
                self.slices[k].merge(s)
            else:
                self.slices[k] = Slice.from_json(s.to_json())  # a copy: never alias another's
        if o.generation is not None:
            if self.generation is None:
                self.generation = GenerationState()
            self.generation.merge(o.generation)
        if o.operators is not None:
            if self.operators is None:
                self.operators = o.operators.copy()
            else:
                self.operators.merge(o.operators)
        self.flops = self.flops if self.flops is not None else o.flops
        for k, j in o.block_energy.items():
            self.block_energy[k] = self.block_energy.get(k, 0.0) + j

    def copy(self) -> SeriesState:
        return SeriesState.from_json(self.to_json())

    def to_json(self) -> dict:
        def st(s: Stamped | None) -> list[float] | None:
            return None if s is None else [s.value, s.at]

        doc = {
            "model": self.model,
            "provider": self.provider,
            "bounds": list(self.bounds),
            "sla_seconds": self.sla_seconds,
            "ok": self.ok.to_json(),
            "error": self.error.to_json(),
            "items": self.items,
            "error_types": self.error_types,
            "sla_violations": self.sla_violations,
            "load": st(self.load),
            "first_inference": st(self.first_inference),
            "slices": {str(k): s.to_json() for k, s in self.slices.items()},
        }
        if self.generation is not None:  # absent otherwise: snapshots stay as they were
            doc["generation"] = self.generation.to_json()
        if self.operators is not None:  # likewise
            doc["operators"] = self.operators.to_json()
        if self.flops is not None:  # likewise
            doc["flops"] = self.flops
        if self.block_energy:  # likewise
            doc["block_energy"] = {f"{d}/{s}": j for (d, s), j in self.block_energy.items()}
        return doc

    @classmethod
    def from_json(cls, d: dict) -> SeriesState:
        """Parse and validate; raises ValueError/KeyError/TypeError on anything malformed."""
        model, provider = _label(d["model"], "model"), _label(d["provider"], "provider")
        bounds = tuple(_num(b, "bucket bound") for b in d["bounds"])
        if not bounds or list(bounds) != sorted(set(bounds)):
            raise ValueError("bucket bounds must be increasing")

        def st(v: object) -> Stamped | None:
            if v is None:
                return None
            if not (isinstance(v, list) and len(v) == 2):
                raise ValueError("stamped value must be [value, at]")
            return Stamped(_num(v[0], "value"), _num(v[1], "timestamp"))

        errs, slices, gen = d["error_types"], d["slices"], d.get("generation")
        if gen is not None and not isinstance(gen, dict):
            raise ValueError("generation must be an object")
        if not isinstance(errs, dict):
            raise ValueError("error_types must map names to counts")
        if not isinstance(slices, dict):
            raise ValueError("slices must map slice keys to slices")
        ops = d.get("operators")
        if ops is not None:
            from .opstate import OperatorState  # state.py stays importable on its own

            if not isinstance(ops, dict):
                raise ValueError("operators must be an object")
            ops = OperatorState.from_json(ops)
        return cls(
            model=model,
            provider=provider,
            bounds=bounds,
            sla_seconds=_opt_num(d["sla_seconds"], "sla_seconds"),
            ok=Hist.from_json(d["ok"], len(bounds) + 1),
            error=Hist.from_json(d["error"], len(bounds) + 1),
            items=_int(d["items"], "items"),
            error_types={_label(k, "error type"): _int(v, "error count") for k, v in errs.items()},
            sla_violations=_int(d["sla_violations"], "sla_violations"),
            load=st(d["load"]),
            first_inference=st(d["first_inference"]),
            slices={int(k): Slice.from_json(v) for k, v in slices.items()},
            generation=None if gen is None else GenerationState.from_json(gen),
            operators=ops,
            flops=_opt_num(d.get("flops"), "flops"),
            block_energy=_block_energy(d.get("block_energy")),
        )


def _block_energy(v: object) -> dict[tuple[str, str], float]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ValueError("block_energy must map device/source to joules")
    out: dict[tuple[str, str], float] = {}
    for k, j in v.items():
        device, sep, source = _label(k, "block_energy key").partition("/")
        if not sep or device not in ("cpu", "gpu") or source not in ("measured", "estimated"):
            raise ValueError(f"block_energy key {k!r} is not cpu|gpu/measured|estimated")
        out[(device, source)] = _num(j, "block_energy joules")
    return out


def merge_all(groups: Iterable[Iterable[SeriesState]]) -> dict[tuple[str, str], SeriesState]:
    """Merge series from many sources by (model, provider); inputs are not modified."""
    out: dict[tuple[str, str], SeriesState] = {}
    for group in groups:
        for s in group:
            if s.key in out:
                out[s.key].merge(s)
            else:
                out[s.key] = s.copy()
    return out


def _window(s: SeriesState, now: float, window_seconds: float) -> Slice:
    oldest = slice_key(now) - window_keys(window_seconds) + 1
    w = Slice()
    for k, sl in s.slices.items():
        if k >= oldest:
            w.merge(sl)
    return w


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
        quantiles = tuple((q, w.sketch.quantile(q) or 0.0) for q in c.QUANTILES) if w.count else ()
        yield Reading(c.LATENCY_QUANTILE, ml, SummaryValue(quantiles, s.ok.sum_ns * NS, s.ok.count))
        if w.count:
            mean = w.sum_ns * NS / w.count
            yield Reading(c.LATENCY_MEAN, ml, mean)
            var = max(w.sumsq / w.count - mean * mean, 0.0)
            yield Reading(c.LATENCY_STDDEV, ml, math.sqrt(var))
            yield Reading(c.LATENCY_MIN, ml, (w.min_ns or 0) * NS)
            yield Reading(c.LATENCY_MAX, ml, (w.max_ns or 0) * NS)
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
            for k, j in s.block_energy.items():
                block[k] = block.get(k, 0.0) + j
        for (device, source), j in sorted(block.items()):
            yield Reading(c.BLOCK_ENERGY, (model, device, source), j)
    sampled = {m: [s.operators for s in g if s.operators] for m, g in per_model.items()}
    if any(sampled.values()):
        from .opstate import readings as operator_readings

        yield from operator_readings({m: ops for m, ops in sampled.items() if ops})


def dropped_readings(dropped: dict[str, int]) -> Iterator[Reading]:
    """``ortel_label_values_dropped_total`` per capped label (0 included, so rate() works)."""
    for label, n in sorted(dropped.items()):
        yield Reading(c.LABEL_VALUES_DROPPED, (label,), float(n))
