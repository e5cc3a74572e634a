"""``ortel compare RUN_A RUN_B``: did latency change, and is the change real?

Configurations are matched by (provider, precision, batch, sequence length, concurrency). For
each pair the raw latency samples of both runs are compared:

- the relative change of the gated statistic (p50 by default) with a bootstrap confidence
  interval (95%), and
- a two-sided Mann–Whitney U test of the whole distribution.

For the median and the mean a change is *significant* when the Mann–Whitney p-value is below
alpha: the rank test stays sharp where latency is bimodal (a busy machine adds a second mode of
delayed wake-ups) and the median's bootstrap interval jumps between the modes. Tail percentiles
rely on their bootstrap interval excluding zero, since a slower tail need not shift the whole
distribution. A *regression* is a significant slow-down whose point estimate exceeds the
threshold (``--fail-on-regression 5%``). Both conditions matter: significance alone would fail CI
on 0.3% with a million samples, a threshold alone on noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .stats import PERCENTILES, MannWhitney, RelativeChange, bootstrap_change, mann_whitney_u

GATED = (*PERCENTILES, "mean")
KEY = ("provider", "precision", "batch", "seq_len", "concurrency")


@dataclass(frozen=True)
class Verdict:
    statistic: str
    a: float  # the statistic in run A (seconds)
    b: float
    change: RelativeChange
    mwu: MannWhitney
    significant: bool
    regression: bool  # significant, slower, and beyond the threshold
    improvement: bool

    @property
    def word(self) -> str:
        if self.regression:
            return "REGRESSION"
        if self.significant:
            return "faster" if self.improvement else "slower"
        return "no significant change"


def judge(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    statistic: str = "p50",
    threshold: float = 0.0,
    alpha: float = 0.01,
    confidence: float = 0.95,
    seed: int = 0,
) -> Verdict:
    """Compare two latency samples (A: before, B: after)."""
    if statistic not in GATED:
        raise ValueError(f"unknown statistic {statistic!r} (one of {', '.join(GATED)})")
    xa = np.asarray(a, dtype=np.float64)
    xb = np.asarray(b, dtype=np.float64)
    if xa.size < 2 or xb.size < 2:
        raise ValueError("each run needs at least 2 latency samples")
    change = bootstrap_change(xa, xb, statistic, confidence=confidence, seed=seed)
    mwu = mann_whitney_u(xa, xb)
    if statistic in ("p50", "mean"):
        significant = mwu.p_value < alpha
    else:
        significant = change.low > 0 or change.high < 0
    slower = change.point > 0
    va = (
        float(xa.mean())
        if statistic == "mean"
        else float(np.percentile(xa, PERCENTILES[statistic]))
    )
    vb = (
        float(xb.mean())
        if statistic == "mean"
        else float(np.percentile(xb, PERCENTILES[statistic]))
    )
    return Verdict(
        statistic,
        va,
        vb,
        change,
        mwu,
        significant,
        significant and slower and change.point > threshold,
        significant and not slower,
    )


@dataclass
class Pair:
    key: tuple[Any, ...]
    label: str
    a_config: int
    b_config: int
    n_a: int
    n_b: int
    verdict: Verdict | None  # None: too few samples on a side
    p50: tuple[float | None, float | None]
    p99: tuple[float | None, float | None]
    throughput: tuple[float | None, float | None]


@dataclass
class Comparison:
    run_a: str
    run_b: str
    statistic: str
    threshold: float | None
    pairs: list[Pair] = field(default_factory=list)
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Pair]:
        return [p for p in self.pairs if p.verdict is not None and p.verdict.regression]

    @property
    def failed(self) -> bool:
        return self.threshold is not None and bool(self.regressions)

    def to_json(self) -> dict[str, Any]:
        def v(p: Pair) -> dict[str, Any] | None:
            if p.verdict is None:
                return None
            x = p.verdict
            return {
                "statistic": x.statistic,
                "a_seconds": x.a,
                "b_seconds": x.b,
                "change": x.change.point,
                "ci_low": x.change.low,
                "ci_high": x.change.high,
                "mann_whitney_p": x.mwu.p_value,
                "prob_b_slower": x.mwu.prob_b_greater,
                "significant": x.significant,
                "regression": x.regression,
                "verdict": x.word,
            }

        return {
            "run_a": self.run_a,
            "run_b": self.run_b,
            "statistic": self.statistic,
            "threshold": self.threshold,
            "failed": self.failed,
            "pairs": [
                {
                    "configuration": p.label,
                    "a_config": p.a_config,
                    "b_config": p.b_config,
                    "samples": [p.n_a, p.n_b],
                    "p50_seconds": list(p.p50),
                    "p99_seconds": list(p.p99),
                    "throughput_per_second": list(p.throughput),
                    "result": v(p),
                }
                for p in self.pairs
            ],
            "only_in_a": self.only_a,
            "only_in_b": self.only_b,
            "notes": self.notes,
        }


def compare_runs(
    store: Any,
    run_a: str,
    run_b: str,
    statistic: str = "p50",
    threshold: float | None = None,
    alpha: float = 0.01,
) -> Comparison:
    """Compare two stored runs (ids already resolved) configuration by configuration."""
    sa, sb = store.summary(run_a), store.summary(run_b)
    cmp = Comparison(run_a, run_b, statistic, threshold)
    if sa["model"].get("sha256") != sb["model"].get("sha256"):
        cmp.notes.append(
            f"different model files ({sa['model'].get('name')} {sa['model'].get('sha256', '')[:12]}"
            f" vs {sb['model'].get('name')} {sb['model'].get('sha256', '')[:12]})"
        )
    ha, hb = sa.get("host", {}), sb.get("host", {})
    for k in ("host", "cpu_model", "onnxruntime_version"):
        if ha.get(k) != hb.get(k):
            cmp.notes.append(f"{k} differs: {ha.get(k)} vs {hb.get(k)}")

    def index(s: dict[str, Any]) -> dict[tuple, dict[str, Any]]:
        return {
            tuple(c[k] for k in KEY): c
            for c in s["configurations"]
            if c["status"] in ("ok", "interrupted") and c["samples"]
        }

    ia, ib = index(sa), index(sb)
    cmp.only_a = [c["label"] for k, c in ia.items() if k not in ib]
    cmp.only_b = [c["label"] for k, c in ib.items() if k not in ia]
    for key, ca in ia.items():
        cb = ib.get(key)
        if cb is None:
            continue
        xa = store.samples(run_a, ca["id"])
        xb = store.samples(run_b, cb["id"])
        verdict = None
        if xa.size >= 2 and xb.size >= 2:
            verdict = judge(xa, xb, statistic, threshold or 0.0, alpha)
        cmp.pairs.append(
            Pair(
                key,
                ca["label"],
                ca["id"],
                cb["id"],
                int(xa.size),
                int(xb.size),
                verdict,
                (ca["latency_seconds"]["p50"], cb["latency_seconds"]["p50"]),
                (ca["latency_seconds"]["p99"], cb["latency_seconds"]["p99"]),
                (ca["throughput_per_second"], cb["throughput_per_second"]),
            )
        )
    return cmp


def parse_threshold(text: str) -> float:
    """``5%`` or ``0.05`` → 0.05."""
    t = text.strip()
    try:
        v = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise ValueError(f"--fail-on-regression {text!r}: expected a percentage like 5%") from None
    if not 0 <= v < 10:
        raise ValueError(f"--fail-on-regression {text!r}: expected a percentage like 5%")
    return v
