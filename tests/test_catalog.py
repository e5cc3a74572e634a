"""The catalogue follows Prometheus naming conventions and is the one source of names."""

import re

import pytest

from ortel.instrumentation import catalog as c

UNIT_SUFFIX = {"seconds", "bytes", "ratio", "hertz", "joules", "watts", "celsius"}


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
    ms = c.all_metrics()
    assert len({m.otel_name for m in ms}) == len(ms)


def test_default_buckets_span_50us_to_60s_log_spaced():
    b = c.DEFAULT_LATENCY_BUCKETS
    assert b[0] == 5e-05 and b[-1] == 60.0 and list(b) == sorted(b)
    ratios = [y / x for x, y in zip(b, b[1:-1])]
    assert all(1.7 < r < 1.8 for r in ratios)


def test_defining_a_name_twice_is_an_error():
    with pytest.raises(ValueError):
        c._define("ortel_inferences_total", "counter", "", "Again.")
