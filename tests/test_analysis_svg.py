"""The inline SVG charts."""

from __future__ import annotations

import re

import numpy as np
import pytest

from ortel.analysis import svg


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0123, "12.3 ms"), (2.5, "2.5 s"), (4.2e-6, "4.2 µs"), (3e-10, "0.3 ns"), (None, "—"),
     (0.0, "0 s")],
)  # fmt: skip
def test_fmt_seconds(seconds, text):
    assert svg.fmt_seconds(seconds) == text


def test_nice_ticks():
    assert svg.nice_ticks(0, 10) == [0, 2, 4, 6, 8, 10]
    assert svg.nice_ticks(0, 0.0037) == [0, 0.001, 0.002, 0.003]
    assert svg.nice_ticks(5, 5)  # a flat range still gets ticks


def test_tick_labels_stay_distinct():
    labels = [svg._fmt(v) for v in (0, 5000, 10000, 15000, 20000, 25000)]
    assert labels == ["0", "5000", "10k", "15k", "20k", "25k"]
    assert len(set(labels)) == len(labels)


def test_line_chart_escapes_and_draws():
    c = svg.Chart("<b>title</b>", "x", "y")
    c.series.append(svg.Series("a & b", [1, 2, 3], [1.0, 4.0, 2.0]))
    out = c.render()
    assert out.startswith("<svg") and out.endswith("</svg>")
    assert "&lt;b&gt;title&lt;/b&gt;" in out and "a &amp; b" in out
    assert out.count("<polyline") == 1


def test_log_axes_skip_non_positive_values():
    c = svg.Chart("t", "x", "y", x_log=True)
    c.series.append(svg.Series("", [0, 1, 10, 100], [1, 2, 3, 4]))
    assert "polyline" in c.render()


def test_big_series_are_decimated():
    c = svg.Chart("t", "x", "y")
    n = 50_000
    c.series.append(svg.Series("", np.arange(n), np.random.default_rng(0).random(n), "points"))
    out = c.render()
    assert out.count("<circle") == svg.MAX_POINTS


def test_empty_charts_say_so():
    assert "no data" in svg.Chart("t", "x", "y").render()
    assert "no data" in svg.histogram("t", np.array([]), "x")
    assert "no data" in svg.bar_chart("t", ["a"], [None], "y")


def test_histogram_long_tail_goes_log_and_reports_clipping():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(1.0, 0.01, 5000), rng.normal(40.0, 1.0, 100)])
    out = svg.histogram("h", v, "ms", marks=[(1.0, "p50")])
    assert "ms, log" in out
    v = np.concatenate([rng.normal(1.0, 0.05, 5000), [9.0] * 3])
    out = svg.histogram("h", v, "ms")
    assert re.search(r"last bar includes [34] slower \(up to 9\)", out)  # the 3, maybe 1 normal


def test_bars_mark_failures_and_slant_many_labels():
    out = svg.bar_chart("b", ["cpu", "cuda"], [1.0, None], "ms")
    assert "failed" in out
    many = svg.bar_chart("b", [f"op{i}" for i in range(10)], list(range(10)), "us")
    assert "rotate(-25" in many


def test_horizontal_bars_scale_to_the_largest_and_escape():
    import xml.etree.ElementTree as ET

    out = svg.hbar_chart(
        [("MatMul", 300.0, "4 nodes"), ("<Add>", 150.0, "a & b")], lambda v: f"{v:g} us"
    )
    root = ET.fromstring(out)
    widths = [float(r.get("width")) for r in root.iter("rect") if r.get("width")]
    assert widths[0] == pytest.approx(2 * widths[1])
    assert "&lt;Add&gt;" in out and "a &amp; b" in out and "300 us" in out
    assert svg.hbar_chart([], str) == "<p>no data</p>"
