"""The OpenTelemetry instrumentor, start_otlp and the resource detector (otel.py).

In-process, with the SDK's in-memory span exporter and metric reader; the no-code-change path
(``opentelemetry-instrument``) runs end to end in test_otel_e2e.py."""

from __future__ import annotations

from importlib.metadata import entry_points

import numpy as np
import onnxruntime as ort
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otlp_receiver import OtlpReceiver

from ortel.instrumentation import models, otel, tracing
from ortel.instrumentation.instrumentor import OnnxRuntimeInstrumentor
from ortel.instrumentation.recorder import Recorder

X = np.ones((1, 16), np.float32)


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "adder.onnx"
    path.write_bytes(models.add_model())
    return str(path)


@pytest.fixture
def instrumentor():
    inst = otel.OnnxRuntimeOtelInstrumentor()
    yield inst
    if inst.is_instrumented_by_opentelemetry:
        inst.uninstrument()
    tracing.disable()


def metric_names(reader):
    data = reader.get_metrics_data()
    if data is None:  # nothing at all to export
        return {}
    return {
        m.name: m
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        if sm.scope.name == "ortel"
        for m in sm.metrics
    }


def test_instrumentor_gives_spans_and_metrics_to_the_providers(instrumentor, model_file):
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(spans))
    mp = MeterProvider(metric_readers=[reader])
    rec = Recorder()
    original_init = ort.InferenceSession.__init__
    instrumentor.instrument(
        tracer_provider=tp, meter_provider=mp, recorder=rec, root_spans_per_second=float("inf")
    )
    assert instrumentor.is_instrumented_by_opentelemetry
    sess = ort.InferenceSession(model_file, providers=["CPUExecutionProvider"])
    for _ in range(3):
        sess.run(None, {"x": X, "y": X})
    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == ["onnxruntime.run"] * 3
    assert finished[0].attributes["ortel.model"] == "adder"
    ms = metric_names(reader)
    (count,) = ms["ortel.inference.count"].data.data_points
    assert count.value == 3 and ms["ortel.inference.count"].unit == "{inference}"
    (load,) = ms["ortel.session.load.duration"].data.data_points
    assert 0 < load.value < 30
    (hist,) = ms["ortel.inference.duration"].data.data_points
    assert hist.count == 3

    instrumentor.uninstrument()
    assert ort.InferenceSession.__init__ is original_init
    assert tracing.ACTIVE is None
    assert metric_names(reader) == {}
    plain = ort.InferenceSession(model_file, providers=["CPUExecutionProvider"])
    plain.run(None, {"x": X, "y": X})
    assert len(spans.get_finished_spans()) == 3


def test_without_a_configured_tracer_provider_there_are_no_spans(instrumentor, model_file):
    reader = InMemoryMetricReader()
    instrumentor.instrument(
        tracer_provider=trace.NoOpTracerProvider(),
        meter_provider=MeterProvider(metric_readers=[reader]),
        recorder=Recorder(),
    )
    assert tracing.ACTIVE is None
    sess = ort.InferenceSession(model_file, providers=["CPUExecutionProvider"])
    sess.run(None, {"x": X, "y": X})
    assert not hasattr(sess.run, "__wrapped__")  # the plain wrapper, with no span layer
    assert "ortel.inference.count" in metric_names(reader)


def test_instrument_uninstrument_are_symmetric_and_idempotent(instrumentor):
    core = OnnxRuntimeInstrumentor()
    instrumentor.instrument(tracer_provider=trace.NoOpTracerProvider(), recorder=Recorder())
    instrumentor.instrument()  # logged and ignored, as contrib instrumentors do
    assert core.is_instrumented
    instrumentor.uninstrument()
    assert not core.is_instrumented
    instrumentor.uninstrument()
    assert not core.is_instrumented
    assert list(instrumentor.instrumentation_dependencies()) == ["onnxruntime >= 1.16"]


def test_entry_points_are_registered():
    (ep,) = [e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "onnxruntime"]
    assert ep.load() is otel.OnnxRuntimeOtelInstrumentor
    (det,) = [e for e in entry_points(group="opentelemetry_resource_detector") if e.name == "ortel"]
    assert det.load() is otel.OrtelResourceDetector


def test_resource_detector_names_the_runtime():
    attrs = otel.OrtelResourceDetector().detect().attributes
    assert attrs["ortel.onnxruntime.version"] == ort.__version__
    assert "CPUExecutionProvider" in attrs["ortel.onnxruntime.providers"]
    assert attrs["host.name"] and attrs["process.pid"] > 0 and attrs["ortel.version"]


def test_start_otlp_pushes_this_processs_inference(model_file):
    rec = Recorder()
    with OtlpReceiver("grpc") as rx:
        export = otel.start_otlp(
            rx.endpoint,
            interval=0.2,
            service_name="svc",
            root_spans_per_second=float("inf"),
            recorder=rec,
            instrument=False,
        )
        try:
            from ortel.instrumentation.session import instrument_session

            sess = ort.InferenceSession(model_file, providers=["CPUExecutionProvider"])
            instrument_session(sess, recorder=rec)  # picks up the active span policy
            for _ in range(5):
                sess.run(None, {"x": X, "y": X})
            (count,) = rx.wait_for_metric(
                "ortel.inference.count", lambda ps: ps and ps[0].value == 5
            )
            assert count.resource["service.name"] == "svc"
            assert count.resource["ortel.onnxruntime.version"] == ort.__version__
            export.flush()
            assert rx.wait(lambda: len(rx.spans()) == 5)
            assert {s.name for s in rx.spans()} == {"onnxruntime.run"}
        finally:
            export.shutdown()
            tracing.disable()
