"""Readings -> OTLP (otlp.py): conversion, the MeterProvider hook, drop accounting, and whole
pipelines against a real OTLP receiver (gRPC and HTTP/protobuf) on loopback."""

from __future__ import annotations

import threading
import time

import numpy as np
import onnxruntime as ort
import pytest
from harness import free_port
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from otlp_receiver import OtlpReceiver

from ortel.core import catalog as c
from ortel.core.readings import HistogramValue, SummaryValue, reading
from ortel.instrumentation import models, otlp, tracing
from ortel.instrumentation.recorder import Recorder
from ortel.instrumentation.session import instrument_session

NOW = 1_700_000_000_000_000_000


def by_name(metrics):
    return {m.name: m for m in metrics}


def points(metric):
    return {tuple(sorted(p.attributes.items())): p for p in metric.data.data_points}


def test_histograms_are_cumulative_explicit_bucket_with_the_catalogue_bounds():
    bounds = c.DEFAULT_LATENCY_BUCKETS
    counts = (3,) + (0,) * (len(bounds) - 1) + (1,)
    h = HistogramValue(bounds, counts, 60.5, 4)
    conv = otlp.ReadingsConverter(start_ns=NOW - 10)
    (m,) = conv.metrics(
        [reading(c.INFERENCE_DURATION, h, model="m", provider="CPU", status="ok")], NOW
    )
    assert (m.name, m.unit) == ("ortel.inference.duration", "s")
    assert m.data.aggregation_temporality is AggregationTemporality.CUMULATIVE
    (p,) = m.data.data_points
    assert list(p.explicit_bounds) == list(bounds) and list(p.bucket_counts) == list(counts)
    assert (p.count, p.sum, p.start_time_unix_nano, p.time_unix_nano) == (4, 60.5, NOW - 10, NOW)
    assert dict(p.attributes) == {
        "ortel.model": "m",
        "ortel.provider": "CPU",
        "ortel.status": "ok",
    }


def test_counters_gauges_updowncounters_and_quantiles():
    conv = otlp.ReadingsConverter(start_ns=NOW - 10)
    ms = by_name(
        conv.metrics(
            [
                reading(c.INFERENCES, 7.0, model="m", provider="CPU", status="ok"),
                reading(c.CPU_SECONDS, 12.5, mode="user"),
                reading(c.MEMORY_USED, 1024.0),
                reading(c.CPU_FREQUENCY, 2.4e9, cpu="3"),
                reading(
                    c.LATENCY_QUANTILE,
                    SummaryValue(((0.5, 0.01), (0.99, 0.03)), 1.0, 7),
                    model="m",
                    provider="CPU",
                ),
            ],
            NOW,
        )
    )
    count = ms["ortel.inference.count"]
    assert count.unit == "{inference}" and count.data.is_monotonic
    (p,) = count.data.data_points
    assert p.value == 7 and isinstance(p.value, int)  # counts stay integers
    cpu = ms["system.cpu.time"]
    assert cpu.data.is_monotonic and isinstance(cpu.data.data_points[0].value, float)
    assert dict(cpu.data.data_points[0].attributes) == {"cpu.mode": "user"}
    mem = ms["system.memory.usage"]  # an updowncounter in semconv: a non-monotonic sum
    assert not mem.data.is_monotonic and mem.unit == "By"
    assert dict(mem.data.data_points[0].attributes) == {"system.memory.state": "used"}
    freq = ms["system.cpu.frequency"]
    assert type(freq.data).__name__ == "Gauge"
    assert dict(freq.data.data_points[0].attributes) == {"cpu.logical_number": 3}  # an int
    q = ms["ortel.inference.latency.quantile"]
    assert {p.attributes["ortel.quantile"]: p.value for p in q.data.data_points} == {
        0.5: 0.01,
        0.99: 0.03,
    }


def test_hw_metrics_get_hw_id_and_type_and_share_one_otel_name():
    conv = otlp.ReadingsConverter()
    ms = conv.metrics(
        [
            reading(c.GPU_TEMPERATURE, 61.0, gpu="0", uuid="GPU-abc", name="H100"),
            reading(c.TEMPERATURE, 48.0, chip="coretemp", sensor="temp1", label="Package id 0"),
        ]
    )
    (m,) = ms  # one OTel metric, two sources
    assert (m.name, m.unit) == ("hw.temperature", "Cel")
    got = {p.attributes["hw.type"]: dict(p.attributes) for p in m.data.data_points}
    assert got == {
        "gpu": {"hw.id": "GPU-abc", "hw.name": "H100", "ortel.gpu.index": "0", "hw.type": "gpu"},
        "temperature": {
            "hw.id": "coretemp/temp1",
            "hw.name": "Package id 0",
            "hw.type": "temperature",
            "ortel.source": "hwmon",
        },
    }


def test_a_counter_that_goes_back_starts_a_new_stream():
    conv = otlp.ReadingsConverter(start_ns=NOW - 100)

    def start(value, now):
        (m,) = conv.metrics([reading(c.CONTEXT_SWITCHES, value)], now)
        return m.data.data_points[0].start_time_unix_nano

    assert start(10.0, NOW) == NOW - 100
    assert start(20.0, NOW + 1000) == NOW - 100
    assert start(5.0, NOW + 2000) == NOW + 1999  # reset (a restarted source)
    assert start(6.0, NOW + 3000) == NOW + 1999


def test_duplicate_series_keep_the_last_reading():
    conv = otlp.ReadingsConverter()
    (m,) = conv.metrics([reading(c.MEMORY_TOTAL, 1.0), reading(c.MEMORY_TOTAL, 2.0)])
    (p,) = m.data.data_points
    assert p.value == 2


def recorder_with_data() -> Recorder:
    rec = Recorder()
    s = rec.series("m", "CPU", sla_seconds=0.004)
    for ms in (1, 2, 3, 5):
        s.ok.append(ms * 1_000_000)
    s.items.extend([2, 2, 2, 2])
    return rec


def test_meter_provider_hook_adds_ortel_metrics_next_to_the_providers_own():
    rec = recorder_with_data()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource({"service.name": "svc"}))
    provider.get_meter("app").create_counter("app.requests").add(3)
    hook = otlp.MeterProviderHook(provider, otlp.ReadingsProducer(rec.readings))
    (rm,) = reader.get_metrics_data().resource_metrics
    assert rm.resource.attributes["service.name"] == "svc"
    scopes = {sm.scope.name: sm for sm in rm.scope_metrics}
    assert set(scopes) == {"app", "ortel"}
    ours = by_name(scopes["ortel"].metrics)
    (ok,) = [p for p in ours["ortel.inference.count"].data.data_points]
    assert ok.value == 4
    assert ours["ortel.inference.items"].data.data_points[0].value == 8
    assert ours["ortel.sla.violations"].data.data_points[0].value == 1
    hook.detach()
    (rm,) = reader.get_metrics_data().resource_metrics
    assert [sm.scope.name for sm in rm.scope_metrics] == ["app"]


def test_hook_on_a_provider_without_instruments_uses_its_resource():
    rec = recorder_with_data()
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource({"service.name": "x"}))
    otlp.MeterProviderHook(provider, otlp.ReadingsProducer(rec.readings))
    (rm,) = reader.get_metrics_data().resource_metrics
    assert rm.resource.attributes["service.name"] == "x"
    assert [sm.scope.name for sm in rm.scope_metrics] == ["ortel"]


def test_hook_refuses_a_provider_that_is_not_the_sdks():
    from opentelemetry.metrics import NoOpMeterProvider

    with pytest.raises(TypeError, match="not an OpenTelemetry SDK provider"):
        otlp.MeterProviderHook(NoOpMeterProvider(), otlp.ReadingsProducer(list))


def test_a_broken_source_exports_nothing_and_says_so_once(caplog):
    calls = []

    def broken():
        calls.append(1)
        raise OSError("gone")

    producer = otlp.ReadingsProducer(broken)
    assert producer.produce() == [] and producer.produce() == []
    assert len(calls) == 2
    assert caplog.text.count("reading metrics for OTLP failed") == 1


class FailingMetricExporter(MetricExporter):
    def export(self, metrics_data, timeout_millis=10_000, **kwargs):
        return MetricExportResult.FAILURE

    def force_flush(self, timeout_millis=10_000):
        return True

    def shutdown(self, timeout_millis=30_000, **kwargs):
        pass


def test_failed_metric_exports_count_their_points_as_dropped():
    drops = otlp.Drops()
    rec = recorder_with_data()
    export = otlp.OtlpExport(
        rec.readings,
        resource=Resource({}),
        interval=3600,
        metric_exporter=FailingMetricExporter(),
        drops=drops,
    )
    export.meter_provider.force_flush()
    first = drops.get("metrics", "export_failed")
    assert first > 10  # every point of the failed export
    export.meter_provider.force_flush()
    assert drops.get("metrics", "export_failed") > first
    # the drop counter is itself exported (and named as the catalogue says)
    names = {r.metric.name: r.value for r in drops.readings()}
    assert names == {"ortel_otlp_dropped_total": pytest.approx(names["ortel_otlp_dropped_total"])}
    export.shutdown(timeout=1)


class BlockedExporter(SpanExporter):
    """An exporter stuck on the network until released (as against an unreachable endpoint)."""

    def __init__(self):
        self.release = threading.Event()
        self.entered = threading.Event()
        self.exported = 0

    def export(self, spans):
        self.entered.set()
        self.release.wait(30)
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self):
        self.release.set()


def test_a_stuck_span_exporter_never_blocks_inference_and_drops_are_counted():
    drops = otlp.Drops()
    exporter = BlockedExporter()
    processor = otlp.BoundedSpanProcessor(exporter, max_queue=50, batch=10, delay=0.01, drops=drops)
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider()
    provider.add_span_processor(processor)
    rec = Recorder()
    sess = ort.InferenceSession(models.add_model(), providers=["CPUExecutionProvider"])
    spans = tracing.InferenceSpans(provider, root_spans_per_second=float("inf"))
    s = instrument_session(sess, model="add", recorder=rec, spans=spans)
    x = np.ones((1, 16), np.float32)
    s.run(None, {"x": x, "y": x})
    assert exporter.entered.wait(10)  # the worker is now stuck inside export()
    n = 2000
    for _ in range(n):  # would hang here if anything on the inference path waited
        s.run(None, {"x": x, "y": x})
    assert not exporter.release.is_set() and exporter.exported == 0
    assert processor.queued <= 50
    in_flight = 10 if processor.queued else 1  # the batch the worker holds
    assert drops.get("spans", "queue_full") >= n - 50 - in_flight
    exporter.release.set()
    processor.force_flush(10_000)
    assert exporter.exported + drops.get("spans", "queue_full") == n + 1
    ok = [r for r in rec.readings() if r.metric is c.INFERENCES and r.labels[2] == "ok"]
    assert ok[0].value == n + 1  # the metrics counted every call
    processor.shutdown()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_pipeline_pushes_metrics_and_spans_to_a_real_receiver(protocol):
    rec = recorder_with_data()
    with OtlpReceiver(protocol) as rx:
        export = otlp.OtlpExport(
            rec.readings,
            resource=otlp.make_resource("ortel-test", {"extra": "yes"}),
            endpoint=rx.endpoint,
            protocol=protocol,
            interval=0.2,
            traces=True,
        )
        try:
            tracer = export.tracer_provider.get_tracer("t")
            tracer.start_span("one").end()
            count = rx.wait_for_metric("ortel.inference.count")
            assert count[0].value == 4 and count[0].unit == "{inference}"
            assert count[0].monotonic and count[0].temporality == 2  # cumulative
            (hist,) = rx.wait_for_metric("ortel.inference.duration")
            assert hist.kind == "histogram" and hist.value.count == 4
            assert list(hist.value.explicit_bounds) == list(c.DEFAULT_LATENCY_BUCKETS)
            assert abs(hist.value.sum - 0.011) < 1e-9
            res = count[0].resource
            assert res["service.name"] == "ortel-test" and res["extra"] == "yes"
            assert res["host.name"] and res["process.pid"] > 0 and res["ortel.version"]
            dropped = {
                (p.attributes["ortel.signal"], p.attributes["ortel.reason"]): p.value
                for p in rx.latest("ortel.otlp.dropped")
            }
            assert dropped[("spans", "queue_full")] == 0
            export.flush()
            assert rx.wait(lambda: [s.name for s in rx.spans()] == ["one"])
        finally:
            export.shutdown()


def test_otel_service_name_wins_over_the_default(monkeypatch):
    monkeypatch.setenv("OTEL_SERVICE_NAME", "mine")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "host.name=override")
    res = otlp.make_resource("ortel").attributes
    assert res["service.name"] == "mine" and res["host.name"] == "override"


def test_protocol_resolution(monkeypatch):
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", raising=False)
    assert otlp.resolve_protocol(None, "metrics") == "grpc"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    assert otlp.resolve_protocol(None, "metrics") == "http/protobuf"
    assert otlp.resolve_protocol("grpc", "metrics") == "grpc"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json")
    with pytest.raises(ValueError, match="not one of"):
        otlp.resolve_protocol(None, "metrics")


def test_an_unreachable_endpoint_costs_the_push_not_the_caller(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    drops = otlp.Drops()
    rec = recorder_with_data()
    export = otlp.OtlpExport(
        rec.readings,
        resource=Resource({}),
        endpoint=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        interval=3600,
        drops=drops,
    )
    t0 = time.monotonic()
    rec.readings()  # what a scrape or the hot path's fold does: unaffected
    assert time.monotonic() - t0 < 1.0
    export.meter_provider.force_flush(5_000)
    assert drops.get("metrics", "export_failed") > 0
    export.shutdown(timeout=1)
