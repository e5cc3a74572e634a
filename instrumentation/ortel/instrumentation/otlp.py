"""Readings -> OTLP: the same measurements as the Prometheus side, named by the OTel conventions.

Shared by the shim and the daemon (so it never imports onnxruntime), and imported only when OTLP
export is asked for (it needs the ``otel`` extra).

* ``ReadingsConverter`` turns ``Reading``s into OTel SDK metric points, with the names, units,
  instruments and attributes the catalogue gives (``MetricDef.otel_*``). Counters and histograms
  are cumulative, as the shim and the daemon keep them: a histogram is an explicit-bucket
  histogram with the catalogue's bounds; a summary's window quantiles are a gauge with an
  ``ortel.quantile`` attribute (OTLP's Summary type is legacy and the SDK cannot export it; the
  summary's count and sum are the ``ortel.inference.duration`` histogram's).
* ``MeterProviderHook`` adds those metrics to every collection of an SDK ``MeterProvider``'s
  readers, so they go wherever that provider sends its own (OTLP, console, in-memory, ...).
* ``OtlpExport`` is a complete push pipeline (``ortel serve --otlp-endpoint``, ``start_otlp``).
* ``BoundedSpanProcessor`` hands ended spans to an exporter thread through a bounded queue; a full
  queue or a failed export drops spans and counts them (``ortel_otlp_dropped_total``), so an
  unreachable collector never blocks or slows inference.
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from ortel.core import catalog as c
from ortel.core.readings import HistogramValue, Reading, SummaryValue

log = logging.getLogger("ortel.otlp")

PROTOCOLS = ("grpc", "http/protobuf")
# The Python OTel distro's default; the OTLP spec's is http/protobuf (say --otlp-protocol).
DEFAULT_PROTOCOL = "grpc"
CUMULATIVE = AggregationTemporality.CUMULATIVE


def ortel_version() -> str:
    try:
        return version("ortel")
    except PackageNotFoundError:  # a source tree without an install
        return "0.0.0"


SCOPE = InstrumentationScope("ortel", ortel_version())


# --- drops --------------------------------------------------------------------------------------
class Drops:
    """What this process gave up on exporting, by (signal, reason): ``ortel_otlp_dropped_total``."""

    KNOWN = (("spans", "queue_full"), ("spans", "export_failed"), ("metrics", "export_failed"))

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = dict.fromkeys(self.KNOWN, 0)

    def add(self, signal: str, reason: str, n: int = 1) -> None:
        with self._lock:
            self._counts[(signal, reason)] = self._counts.get((signal, reason), 0) + n

    def get(self, signal: str, reason: str) -> int:
        return self._counts.get((signal, reason), 0)

    def readings(self, signals: tuple[str, ...] = ("spans", "metrics")) -> list[Reading]:
        """The counts of the signals this process exports (zero until something is dropped)."""
        with self._lock:
            items = [(k, n) for k, n in self._counts.items() if k[0] in signals]
        return [Reading(c.OTLP_DROPPED, key, float(n)) for key, n in items]


DROPS = Drops()


# --- readings -> OTel points --------------------------------------------------------------------
_Plan = tuple[tuple[str, str, Any], ...]  # (attribute, "label"|"template"|"const", data)


def _compile(m: c.MetricDef) -> _Plan:
    index = {lbl: i for i, lbl in enumerate(m.labels)}
    out: list[tuple[str, str, Any]] = []
    for attr, source in m.otel_plan():
        if source.startswith("="):
            out.append((attr, "const", source[1:]))
        elif "{" in source:
            fmt = source
            for lbl, i in index.items():
                fmt = fmt.replace("{" + lbl + "}", "{" + str(i) + "}")
            out.append((attr, "template", fmt))
        else:
            out.append((attr, "label", index[source]))
    return tuple(out)


_PLANS: dict[str, _Plan] = {}


def attributes(m: c.MetricDef, labels: tuple[str, ...]) -> dict[str, Any]:
    """The OTel attributes of one reading's point, as the catalogue maps its labels."""
    plan = _PLANS.get(m.name)
    if plan is None:
        plan = _PLANS[m.name] = _compile(m)
    out: dict[str, Any] = {}
    for attr, how, data in plan:
        if how == "label":
            value: Any = labels[data]
        elif how == "template":
            value = data.format(*labels)
        else:
            value = data
        if attr in c.OTEL_INT_ATTRIBUTES and value.isdigit():
            value = int(value)
        out[attr] = value
    return out


class ReadingsConverter:
    """Readings -> OTel ``Metric``s. Remembers when each cumulative stream started, so a counter
    that went backwards (a restarted process's) starts a new stream instead of a negative rate."""

    def __init__(self, start_ns: int | None = None) -> None:
        self.start_ns = time.time_ns() if start_ns is None else start_ns
        self._streams: dict[tuple, tuple[int, float]] = {}  # key -> (start ns, last count/value)
        self._lock = threading.Lock()

    def _start(self, key: tuple, total: float, now_ns: int) -> int:
        prev = self._streams.get(key)
        start = self.start_ns if prev is None else prev[0]
        if prev is not None and total < prev[1]:
            start = now_ns - 1  # reset: the new stream starts just before this point
        self._streams[key] = (start, total)
        return start

    def metrics(self, readings: Iterable[Reading], now_ns: int | None = None) -> list[Metric]:
        now = time.time_ns() if now_ns is None else now_ns
        # otel name -> (def, {attribute key: point}): duplicates keep the last, like exposition
        groups: dict[str, tuple[c.MetricDef, dict[tuple, Any]]] = {}
        with self._lock:
            for r in readings:
                m = r.metric
                name = m.otel_name
                assert name is not None  # every catalogue metric has one (tests/test_catalog.py)
                entry = groups.get(name)
                if entry is None:
                    entry = groups[name] = (m, {})
                attrs = attributes(m, r.labels)
                for point_attrs, point in self._points(m, attrs, r.value, now):
                    entry[1][tuple(sorted(point_attrs.items()))] = point
        return [
            self._metric(name, m, list(points.values())) for name, (m, points) in groups.items()
        ]

    def _points(self, m: c.MetricDef, attrs: dict[str, Any], value: Any, now: int):
        key = (m.otel_name, tuple(sorted(attrs.items())))
        if isinstance(value, HistogramValue):
            start = self._start(key, value.count, now)
            yield (
                attrs,
                HistogramDataPoint(
                    attributes=attrs,
                    start_time_unix_nano=start,
                    time_unix_nano=now,
                    count=value.count,
                    sum=value.sum,
                    bucket_counts=list(value.counts),
                    explicit_bounds=list(value.bounds),
                    # Not kept by the cumulative buckets: OTLP makes these optional, and the
                    # SDK's encoder leaves a None field unset (its annotations say float).
                    min=None,  # type: ignore[arg-type]
                    max=None,  # type: ignore[arg-type]
                ),
            )
        elif isinstance(value, SummaryValue):
            for q, v in value.quantiles:
                qa = {**attrs, "ortel.quantile": q}
                # Gauges have no start time: None leaves the field unset (the SDK says int).
                yield qa, NumberDataPoint(qa, None, now, float(v))  # type: ignore[arg-type]
        elif m.otel_instrument == "gauge":
            yield attrs, NumberDataPoint(attrs, None, now, float(value))  # type: ignore[arg-type]
        else:
            # Counts stay integers over OTLP; measured quantities (seconds, joules) are doubles.
            v = int(value) if m.unit == "" and float(value).is_integer() else float(value)
            start = self._start(key, v, now) if m.otel_instrument == "counter" else self.start_ns
            yield attrs, NumberDataPoint(attrs, start, now, v)

    @staticmethod
    def _metric(name: str, m: c.MetricDef, points: list) -> Metric:
        if m.kind == "histogram":
            data: Any = Histogram(points, CUMULATIVE)
        elif m.otel_instrument in ("counter", "updowncounter"):
            data = Sum(points, CUMULATIVE, is_monotonic=m.otel_instrument == "counter")
        else:
            data = Gauge(points)
        return Metric(name, m.help, m.otel_unit, data)


class ReadingsProducer:
    """``produce()``: the current readings of ``source`` as OTel metrics (never raises)."""

    def __init__(self, source: Callable[[], Iterable[Reading]]) -> None:
        self._source = source
        self._converter = ReadingsConverter()
        self._failing = False

    def produce(self) -> list[Metric]:
        try:
            metrics = self._converter.metrics(self._source())
        except Exception:  # a broken source must not break the provider's own export
            if not self._failing:
                log.exception("ortel: reading metrics for OTLP failed")
            self._failing = True
            return []
        self._failing = False
        return metrics


class MeterProviderHook:
    """Adds a producer's metrics to every collection of an SDK ``MeterProvider``'s readers.

    The SDK has no public producer interface yet, so this wraps each reader's collect callback
    (the one the provider registered): the provider's own metrics pass through unchanged and
    ortel's come as one more instrumentation scope under the provider's resource.
    ``detach()`` restores the callbacks.
    """

    def __init__(self, meter_provider: Any, producer: ReadingsProducer) -> None:
        readers = getattr(meter_provider, "_metric_readers", None)
        config = getattr(meter_provider, "_sdk_config", None)
        if readers is None or config is None:
            raise TypeError(f"{type(meter_provider).__name__} is not an OpenTelemetry SDK provider")
        self._config = config
        self._producer = producer
        self._saved: list[tuple[Any, Any, Any]] = []
        for reader in readers:
            original = reader._collect
            wrapped = self._wrap(original)
            reader._set_collect_callback(wrapped)
            self._saved.append((reader, original, wrapped))

    def _wrap(self, original: Any) -> Callable[..., MetricsData | None]:
        def collect(reader: Any, timeout_millis: float = 10_000) -> MetricsData | None:
            data = original(reader, timeout_millis=timeout_millis) if original else None
            ours = self._producer.produce()
            if not ours:
                return data
            scope = ScopeMetrics(SCOPE, ours, "")
            if data is None or not data.resource_metrics:
                res = self._config.resource
                return MetricsData([ResourceMetrics(res, [scope], res.schema_url)])
            first, *rest = data.resource_metrics
            scopes = [*first.scope_metrics, scope]
            return MetricsData([ResourceMetrics(first.resource, scopes, first.schema_url), *rest])

        return collect

    def detach(self) -> None:
        for reader, original, wrapped in self._saved:
            if reader._collect is wrapped:  # someone else may have re-registered the reader
                reader._set_collect_callback(original)
        self._saved.clear()


# --- exporters ----------------------------------------------------------------------------------
def resolve_protocol(protocol: str | None, signal: str) -> str:
    """The protocol asked for, else OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL, else
    OTEL_EXPORTER_OTLP_PROTOCOL, else grpc."""
    p = (
        protocol
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or DEFAULT_PROTOCOL
    )
    if p not in PROTOCOLS:
        raise ValueError(f"OTLP protocol {p!r} is not one of {', '.join(PROTOCOLS)}")
    return p


def _http_url(endpoint: str, signal: str) -> str:
    # OTEL_EXPORTER_OTLP_ENDPOINT semantics: a base URL that the signal's path is appended to.
    return endpoint.rstrip("/") + f"/v1/{signal}"


def make_metric_exporter(
    endpoint: str | None = None, protocol: str | None = None, timeout: float | None = None
) -> MetricExporter:
    """An OTLP metric exporter; with no endpoint, the exporter reads OTEL_EXPORTER_OTLP_*."""
    kw: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    if resolve_protocol(protocol, "metrics") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(endpoint=endpoint, **kw)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HTTPMetricExporter,
    )

    return HTTPMetricExporter(endpoint=endpoint and _http_url(endpoint, "metrics"), **kw)


def make_span_exporter(
    endpoint: str | None = None, protocol: str | None = None, timeout: float | None = None
) -> SpanExporter:
    kw: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    if resolve_protocol(protocol, "traces") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, **kw)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HTTPSpanExporter,
    )

    return HTTPSpanExporter(endpoint=endpoint and _http_url(endpoint, "traces"), **kw)


class CountingMetricExporter(MetricExporter):
    """Wraps an exporter: the data points of a failed export are counted as dropped."""

    def __init__(self, inner: MetricExporter, drops: Drops = DROPS) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self.inner = inner
        self._drops = drops

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        try:
            result = self.inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        except Exception:
            log.exception("ortel: OTLP metric export raised")
            result = MetricExportResult.FAILURE
        if result is not MetricExportResult.SUCCESS:
            points = sum(
                len(m.data.data_points)
                for rm in metrics_data.resource_metrics
                for sm in rm.scope_metrics
                for m in sm.metrics
            )
            self._drops.add("metrics", "export_failed", points)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self.inner.force_flush(timeout_millis=timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.inner.shutdown(timeout_millis=timeout_millis, **kwargs)


class BoundedSpanProcessor(SpanProcessor):
    """Ended spans go to a worker thread through a queue of at most ``max_queue`` spans.

    ``on_end`` (on the inference thread) only appends, or counts a drop when the queue is full:
    it never waits, logs or touches the network. The worker exports batches; a failed batch is
    counted as dropped too.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue: int = 2048,
        batch: int = 512,
        delay: float = 1.0,
        drops: Drops = DROPS,
    ) -> None:
        self.exporter = exporter
        self.max_queue = max_queue
        self._batch = batch
        self._delay = delay
        self._drops = drops
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._export_lock = threading.Lock()
        self._start()
        if hasattr(os, "register_at_fork"):  # the worker does not survive a fork
            ref = weakref.ref(self)

            def restart_in_child() -> None:
                p = ref()
                if p is not None:
                    p._start()

            os.register_at_fork(after_in_child=restart_in_child)

    def _start(self) -> None:
        self._queue.clear()  # in a child these belong to the parent, which exports them
        self._export_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._worker = threading.Thread(target=self._loop, name="ortel-otlp-spans", daemon=True)
        self._worker.start()

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        q = self._queue
        if len(q) >= self.max_queue:
            self._drops.add("spans", "queue_full")
            return
        q.append(span)
        if len(q) >= self._batch:
            self._wake.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def _loop(self) -> None:
        while not self._stopping:
            self._wake.wait(self._delay)
            self._wake.clear()
            self._export_all()

    def _export_all(self) -> None:
        with self._export_lock:
            q = self._queue
            while q:
                batch = [q.popleft() for _ in range(min(self._batch, len(q)))]
                try:
                    ok = self.exporter.export(batch) is SpanExportResult.SUCCESS
                except Exception:
                    log.exception("ortel: OTLP span export raised")
                    ok = False
                if not ok:
                    self._drops.add("spans", "export_failed", len(batch))

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        done = threading.Event()

        def export_then_set() -> None:
            self._export_all()
            done.set()

        t = threading.Thread(target=export_then_set, daemon=True)
        t.start()
        return done.wait(timeout_millis / 1000)

    def shutdown(self, timeout: float = 2.0) -> None:
        """Export what is queued, waiting at most ``timeout`` seconds (an unreachable collector
        must not hold the process's exit for long)."""
        self._stopping = True
        self._wake.set()
        self._worker.join(timeout=timeout / 2)
        self.force_flush(int(timeout * 500))
        self.exporter.shutdown()


# --- a whole pipeline ---------------------------------------------------------------------------
def _with_drops(
    source: Callable[[], Iterable[Reading]], drops: Drops, signals: tuple[str, ...]
) -> Callable[[], list[Reading]]:
    return lambda: [*source(), *drops.readings(signals)]


def make_resource(default_service: str, attributes: Mapping[str, Any] | None = None) -> Resource:
    """service.name, host.name, process.pid, ortel.version and ``attributes``, under whatever
    OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES say (those win)."""
    ours: dict[str, Any] = {
        "service.name": default_service,
        "host.name": socket.gethostname(),
        "process.pid": os.getpid(),
        "ortel.version": ortel_version(),
        **(attributes or {}),
    }
    env = OTELResourceDetector().detect().attributes
    return Resource.create({k: v for k, v in ours.items() if k not in env})


class OtlpExport:
    """Push ``source``'s readings (and optionally this process's spans) to an OTLP endpoint.

    ``endpoint=None`` leaves the endpoint (and headers, TLS, timeout) to the exporters'
    OTEL_EXPORTER_OTLP_* variables. Metrics go every ``interval`` seconds
    (OTEL_METRIC_EXPORT_INTERVAL when None) on the SDK's reader thread.
    """

    def __init__(
        self,
        source: Callable[[], Iterable[Reading]],
        *,
        resource: Resource,
        endpoint: str | None = None,
        protocol: str | None = None,
        interval: float | None = None,
        traces: bool = False,
        metric_exporter: MetricExporter | None = None,
        span_exporter: SpanExporter | None = None,
        max_queue: int = 2048,
        drops: Drops = DROPS,
        include_drops: bool = True,
    ) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        exporter = CountingMetricExporter(
            metric_exporter or make_metric_exporter(endpoint, protocol), drops
        )
        millis = None if interval is None else interval * 1000.0
        self.reader = PeriodicExportingMetricReader(exporter, export_interval_millis=millis)
        self.meter_provider = MeterProvider(
            metric_readers=[self.reader], resource=resource, shutdown_on_exit=False
        )
        if include_drops:
            source = _with_drops(source, drops, ("metrics", "spans") if traces else ("metrics",))
        self.hook = MeterProviderHook(self.meter_provider, ReadingsProducer(source))
        self.tracer_provider: Any = None
        self.span_processor: BoundedSpanProcessor | None = None
        if traces:
            from opentelemetry.sdk.trace import TracerProvider

            self.span_processor = BoundedSpanProcessor(
                span_exporter or make_span_exporter(endpoint, protocol),
                max_queue=max_queue,
                drops=drops,
            )
            self.tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
            self.tracer_provider.add_span_processor(self.span_processor)
        self._closed = False

    def flush(self, timeout: float = 10.0) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush(int(timeout * 1000))
        self.meter_provider.force_flush(timeout * 1000)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Export what is left (bounded by ``timeout``) and stop the threads."""
        if self._closed:
            return
        self._closed = True
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        try:
            self.meter_provider.shutdown(timeout_millis=timeout * 1000)
        except Exception as e:  # the SDK raises when a reader's last export fails
            log.warning("ortel: OTLP shutdown: %s", str(e).strip().splitlines()[-1])
