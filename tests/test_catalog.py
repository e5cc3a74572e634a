"""The catalogue follows Prometheus naming conventions and is the one source of names."""

import re

import pytest
import semconv_registry as semconv

from ortel.core import catalog as c

# Prometheus' base units (https://prometheus.io/docs/practices/naming/#base-units) ortel uses.
UNIT_SUFFIX = {
    "seconds",
    "bytes",
    "ratio",
    "hertz",
    "joules",
    "watts",
    "volts",
    "amperes",
    "celsius",
}


@pytest.mark.parametrize("m", c.all_metrics(), ids=lambda m: m.name)
def test_names_follow_prometheus_conventions(m):
    assert re.fullmatch(r"ortel_[a-z0-9_]+", m.name)
    assert m.name.endswith("_total") == (m.kind == "counter")
    if m.unit:
        assert m.family_name.endswith("_" + m.unit), "base unit must be the name's suffix"
        assert m.unit in UNIT_SUFFIX
    assert m.help.endswith(".") and len(m.help) > 10
    assert len(set(m.labels)) == len(m.labels) and "le" not in m.labels
    assert (m.kind == "histogram") == (m.buckets is not None)
    assert m.otel_name and re.fullmatch(r"[a-z][a-z0-9_.]+", m.otel_name)


def test_names_and_otel_names_are_unique():
    # One OTel metric may gather several catalogue metrics (hw.temperature: GPUs, hwmon, thermal
    # zones) when the instrument and unit agree and fixed attributes tell the sources apart.
    by_otel: dict[str, list[c.MetricDef]] = {}
    for m in c.all_metrics():
        by_otel.setdefault(m.otel_name, []).append(m)
    for name, group in by_otel.items():
        if len(group) == 1:
            continue
        assert len({(m.otel_instrument, m.otel_unit) for m in group}) == 1, name
        constants = [frozenset(m.otel_constants) for m in group]
        assert all(constants) and len(set(constants)) == len(group), name


def test_default_buckets_span_50us_to_60s_log_spaced():
    b = c.DEFAULT_LATENCY_BUCKETS
    assert b[0] == 5e-05 and b[-1] == 60.0 and list(b) == sorted(b)
    ratios = [y / x for x, y in zip(b, b[1:-1])]
    assert all(1.7 < r < 1.8 for r in ratios)


def test_defining_a_name_twice_is_an_error():
    with pytest.raises(ValueError):
        c._define("ortel_inferences_total", "counter", "", "Again.")


# --- OTel side: semantic conventions, as the installed semconv package states them -------------


@pytest.mark.parametrize(
    "m", [m for m in c.all_metrics() if not m.otel_name.startswith("ortel.")], ids=lambda m: m.name
)
def test_semconv_names_match_the_conventions(m):
    spec = semconv.metrics().get(m.otel_name)
    assert spec is not None, f"{m.otel_name} is not a semconv metric: name it ortel.*"
    assert not spec.deprecated, f"{m.otel_name} is deprecated in semconv"
    assert m.otel_instrument == spec.instrument
    assert m.otel_unit == spec.unit


@pytest.mark.parametrize("m", c.all_metrics(), ids=lambda m: m.name)
def test_otel_attributes_are_semconv_or_ortel(m):
    known = semconv.attributes()
    plan = m.otel_plan()
    names = [a for a, _ in plan]
    assert len(set(names)) == len(names), "two labels map to one attribute"
    for attr, source in plan:
        if not attr.startswith("ortel."):
            assert attr in known, f"{attr} is not a semconv attribute: name it ortel.*"
            assert not known[attr], f"{attr} is deprecated in semconv"
        if not source.startswith("="):
            assert set(c._template_labels(source)) <= set(m.labels), (attr, source)
    if m.otel_name.startswith("hw."):
        assert {"hw.id", "hw.type"} <= set(names), "hw.* metrics need hw.id and hw.type"


@pytest.mark.parametrize("m", c.all_metrics(), ids=lambda m: m.name)
def test_otel_units_are_ucum(m):
    assert re.fullmatch(r"1|\{[a-z_]+\}|[A-Za-z]+(/[a-z]+)?", m.otel_unit), m.otel_unit
    if m.unit:
        assert m.otel_unit == c.OTEL_UNITS[m.unit]
    if m.kind == "counter":
        assert m.otel_instrument == "counter"


def test_gen_ai_histograms_use_the_semconv_bucket_advice():
    ttft = [m for m in c.all_metrics() if m.otel_name == "gen_ai.server.time_to_first_token"]
    tpot = [m for m in c.all_metrics() if m.otel_name == "gen_ai.server.time_per_output_token"]
    advice_ttft = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5)
    advice_tpot = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
    for m in ttft:
        assert m.buckets == advice_ttft + (5.0, 7.5, 10.0)
    for m in tpot:
        assert m.buckets == advice_tpot
