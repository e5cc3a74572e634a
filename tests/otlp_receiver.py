"""A real OTLP receiver for tests, on loopback: the collector's gRPC services (``MetricsService``,
``TraceService`` from opentelemetry-proto) or the HTTP/protobuf endpoints (``POST /v1/metrics``,
``POST /v1/traces``, gzip bodies too). It keeps every request it decoded, flattened into
``MetricPoint``s and ``SpanRecord``s that tests can search::

    with OtlpReceiver("grpc") as rx:
        run_something(endpoint=rx.endpoint)
        points = rx.wait_for_metric("ortel.inference.count")
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from harness import LOOPBACK, free_port
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


def any_value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return tuple(any_value(x) for x in v.array_value.values)
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


def attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in kvs}


@dataclass
class MetricPoint:
    resource: dict[str, Any]
    scope: str
    name: str
    unit: str
    kind: str  # sum, gauge, histogram
    attributes: dict[str, Any]
    value: Any  # number, or the HistogramDataPoint message
    monotonic: bool | None = None
    temporality: int | None = None  # 2 = cumulative
    start_time: int = 0
    time: int = 0


@dataclass
class SpanRecord:
    resource: dict[str, Any]
    scope: str
    span: Any  # opentelemetry.proto.trace.v1.trace_pb2.Span
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.span.name


class _Store:
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.metric_requests: list[Any] = []
        self.trace_requests: list[Any] = []

    def add(self, kind: str, request: Any) -> None:
        with self.cond:
            (self.metric_requests if kind == "metrics" else self.trace_requests).append(request)
            self.cond.notify_all()


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, store: _Store) -> None:
        self.store = store

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        self.store.add("metrics", request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, store: _Store) -> None:
        self.store = store

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
        self.store.add("traces", request)
        return trace_service_pb2.ExportTraceServiceResponse()


def _http_handler(store: _Store) -> type[BaseHTTPRequestHandler]:
    routes = {
        "/v1/metrics": (
            "metrics",
            metrics_service_pb2.ExportMetricsServiceRequest,
            metrics_service_pb2.ExportMetricsServiceResponse,
        ),
        "/v1/traces": (
            "traces",
            trace_service_pb2.ExportTraceServiceRequest,
            trace_service_pb2.ExportTraceServiceResponse,
        ),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            route = routes.get(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if route is None:
                self.send_error(404)
                return
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.headers.get("Content-Type") != "application/x-protobuf":
                self.send_error(415)
                return
            kind, request_type, response_type = route
            request = request_type()
            request.ParseFromString(body)
            store.add(kind, request)
            out = response_type().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


class OtlpReceiver:
    def __init__(self, protocol: str = "grpc") -> None:
        if protocol not in ("grpc", "http/protobuf"):
            raise ValueError(protocol)
        self.protocol = protocol
        self.store = _Store()
        self.port = free_port()
        self.endpoint = f"http://{LOOPBACK}:{self.port}"
        self._grpc: Any = None
        self._http: ThreadingHTTPServer | None = None

    def __enter__(self) -> OtlpReceiver:
        if self.protocol == "grpc":
            import grpc

            self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
            metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
                _Metrics(self.store), self._grpc
            )
            trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
                _Traces(self.store), self._grpc
            )
            self._grpc.add_insecure_port(f"{LOOPBACK}:{self.port}")
            self._grpc.start()
        else:
            self._http = ThreadingHTTPServer((LOOPBACK, self.port), _http_handler(self.store))
            threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=None)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()

    # -- what arrived ----------------------------------------------------------------------------
    def metric_points(self) -> list[MetricPoint]:
        with self.store.cond:
            requests = list(self.store.metric_requests)
        out: list[MetricPoint] = []
        for req in requests:
            for rm in req.resource_metrics:
                res = attrs(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        kind = m.WhichOneof("data")
                        data = getattr(m, kind)
                        for p in data.data_points:
                            if kind == "histogram":
                                value: Any = p
                            else:
                                value = getattr(p, p.WhichOneof("value"))
                            out.append(
                                MetricPoint(
                                    res,
                                    sm.scope.name,
                                    m.name,
                                    m.unit,
                                    kind,
                                    attrs(p.attributes),
                                    value,
                                    getattr(data, "is_monotonic", None),
                                    getattr(data, "aggregation_temporality", None),
                                    p.start_time_unix_nano,
                                    p.time_unix_nano,
                                )
                            )
        return out

    def spans(self) -> list[SpanRecord]:
        with self.store.cond:
            requests = list(self.store.trace_requests)
        out = []
        for req in requests:
            for rs in req.resource_spans:
                res = attrs(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        out.append(SpanRecord(res, ss.scope.name, s, attrs(s.attributes)))
        return out

    def wait(self, predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        with self.store.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.store.cond.wait(min(left, 0.2))
        return True

    def latest(self, name: str) -> list[MetricPoint]:
        """The points of ``name`` from the latest request that had it."""
        points = [p for p in self.metric_points() if p.name == name]
        if not points:
            return []
        last = max(p.time for p in points)
        return [p for p in points if p.time == last]

    def wait_for_metric(
        self, name: str, check: Callable[[list[MetricPoint]], bool] = bool, timeout: float = 15.0
    ) -> list[MetricPoint]:
        ok = self.wait(lambda: check(self.latest(name)), timeout)
        names = sorted({p.name for p in self.metric_points()})
        assert ok, f"no acceptable {name} within {timeout:.0f}s; received metrics: {names}"
        return self.latest(name)
