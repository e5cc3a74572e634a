"""OpenTelemetry for ONNX Runtime: spans per inference and ortel's metrics over OTLP.

With no code change (the ``opentelemetry_instrumentor`` entry point)::

    OTEL_SERVICE_NAME=classifier OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4317 \\
        opentelemetry-instrument python app.py

or from code, without the OTel SDK configured globally::

    from ortel.instrumentation import start_otlp
    start_otlp("http://collector:4317")

Needs the ``otel`` extra (``pip install 'ortel[otel]'``).
"""

from __future__ import annotations

import atexit
import os
import socket
import sys
from collections.abc import Collection
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.sdk.resources import Resource, ResourceDetector

from . import tracing
from .instrumentor import OnnxRuntimeInstrumentor, _instruments
from .otlp import (
    MeterProviderHook,
    OtlpExport,
    ReadingsProducer,
    make_resource,
    ortel_version,
)
from .recorder import RECORDER, Recorder
from .session import model_name


def onnxruntime_attributes() -> dict[str, Any]:
    """ONNX Runtime's version and the execution providers this build offers."""
    import onnxruntime

    return {
        "ortel.onnxruntime.version": onnxruntime.__version__,
        "ortel.onnxruntime.providers": tuple(onnxruntime.get_available_providers()),
    }


class OrtelResourceDetector(ResourceDetector):
    """host.name, process.pid, ortel and ONNX Runtime versions, available execution providers.

    Registered as the ``ortel`` resource detector:
    ``OTEL_EXPERIMENTAL_RESOURCE_DETECTORS=ortel`` puts these on every span and metric of an
    ``opentelemetry-instrument``-ed process.
    """

    def detect(self) -> Resource:
        return Resource(
            {
                "host.name": socket.gethostname(),
                "process.pid": os.getpid(),
                "ortel.version": ortel_version(),
                **onnxruntime_attributes(),
            }
        )


class OnnxRuntimeOtelInstrumentor(BaseInstrumentor):
    """The contrib-style instrumentor ``opentelemetry-instrument`` loads for onnxruntime.

    ``instrument()`` patches every InferenceSession created from then on (as
    ``OnnxRuntimeInstrumentor`` does); when a tracer provider is configured each run is also a
    span, and when the meter provider is the SDK's, ortel's metrics (latency histogram, counts,
    window quantiles, SLA, ...) are added to its every export. Keyword arguments:
    ``tracer_provider``, ``meter_provider`` (default: the global ones), ``sla_seconds``,
    ``model_namer``, ``root_spans_per_second``, ``recorder``.
    """

    _hook: MeterProviderHook | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        from opentelemetry.sdk.metrics import MeterProvider

        recorder: Recorder = kwargs.get("recorder") or RECORDER
        tracer_provider = kwargs.get("tracer_provider") or trace.get_tracer_provider()
        meter_provider = kwargs.get("meter_provider") or metrics.get_meter_provider()
        spans = None
        if tracing.tracing_configured(tracer_provider):
            spans = tracing.InferenceSpans(
                tracer_provider, root_spans_per_second=kwargs.get("root_spans_per_second")
            )
            tracing.enable(spans)
        OnnxRuntimeInstrumentor().instrument(
            model_namer=kwargs.get("model_namer") or model_name,
            sla_seconds=kwargs.get("sla_seconds"),
            recorder=recorder,
            spans=spans,
        )
        if isinstance(meter_provider, MeterProvider):
            # No ortel_otlp_dropped_total here: the pipeline is the SDK's, whose drops ortel
            # cannot count (exporting 0 would claim it had).
            self._hook = MeterProviderHook(meter_provider, ReadingsProducer(recorder.readings))

    def _uninstrument(self, **kwargs: Any) -> None:
        OnnxRuntimeInstrumentor().uninstrument()
        tracing.disable()
        if self._hook is not None:
            self._hook.detach()
            self._hook = None


def start_otlp(
    endpoint: str | None = None,
    *,
    protocol: str | None = None,
    interval: float | None = None,
    traces: bool = True,
    service_name: str | None = None,
    root_spans_per_second: float | None = None,
    recorder: Recorder = RECORDER,
    instrument: bool = True,
) -> OtlpExport:
    """Push this process's inference metrics (and spans) to an OTLP endpoint, from now on.

    ``endpoint``/``protocol`` (``grpc`` or ``http/protobuf``) default to the
    OTEL_EXPORTER_OTLP_* variables; metrics go every ``interval`` seconds (default
    OTEL_METRIC_EXPORT_INTERVAL, 60 s). With ``traces``, sessions created or instrumented from
    now on (and ``@profiled`` functions decorated from now on) emit spans through a tracer
    provider of ortel's own, sampled as OTEL_TRACES_SAMPLER says. ``instrument`` also patches
    every InferenceSession created from now on (``OnnxRuntimeInstrumentor``). Exports what is
    left at exit; returns the pipeline (``.shutdown()`` stops it).
    """
    default_service = service_name or f"unknown_service:{os.path.basename(sys.executable)}"
    export = OtlpExport(
        recorder.readings,
        resource=make_resource(default_service, onnxruntime_attributes()),
        endpoint=endpoint,
        protocol=protocol,
        interval=interval,
        traces=traces,
    )
    spans = None
    if traces:
        spans = tracing.InferenceSpans(
            export.tracer_provider, root_spans_per_second=root_spans_per_second
        )
        tracing.enable(spans)
    if instrument:
        OnnxRuntimeInstrumentor().instrument(recorder=recorder, spans=spans)
    atexit.register(export.shutdown)
    return export
