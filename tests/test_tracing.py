"""Spans per inference (tracing.py), checked with the OTel SDK's in-memory span exporter."""

from __future__ import annotations

import asyncio
import math

import numpy as np
import onnxruntime as ort
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from opentelemetry.trace import StatusCode

from ortel.instrumentation import models, tracing
from ortel.instrumentation.decorator import profiled, track
from ortel.instrumentation.generation import track_generation
from ortel.instrumentation.recorder import Recorder
from ortel.instrumentation.session import instrument_session

X = np.ones((1, 16), np.float32)
FEED = {"x": X, "y": X}


@pytest.fixture
def otel():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    tracing.disable()


@pytest.fixture(scope="module")
def add_model():
    return models.add_model()


def session(add_model, **kw):
    rec = kw.pop("recorder", None) or Recorder()
    s = ort.InferenceSession(add_model, providers=["CPUExecutionProvider"])
    return instrument_session(s, model="add", recorder=rec, **kw), rec


def counts(rec):
    return {
        (r.metric.name, r.labels): r.value for r in rec.readings() if isinstance(r.value, float)
    }


def test_no_spans_without_a_policy(otel, add_model):
    provider, exporter = otel
    s, rec = session(add_model)
    with provider.get_tracer("t").start_as_current_span("request"):
        s.run(None, FEED)
    assert [sp.name for sp in exporter.get_finished_spans()] == ["request"]
    assert not hasattr(s.run, "__wrapped__")  # the plain wrapper, with no span layer


def test_a_run_inside_a_span_is_its_child_with_ortel_attributes(otel, add_model):
    provider, exporter = otel
    s, rec = session(add_model, spans=tracing.InferenceSpans(provider, root_spans_per_second=0))
    with provider.get_tracer("t").start_as_current_span("request") as parent:
        for _ in range(3):
            s.run(None, FEED)
        s.run(output_names=None, input_feed=FEED)  # keyword call: same span, batch known
    assert s.run.__wrapped__.__qualname__ == "run.<locals>.run"  # the plain wrapper, inside
    runs = [sp for sp in exporter.get_finished_spans() if sp.name == tracing.RUN_SPAN]
    assert len(runs) == 4
    for sp in runs:
        assert sp.parent.span_id == parent.get_span_context().span_id
        assert sp.kind is trace.SpanKind.INTERNAL
        assert dict(sp.attributes) == {
            "ortel.model": "add",
            "ortel.provider": "CPUExecutionProvider",
            "ortel.run_method": "run",
            "ortel.batch_size": 1,
        }
    # the metrics are recorded exactly as without spans
    c = counts(rec)
    assert c[("ortel_inferences_total", ("add", "CPUExecutionProvider", "ok"))] == 4
    assert c[("ortel_inference_items_total", ("add", "CPUExecutionProvider"))] == 4


def test_a_failing_run_is_an_error_span_and_an_error_count(otel, add_model):
    provider, exporter = otel
    s, rec = session(add_model, spans=tracing.InferenceSpans(provider, root_spans_per_second=0))
    with provider.get_tracer("t").start_as_current_span("request"), pytest.raises(ValueError):
        s.run(None, {"x": X})  # input y missing
    (sp,) = [sp for sp in exporter.get_finished_spans() if sp.name == tracing.RUN_SPAN]
    assert sp.status.status_code is StatusCode.ERROR
    assert sp.attributes["error.type"] == "ValueError"
    assert sp.events == ()  # no exception event: its message could quote input values
    assert sp.status.description == "ValueError"
    assert counts(rec)[("ortel_inference_errors_total", ("add", "ValueError"))] == 1


@pytest.mark.parametrize(
    ("rate", "expected"), [(0.0, 0), (5.0, 5), (math.inf, 40)], ids=["off", "burst", "inf"]
)
def test_root_spans_are_rate_limited(otel, add_model, rate, expected):
    provider, exporter = otel
    s, rec = session(add_model, spans=tracing.InferenceSpans(provider, root_spans_per_second=rate))
    for _ in range(40):  # far faster than 5/s: only the burst passes
        s.run(None, FEED)
    spans = exporter.get_finished_spans()
    assert len(spans) == expected
    assert all(sp.parent is None for sp in spans)
    assert counts(rec)[("ortel_inferences_total", ("add", "CPUExecutionProvider", "ok"))] == 40


def test_root_limiter_refills_at_the_rate():
    spans = tracing.InferenceSpans(TracerProvider(), root_spans_per_second=10.0)
    t = 10**12
    assert sum(spans.want(t) for _ in range(50)) == 10  # the burst
    assert not spans.want(t + 50_000_000)  # 50 ms later: half a token
    assert spans.want(t + 100_000_000)  # 100 ms: one more
    assert not spans.want(t + 100_000_001)
    assert sum(spans.want(t + 10**10) for _ in range(50)) == 10  # idle for 10 s: one burst again


def test_children_of_unsampled_parents_follow_the_sampler(add_model):
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))  # roots dropped, children follow
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spans = tracing.InferenceSpans(provider, root_spans_per_second=math.inf)
    assert spans.skip_unsampled
    s, _ = session(add_model, spans=spans)
    with provider.get_tracer("t").start_as_current_span("request"):
        s.run(None, FEED)
    s.run(None, FEED)
    assert exporter.get_finished_spans() == ()
    # A sampler that samples children of unsampled parents is asked every time.
    exporter2 = InMemorySpanExporter()
    always = TracerProvider(sampler=ALWAYS_ON)
    always.add_span_processor(SimpleSpanProcessor(exporter2))
    spans2 = tracing.InferenceSpans(always, root_spans_per_second=0)
    assert not spans2.skip_unsampled
    s2, _ = session(add_model, spans=spans2)
    unsampled = trace.NonRecordingSpan(trace.SpanContext(7, 9, False))
    with trace.use_span(unsampled):
        s2.run(None, FEED)
    (sp,) = exporter2.get_finished_spans()
    assert sp.parent.span_id == 9 and sp.context.trace_id == 7


def test_run_with_ort_values_span_carries_the_batch(otel, add_model):
    provider, exporter = otel
    s, _ = session(
        add_model, spans=tracing.InferenceSpans(provider, root_spans_per_second=math.inf)
    )
    x = ort.OrtValue.ortvalue_from_numpy(X)
    s.run_with_ort_values(None, {"x": x, "y": x})
    (sp,) = exporter.get_finished_spans()
    assert sp.attributes["ortel.run_method"] == "run_with_ort_values"
    assert sp.attributes["ortel.batch_size"] == 1


def test_profiled_functions_get_a_current_span_named_after_them(otel):
    provider, exporter = otel
    tracing.enable(tracing.InferenceSpans(provider, root_spans_per_second=math.inf))
    rec = Recorder()
    inner = provider.get_tracer("t")

    @profiled(model="m", provider="CPU", recorder=rec)
    def classify(x):
        with inner.start_as_current_span("postprocess"):
            return x * 2

    @profiled(model="m", provider="CPU", recorder=rec)
    async def aclassify(x):
        await asyncio.sleep(0)
        raise KeyError(x)

    assert classify(2) == 4
    with pytest.raises(KeyError):
        asyncio.run(aclassify(1))
    by_name = {sp.name: sp for sp in exporter.get_finished_spans()}
    outer = by_name["test_profiled_functions_get_a_current_span_named_after_them.<locals>.classify"]
    assert by_name["postprocess"].parent.span_id == outer.context.span_id
    assert dict(outer.attributes) == {"ortel.model": "m", "ortel.provider": "CPU"}
    failed = [sp for name, sp in by_name.items() if name.endswith("aclassify")][0]
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["error.type"] == "KeyError"
    c = counts(rec)
    assert c[("ortel_inferences_total", ("m", "CPU", "ok"))] == 1
    assert c[("ortel_inference_errors_total", ("m", "KeyError"))] == 1


def test_track_blocks_are_spans_only_while_tracing_is_on(otel):
    provider, exporter = otel
    rec = Recorder()
    plain_enter = track.__enter__
    tracing.enable(tracing.InferenceSpans(provider, root_spans_per_second=math.inf))
    with track(model="m", recorder=rec) as t:
        t.items = 8
        assert trace.get_current_span().is_recording()
    with pytest.raises(RuntimeError), track(model="m", recorder=rec):
        raise RuntimeError("boom")
    tracing.disable()
    assert track.__enter__ is plain_enter
    with track(model="m", recorder=rec):
        pass
    ok, err = exporter.get_finished_spans()
    assert ok.name == tracing.TRACK_SPAN and ok.attributes["ortel.batch_size"] == 8
    assert err.status.status_code is StatusCode.ERROR
    assert counts(rec)[("ortel_inferences_total", ("m", "unknown", "ok"))] == 2


def test_first_token_is_an_event_on_the_current_span(otel):
    provider, exporter = otel
    tracing.enable(tracing.InferenceSpans(provider, root_spans_per_second=0))
    rec = Recorder()
    parent = provider.get_tracer("t").start_as_current_span("generate")
    with parent, track_generation(model="llm", recorder=rec) as g:
        for _ in range(3):
            g.token()
    (sp,) = exporter.get_finished_spans()
    (event,) = sp.events
    assert event.name == tracing.FIRST_TOKEN_EVENT
    assert event.attributes["ortel.model"] == "llm"
    assert 0 <= event.attributes["ortel.time_to_first_token"] < 1.0
    assert g.generated == 3


def test_tracing_configured_tells_real_providers_from_the_noop_ones():
    assert not tracing.tracing_configured(trace.NoOpTracerProvider())
    assert not tracing.tracing_configured(trace.ProxyTracerProvider())
    assert tracing.tracing_configured(TracerProvider())


def test_root_rate_from_env(monkeypatch):
    monkeypatch.setenv(tracing.ROOT_SPANS_ENV, "inf")
    assert tracing.root_rate_from_env() == math.inf
    monkeypatch.setenv(tracing.ROOT_SPANS_ENV, "-1")
    with pytest.raises(ValueError, match="must be >= 0"):
        tracing.root_rate_from_env()
    monkeypatch.setenv(tracing.ROOT_SPANS_ENV, "lots")
    with pytest.raises(ValueError, match="not a number"):
        tracing.root_rate_from_env()
    monkeypatch.delenv(tracing.ROOT_SPANS_ENV)
    assert tracing.root_rate_from_env() == tracing.DEFAULT_ROOT_SPANS_PER_SECOND
