"""Readings → the Prometheus text formats. The only place that knows them.

``render`` writes the 0.0.4 text format or OpenMetrics straight from readings in one pass: each
family's header lines are cached per MetricDef (rendered once by prometheus_client's own encoders,
so HELP escaping, units and counter naming are theirs), label sets are formatted with a template
per metric, and numbers are formatted exactly as prometheus_client's ``floatToGoString`` does. The
bytes are identical to prometheus_client's encoders over ``to_families`` (tests/test_exposition.py
checks it); that path stays for consumers that want metric families (``ReadingsCollector``, which
lets a CollectorRegistry hold ortel's readings next to an application's own metrics, and
``ortel top``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.exposition import generate_latest as _text_encoder
from prometheus_client.openmetrics import exposition as _om
from prometheus_client.utils import floatToGoString
from prometheus_client.validation import _is_valid_legacy_metric_name

from .cardinality import MAX_LABEL_CHARS, clean_label
from .catalog import MetricDef
from .readings import HistogramValue, Reading, SummaryValue


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


# --- metric families (prometheus_client's object model) -----------------------------------------
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

    def __init__(self, source: Callable[[], Iterable[Reading]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        yield from to_families(self._source())


# --- the direct writer --------------------------------------------------------------------------
UNDERSCORES = _om.UNDERSCORES  # prometheus_client's default name escaping
_SPECIAL = {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}


def go_float(d: float) -> str:
    """prometheus_client's ``floatToGoString``, with fewer steps on the common path."""
    if type(d) is not float:
        d = float(d)
    s = repr(d)
    if len(s) > 8:  # "1234567.0" is the shortest repr that Go writes with an exponent
        dot = s.find(".")
        if dot > 6 and d > 0:
            mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
            return f"{mantissa}e+{dot - 1:02d}"
        return s
    if s[-1] in "nf":  # inf, -inf, nan
        return _SPECIAL[s]
    return s


def _escape_value(v: str) -> str:
    # The label-value escaping of both formats (prometheus_client escapes values the same way
    # whatever the name-escaping scheme).
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _literal(s: str) -> str:
    """``s`` as literal text inside a str.format template."""
    return s.replace("{", "{{").replace("}", "}}")


class _Plan:
    """How one metric is written in one format and name escaping: its header, and for each
    sample name the line templates (``str.format`` over the metric's escaped label values)."""

    def __init__(self, m: MetricDef, openmetrics: bool, escaping: str) -> None:
        self.metric = m
        fam = _family(m)
        self.name = name = fam.name
        self.kind = m.kind
        self.nlabels = len(m.labels)
        self._openmetrics = openmetrics
        self._escaping = escaping
        # The header, exactly as prometheus_client writes it for a family without samples.
        if openmetrics:
            head = _om.generate_latest(_One(fam), escaping=escaping).decode()
            self.header = head[: -len("# EOF\n")]
        else:
            self.header = _text_encoder(_One(fam), escaping=escaping).decode()
        self._names = {k: _om.escape_label_name(k, escaping) for k in m.labels}
        if self.kind == "counter":
            self.line = self._template(name + "_total")
        elif self.kind == "gauge":
            self.line = self._template(name)
        elif self.kind == "histogram":
            self.lead, self.tail = self._split(name + "_bucket", "le")
            self.count = self._template(name + "_count")
            self.sum = self._template(name + "_sum")
            self._les: tuple[tuple[float, ...] | None, list[str]] = (None, [])
        else:  # summary
            self.count = self._template(name + "_count")
            self.sum = self._template(name + "_sum")
            self.lead, self.tail = self._split(name, "quantile")
            self._quantiles: dict[float, str] = {}

    def _forms(self, sample: str) -> tuple[str, str]:
        """(what precedes the label pairs, the line up to its value without labels)."""
        esc = self._escaping
        if esc != _om.ALLOWUTF8 or _is_valid_legacy_metric_name(sample):
            if self._openmetrics:
                n = _om._escape(sample, esc, _om._is_legacy_labelname_rune)
            else:
                n = _om.escape_metric_name(sample, esc)
            return n + "{", n + " "
        n = _om.escape_metric_name(sample, esc)
        return "{" + n + ",", "{" + n + "} "

    def _pairs(self, names: list[str]) -> str:
        """Label pairs in the order given, as a template over the label values' positions."""
        index = {k: i for i, k in enumerate(self.metric.labels)}
        return ",".join(f'{_literal(self._names[k])}="{{{index[k]}}}"' for k in names)

    def _template(self, sample: str) -> str:
        """The whole line: format(*labels, value)."""
        open_, bare = self._forms(sample)
        value = "{" + str(self.nlabels) + "}\n"
        if not self.nlabels:
            return _literal(bare) + value
        return _literal(open_) + self._pairs(sorted(self.metric.labels)) + "}} " + value

    def _split(self, sample: str, extra: str) -> tuple[str, str]:
        """Templates for the line before and after the ``extra`` label's pair (le, quantile),
        which sorts among the metric's own labels."""
        open_, _ = self._forms(sample)
        names = sorted(self.metric.labels)
        before = [k for k in names if k < extra]
        after = [k for k in names if k > extra]  # a label named like extra: its value is lost
        lead = _literal(open_) + self._pairs(before) + ("," if before else "")
        tail = ("," if after else "") + self._pairs(after) + "}} "
        return lead + _literal(_om.escape_label_name(extra, self._escaping)) + '="', '"' + tail

    def les(self, bounds: tuple[float, ...]) -> list[str]:
        """The ``le`` values of ``bounds`` and +Inf (usually the same bounds as last time)."""
        cached, les = self._les  # one tuple: threads rendering at once see a matching pair
        if bounds is not cached:
            les = [floatToGoString(b) for b in bounds] + ["+Inf"]
            self._les = (bounds, les)
        return les

    def quantile(self, q: float) -> str:
        s = self._quantiles.get(q)
        if s is None:
            s = self._quantiles[q] = floatToGoString(q)
        return s


class _One:
    """A registry of one family, for prometheus_client's encoders."""

    def __init__(self, fam: Metric) -> None:
        self._fam = fam

    def collect(self) -> list[Metric]:
        return [self._fam]


_PLANS: dict[tuple[str, bool, str], _Plan] = {}


def _plan(m: MetricDef, openmetrics: bool, escaping: str) -> _Plan:
    key = (m.name, openmetrics, escaping)
    p = _PLANS.get(key)
    if p is None or (p.metric is not m and p.metric != m):
        p = _PLANS[key] = _Plan(m, openmetrics, escaping)
    return p


def _count(n: int) -> str:
    if type(n) is int and 0 <= n < 1000000:
        return f"{n}.0"
    return go_float(n)


def _write_histogram(p: _Plan, samples: dict[tuple[str, ...], Any], out: list[str]) -> None:
    for labels, v in samples.items():
        if not isinstance(v, HistogramValue):
            raise TypeError(f"{p.metric.name}: a histogram's reading is {v!r}")
        lead = p.lead.format(*labels)
        tail = p.tail.format(*labels)
        cum, last, s = 0, -1, ""
        les = p.les(v.bounds)
        for le, n in zip(les, v.counts):
            cum += n
            if cum != last:
                s = _count(cum)
                last = cum
            out.append(f"{lead}{le}{tail}{s}\n")
        # Like prometheus_client: no _count and _sum when buckets go below zero.
        if float(les[0]) >= 0:
            out.append(p.count.format(*labels, s))
            out.append(p.sum.format(*labels, go_float(v.sum)))


def _write_summary(p: _Plan, samples: dict[tuple[str, ...], Any], out: list[str]) -> None:
    for labels, v in samples.items():
        if not isinstance(v, SummaryValue):
            raise TypeError(f"{p.metric.name}: a summary's reading is {v!r}")
        out.append(p.count.format(*labels, go_float(v.count)))
        out.append(p.sum.format(*labels, go_float(v.sum)))
        if v.quantiles:
            lead = p.lead.format(*labels)
            tail = p.tail.format(*labels)
            for q, x in v.quantiles:
                out.append(f"{lead}{p.quantile(q)}{tail}{go_float(x)}\n")


def render(
    readings: Iterable[Reading], openmetrics: bool = False, escaping: str = UNDERSCORES
) -> bytes:
    """The exposition of ``readings``: text format 0.0.4, or OpenMetrics 1.0 when asked, with
    prometheus_client's name ``escaping`` scheme. Families in first-seen order; a label set seen
    twice in one metric keeps its first place and its last value."""
    groups: dict[str, tuple[MetricDef, dict[tuple[str, ...], Any]]] = {}
    for r in readings:
        m = r.metric
        g = groups.get(m.name)
        if g is None:
            g = groups[m.name] = (m, {})
        labels = r.labels
        if labels:
            joined = "".join(labels)
            if not joined.isascii() or len(joined) > MAX_LABEL_CHARS:
                labels = tuple([clean_label(v) for v in labels])
                joined = "".join(labels)
            if "\\" in joined or "\n" in joined or '"' in joined:
                # Escaping is one-to-one, so deduplicating escaped values is deduplicating values.
                labels = tuple([_escape_value(v) for v in labels])
        g[1][labels] = r.value
    out: list[str] = []
    for m, samples in groups.values():
        p = _plan(m, openmetrics, escaping)
        out.append(p.header)
        kind = p.kind
        if kind == "histogram":
            _write_histogram(p, samples, out)
        elif kind == "summary":
            _write_summary(p, samples, out)
        else:
            line = p.line.format
            for labels, v in samples.items():
                out.append(line(*labels, go_float(v)))
    if openmetrics:
        out.append("# EOF\n")
    return "".join(out).encode("utf-8")


Writer = Callable[[Iterable[Reading]], bytes]


def negotiate(accept: str | None) -> tuple[Writer, str]:
    """The writer and Content-Type for a scraper's Accept header, as prometheus_client's
    ``choose_encoder`` negotiates them (format, version and name escaping)."""
    encoder, ctype = choose_encoder(accept or "")
    func: Any = getattr(encoder, "func", encoder)
    kw: dict[str, Any] = dict(getattr(encoder, "keywords", {}))
    escaping = kw.pop("escaping", UNDERSCORES)
    kw.pop("version", None)  # only native histograms depend on it; readings have none
    if not kw and func is _text_encoder:
        return (lambda rs: render(rs, False, escaping)), ctype
    if not kw and func is _om.generate_latest:
        return (lambda rs: render(rs, True, escaping)), ctype
    # A negotiation this writer does not know (a newer prometheus_client): its encoder decides.
    return (lambda rs: encoder(_Readings(rs))), ctype


class _Readings:
    def __init__(self, readings: Iterable[Reading]) -> None:
        self._readings = readings

    def collect(self) -> Iterator[Metric]:
        return to_families(self._readings)
