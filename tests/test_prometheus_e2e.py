"""End to end: `ortel serve --demo` scraped by a real Prometheus; /metrics linted by promtool."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from harness import OrtelServe, Prometheus, http_get, promtool_check_metrics, sample_value
from prometheus_client.openmetrics.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow

QUANTILE_EXPR = (
    "histogram_quantile(0.99, sum by (le) (rate(ortel_inference_duration_seconds_bucket[30s])))"
)


@dataclass
class Stack:
    serve: OrtelServe
    url: str
    prom: Prometheus


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    serve = OrtelServe("--demo")
    # Prometheus first: its scrape manager only picks targets up ~5 s after start, which then
    # overlaps with the daemon's own start-up instead of adding to it.
    with Prometheus([serve.target]) as prom, serve as url:
        yield Stack(serve, url, prom)


def test_prometheus_ingests_demo_metrics(stack: Stack) -> None:
    prom, target = stack.prom, stack.serve.target

    up = prom.wait_for(f'up{{instance="{target}"}} == 1', timeout=20)
    assert up[0]["metric"]["job"] == prom.job

    series = prom.wait_for(f'ortel_inferences_total{{instance="{target}"}}', timeout=10)
    for s in series:
        assert {"model", "provider", "status"} <= s["metric"].keys(), s["metric"]
    before = sum(sample_value(s) for s in series)

    # The demo keeps inferring, so a later scrape must see a larger total.
    prom.wait_for(f'sum(ortel_inferences_total{{instance="{target}"}}) > {before!r}', timeout=10)
    prom.wait_for("sum(increase(ortel_inferences_total[30s])) > 0", timeout=5)

    buckets = prom.wait_for("ortel_inference_duration_seconds_bucket", timeout=5)
    assert any(b["metric"].get("le") == "+Inf" for b in buckets), buckets
    prom.wait_for("ortel_inference_duration_seconds_count > 0", timeout=5)
    prom.wait_for("ortel_inference_duration_seconds_sum", timeout=5)

    # NaN (no rate yet) is filtered out by the comparison; wait for a real number.
    prom.wait_for(f"{QUANTILE_EXPR} >= 0", timeout=10)
    result = prom.query(QUANTILE_EXPR)
    assert len(result) == 1, result
    p99 = sample_value(result[0])
    assert math.isfinite(p99) and p99 >= 0, p99

    latency = prom.wait_for('ortel_inference_latency_seconds{quantile!=""}', timeout=5)
    assert all(math.isfinite(float(s["metric"]["quantile"])) for s in latency), latency


def test_endpoints(stack: Stack) -> None:
    status, _, body = http_get(f"{stack.url}/healthz")
    assert (status, body.strip()) == (200, "ok")
    status, _, _ = http_get(f"{stack.url}/")
    assert status == 200


def test_promtool_lints_text_format_clean(stack: Stack) -> None:
    status, ctype, body = http_get(f"{stack.url}/metrics", accept="text/plain")
    assert status == 200, body
    assert ctype.startswith("text/plain"), ctype
    assert "ortel_inferences_total" in body
    res = promtool_check_metrics(body)
    assert (res.returncode, res.stdout, res.stderr) == (0, "", ""), res


def test_openmetrics_variant_parses(stack: Stack) -> None:
    # promtool 2.42 `check metrics` only understands the text format (OpenMetrics input gives
    # bogus lint findings on _created/_total), so use the strict OpenMetrics parser instead.
    # Prometheus itself prefers OpenMetrics when scraping, so the e2e test above covers it too.
    status, ctype, body = http_get(f"{stack.url}/metrics", accept="application/openmetrics-text")
    assert status == 200, body
    assert ctype.startswith("application/openmetrics-text"), ctype
    assert body.endswith("# EOF\n"), body[-200:]
    families = {f.name: f for f in text_string_to_metric_families(body)}
    assert families["ortel_inferences"].type == "counter"
    assert families["ortel_inference_duration_seconds"].type == "histogram"
    names = {s.name for s in families["ortel_inference_duration_seconds"].samples}
    assert {
        "ortel_inference_duration_seconds_bucket",
        "ortel_inference_duration_seconds_sum",
        "ortel_inference_duration_seconds_count",
    } <= names
