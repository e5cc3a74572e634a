"""What ortel's Prometheus exposition costs per series, against prometheus_client's own.

Builds a daemon-like set of readings (per model: latency histograms with the catalogue's default
buckets, outcome counters, quantile summaries and window gauges; per CPU and per process: gauges
and counters with one to three labels), about ``--series`` exposed series in all. In the same run,
interleaved over rounds, it times:

* ortel's writer, readings to the bytes the daemon sends, in the text format (0.0.4) and in
  OpenMetrics (what Prometheus negotiates);
* the families path ortel used before (readings to prometheus_client metric families, then
  prometheus_client's encoder), for reference;
* prometheus_client's ``generate_latest`` on a CollectorRegistry holding the same metrics made with
  prometheus_client's own Counter, Gauge, Histogram and Summary: what a regular prometheus_client
  application pays per series;
* a whole scrape of the daemon's HTTP server (``ortel.exporter.http.make_server``, in process,
  serving the same readings), GET /metrics over loopback with http.client: plain, and as
  Prometheus asks (OpenMetrics, gzip).

A series is one exposed sample line (each histogram bucket, _sum and _count is one); each
output's own lines are counted, so prometheus_client's _created series count too. Prints the
median per-series µs of each, the ratios ortel / prometheus_client (target <= 1.0) and the scrape
time (target < 25 ms at 5,000 series).

    python benchmarks/exposition.py [--series 5000] [--rounds 15] [--check]
"""

from __future__ import annotations

import argparse
import http.client
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary
from prometheus_client import generate_latest as pc_generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as pc_generate_openmetrics

from ortel.core import catalog as c
from ortel.core.exposition import negotiate, to_families
from ortel.core.readings import HistogramValue, Reading, SummaryValue
from ortel.exporter.http import make_server

LOOPBACK = "127.0.0.1"
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;"
    "version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
OPENMETRICS_ACCEPT = "application/openmetrics-text; version=1.0.0; charset=utf-8"

PROVIDERS = ("CPUExecutionProvider", "CUDAExecutionProvider")
STATUSES = ("ok", "error")
WINDOW_GAUGES = (
    c.LATENCY_MEAN,
    c.LATENCY_STDDEV,
    c.LATENCY_MIN,
    c.LATENCY_MAX,
    c.WINDOW_INFERENCES,
)
CPU_GAUGES = (c.CPU_CORE_UTILIZATION, c.CPU_FREQUENCY, c.CPU_FREQUENCY_MIN, c.CPU_FREQUENCY_MAX)
PROCESS_GAUGES = (c.PROCESS_THREADS, c.PROCESS_RSS)
LINES_PER_MODEL = (
    len(PROVIDERS) * len(STATUSES) * (len(c.DEFAULT_LATENCY_BUCKETS) + 3 + 1)
    + len(PROVIDERS) * (1 + len(c.QUANTILES) + 2 + len(WINDOW_GAUGES))
    + 3
)
LINES_PER_CPU = len(CPU_GAUGES) + 1
LINES_PER_PROCESS = len(PROCESS_GAUGES)


def build_readings(series: int, seed: int = 1) -> list[Reading]:
    """About ``series`` exposed lines: 60% per-model inference metrics, 25% per-CPU, the rest
    per-process."""
    rnd = random.Random(seed)
    models = max(1, round(series * 0.6 / LINES_PER_MODEL))
    cpus = max(1, round(series * 0.25 / LINES_PER_CPU))
    left = series - models * LINES_PER_MODEL - cpus * LINES_PER_CPU
    processes = max(1, left // LINES_PER_PROCESS)
    nb = len(c.DEFAULT_LATENCY_BUCKETS) + 1
    out: list[Reading] = []
    for i in range(models):
        model = f"model-{i:03d}"
        for p in PROVIDERS:
            for s in STATUSES:
                counts = tuple(rnd.randrange(0, 50) if rnd.random() < 0.6 else 0 for _ in range(nb))
                total = sum(counts)
                hv = HistogramValue(c.DEFAULT_LATENCY_BUCKETS, counts, total * 0.0123, total)
                out.append(Reading(c.INFERENCE_DURATION, (model, p, s), hv))
                out.append(Reading(c.INFERENCES, (model, p, s), float(total)))
            out.append(Reading(c.INFERENCE_ITEMS, (model, p), float(rnd.randrange(10**6))))
            qs = tuple((q, rnd.uniform(1e-4, 1.0) * (1 + q)) for q in c.QUANTILES)
            sv = SummaryValue(qs, rnd.uniform(0, 1e4), rnd.randrange(10**6))
            out.append(Reading(c.LATENCY_QUANTILE, (model, p), sv))
            for g in WINDOW_GAUGES:
                out.append(Reading(g, (model, p), rnd.uniform(1e-4, 1.0)))
        out.append(Reading(c.SLA_TARGET, (model,), 0.05))
        out.append(Reading(c.SLA_VIOLATIONS, (model,), float(rnd.randrange(1000))))
        out.append(Reading(c.SLA_COMPLIANCE, (model,), rnd.random()))
    for cpu in range(cpus):
        for g in CPU_GAUGES:
            out.append(Reading(g, (str(cpu),), rnd.uniform(0, 4e9)))
        out.append(Reading(c.CPU_THROTTLES, (str(cpu), "core"), float(rnd.randrange(100))))
    for pid in range(processes):
        labels = (str(10000 + pid), f"worker-{pid % 7}", "instrumented")
        out.append(Reading(c.PROCESS_THREADS, labels, float(rnd.randrange(1, 64))))
        out.append(Reading(c.PROCESS_RSS, labels, float(rnd.randrange(2**20, 2**34))))
    return out


def build_prometheus_client_registry(readings: list[Reading], seed: int = 2) -> CollectorRegistry:
    """The same metrics and label sets made with prometheus_client's own metric classes."""
    rnd = random.Random(seed)
    reg = CollectorRegistry(auto_describe=False)
    metrics: dict[str, object] = {}
    for r in readings:
        m = r.metric
        metric = metrics.get(m.name)
        if metric is None:
            kw = {"labelnames": m.labels, "registry": reg}
            if m.kind == "counter":
                metric = Counter(m.name, m.help, **kw)
            elif m.kind == "gauge":
                metric = Gauge(m.name, m.help, **kw)
            elif m.kind == "histogram":
                metric = Histogram(m.name, m.help, buckets=m.buckets, **kw)
            else:
                metric = Summary(m.name, m.help, **kw)
            metrics[m.name] = metric
        child = metric.labels(*r.labels) if r.labels else metric  # type: ignore[attr-defined]
        v = r.value
        if isinstance(v, (HistogramValue, SummaryValue)):
            for _ in range(5):
                child.observe(rnd.lognormvariate(-4, 1.5))
        elif m.kind == "counter":
            child.inc(v)
        else:
            child.set(v)
    return reg


def lines(body: bytes) -> int:
    return sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))


def scrape(port: int, headers: dict[str, str]) -> bytes:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        conn.request("GET", "/metrics", headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, resp.status
        return body
    finally:
        conn.close()


class _Families:
    def __init__(self, readings: list[Reading]) -> None:
        self._readings = readings

    def collect(self):
        return to_families(self._readings)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=5000, help="exposed series (about)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--repeat", type=int, default=3, help="calls per variant per round")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args()

    readings = build_readings(args.series)
    registry = build_prometheus_client_registry(readings)
    text_writer, _ = negotiate("")
    om_writer, _ = negotiate(OPENMETRICS_ACCEPT)
    old = _Families(readings)

    server = make_server(LOOPBACK, 0, lambda: readings, ["bench"])
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    prometheus_headers = {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}

    variants: dict[str, Callable[[], bytes]] = {
        "ortel text 0.0.4": lambda: text_writer(readings),
        "ortel OpenMetrics": lambda: om_writer(readings),
        "old ortel families, text": lambda: pc_generate_latest(old),
        "old ortel families, OpenMetrics": lambda: pc_generate_openmetrics(old),
        "prometheus_client text": lambda: pc_generate_latest(registry),
        "prometheus_client OpenMetrics": lambda: pc_generate_openmetrics(registry),
        "daemon scrape, text": lambda: scrape(port, {}),
        "daemon scrape, as Prometheus": lambda: scrape(port, prometheus_headers),
    }
    try:
        # Sanity: the old and new paths write the same bytes; count each output's series.
        assert text_writer(readings) == pc_generate_latest(old)
        assert om_writer(readings) == pc_generate_openmetrics(old)
        assert scrape(port, {}) == text_writer(readings)
        series = {name: lines(fn()) for name, fn in variants.items() if "scrape" not in name}
        series["daemon scrape, text"] = series["ortel text 0.0.4"]
        series["daemon scrape, as Prometheus"] = series["ortel OpenMetrics"]

        times: dict[str, list[float]] = {name: [] for name in variants}
        order = list(variants)
        for r in range(args.rounds):
            rot = order[r % len(order) :] + order[: r % len(order)]
            for name in rot:
                fn = variants[name]
                t0 = time.perf_counter()
                for _ in range(args.repeat):
                    fn()
                times[name].append((time.perf_counter() - t0) / args.repeat)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)

    med = {name: statistics.median(ts) for name, ts in times.items()}
    per = {name: med[name] / series[name] * 1e6 for name in med}
    print(
        f"{len(readings)} readings; series: ortel {series['ortel text 0.0.4']}, "
        f"prometheus_client {series['prometheus_client text']} (with its _created series); "
        f"{args.rounds} rounds x {args.repeat}, median"
    )
    print(f"{'variant':34s} {'series':>7s} {'ms':>8s} {'µs/series':>10s}")
    for name in variants:
        print(f"{name:34s} {series[name]:7d} {med[name] * 1e3:8.2f} {per[name]:10.3f}")
    text_ratio = per["ortel text 0.0.4"] / per["prometheus_client text"]
    om_ratio = per["ortel OpenMetrics"] / per["prometheus_client OpenMetrics"]
    om_vs_text = per["ortel OpenMetrics"] / per["prometheus_client text"]
    old_ratio = per["old ortel families, text"] / per["prometheus_client text"]
    scrape_ms = med["daemon scrape, text"] * 1e3
    prom_ms = med["daemon scrape, as Prometheus"] * 1e3
    n = series["ortel text 0.0.4"]
    budget_ms = 25.0 * n / 5000  # 25 ms at 5,000 series, in proportion at other sizes
    ratios_ok = max(text_ratio, om_ratio, om_vs_text) <= 1.0
    ok = ratios_ok and max(scrape_ms, prom_ms) < budget_ms
    print(f"ratio ortel/prometheus_client per series, text:        {text_ratio:.2f}")
    print(f"ratio ortel/prometheus_client per series, OpenMetrics: {om_ratio:.2f}")
    print(f"ratio ortel OpenMetrics / prometheus_client text:      {om_vs_text:.2f}")
    print(f"(before: ortel via families / prometheus_client text:  {old_ratio:.2f})")
    print(
        f"daemon scrape at {n} series: {scrape_ms:.1f} ms text, "
        f"{prom_ms:.1f} ms as Prometheus asks (OpenMetrics, gzip); budget {budget_ms:.1f} ms"
    )
    print(f"target (ratios <= 1.0, scrape < 25 ms per 5,000 series): {'met' if ok else 'MISSED'}")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
