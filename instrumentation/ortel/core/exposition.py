"""Readings → prometheus_client metric families. The only place that knows the text formats."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.utils import floatToGoString

from .catalog import MetricDef
from .readings import HistogramValue, Reading, SummaryValue

MAX_LABEL_CHARS = 256  # a model name longer than this is a bug upstream, not a label


def clean_label(value: str) -> str:
    """Labels must be valid UTF-8 for every scraper: a stray surrogate (a non-UTF-8 file name
    decoded with surrogateescape) would otherwise fail the whole scrape. Overlong values are cut."""
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    if len(value) > MAX_LABEL_CHARS:
        value = value[: MAX_LABEL_CHARS - 1] + "…"
    return value


def _unit(m: MetricDef) -> str:
    # prometheus_client appends the unit to a name that lacks it: only declare what the name has.
    return m.unit if m.unit and m.family_name.endswith("_" + m.unit) else ""


_FAMILIES: dict[str, Any] = {
    "counter": CounterMetricFamily,
    "histogram": HistogramMetricFamily,
    "summary": SummaryMetricFamily,
    "gauge": GaugeMetricFamily,
}


def _family(m: MetricDef) -> Any:
    # Any: prometheus_client's family classes have add_metric, its Metric base has not.
    return _FAMILIES[m.kind](m.family_name, m.help, labels=m.labels, unit=_unit(m))


def to_families(readings: Iterable[Reading]) -> Iterator[Metric]:
    """Group readings by metric (first-seen order) into families; duplicates keep the last."""
    families: dict[str, tuple[Any, dict[tuple[str, ...], object]]] = {}
    for r in readings:
        entry = families.get(r.metric.name)
        if entry is None:
            entry = families[r.metric.name] = (_family(r.metric), {})
        entry[1][tuple(clean_label(v) for v in r.labels)] = r.value
    for fam, samples in families.values():
        for labels, value in samples.items():
            if isinstance(value, HistogramValue):
                cum, buckets = 0, []
                for bound, n in zip(value.bounds + (float("inf"),), value.counts):
                    cum += n
                    buckets.append((floatToGoString(bound), cum))
                fam.add_metric(list(labels), buckets, value.sum)
            elif isinstance(value, SummaryValue):
                # prometheus_client's add_metric has no quantiles: add those samples by hand.
                fam.add_metric(list(labels), value.count, value.sum)
                names = fam._labelnames  # noqa: SLF001 - set by the family's constructor
                for q, v in value.quantiles:
                    fam.add_sample(
                        fam.name, dict(zip(names, labels), quantile=floatToGoString(q)), v
                    )
            else:
                fam.add_metric(list(labels), value)
        yield fam


class ReadingsCollector:
    """A prometheus_client collector over any ``() -> Iterable[Reading]`` source."""

    def __init__(self, source) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        yield from to_families(self._source())
