"""Typed readings: what collectors and the recorder produce, before any exposition format.

Values are in base units (seconds, bytes, joules, ratios); formatting belongs to exposition, which
keeps the Prometheus and OTLP sides identical and collectors trivially testable.
"""

from __future__ import annotations

from dataclasses import dataclass

from .catalog import MetricDef


@dataclass(frozen=True, slots=True)
class HistogramValue:
    bounds: tuple[float, ...]  # finite upper bounds; +Inf is implied
    counts: tuple[int, ...]  # per bucket, not cumulative; len(bounds) + 1 (the last is +Inf)
    sum: float
    count: int


@dataclass(frozen=True, slots=True)
class SummaryValue:
    quantiles: tuple[tuple[float, float], ...]  # (quantile, value); may be empty
    sum: float
    count: int


@dataclass(frozen=True, slots=True)
class Reading:
    metric: MetricDef
    labels: tuple[str, ...]  # values in the order of metric.labels
    value: float | HistogramValue | SummaryValue

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.metric.labels):
            raise ValueError(
                f"{self.metric.name} takes labels {self.metric.labels}, got {self.labels!r}"
            )


def reading(
    metric: MetricDef, value: float | HistogramValue | SummaryValue, **labels: str
) -> Reading:
    """Build a reading with labels by name (missing names are an error, order follows the def)."""
    try:
        values = tuple(str(labels.pop(n)) for n in metric.labels)
    except KeyError as e:
        raise ValueError(f"{metric.name}: missing label {e}") from None
    if labels:
        raise ValueError(f"{metric.name}: unknown labels {sorted(labels)}")
    return Reading(metric, values, value)
