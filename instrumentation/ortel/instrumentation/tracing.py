"""Spans per inference, for processes where OpenTelemetry tracing is configured.

Nothing here runs unless tracing is on: ``enable(InferenceSpans(...))`` (done by the OTel
instrumentor and ``start_otlp``) hands this policy to the wrapper factories (``wrappers``) for
sessions and ``@profiled`` functions instrumented from then on, and ``track`` and
``track_generation`` blocks ask for it when they start. Without it the hot path is exactly the
plain recorder's.

Which calls get a span follows the tracer provider's sampler: a call inside a span is that span's
child (sampled when the parent is, with the default parent-based sampler). A call with no span
around it would start a trace of its own; those root spans are rate limited
(``root_spans_per_second``, default 100/s with a burst of as many, like ddtrace's trace rate
limit): a 10 µs inference loop would otherwise make 100,000 one-span traces a second, each
costing more than the inference. ``inf`` hands every call to the sampler, ``0`` makes no root
spans.

Span: ``onnxruntime.run`` (every run method; ``ortel.run_method`` tells which), the decorated
function's qualified name, or ``ortel.track``; kind INTERNAL; attributes ``ortel.model``,
``ortel.provider``, ``ortel.batch_size`` where known; on an exception the status is ERROR with
``error.type`` (the type only: a message can quote input values). The metrics' latency is timed
around the call only, not the span's own start. A generation tracked with ``track_generation``
adds an ``ortel.first_token`` event to the current span at its first token.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any

DEFAULT_ROOT_SPANS_PER_SECOND = 100.0
ROOT_SPANS_ENV = "ORTEL_OTEL_ROOT_SPANS_PER_SECOND"
RUN_SPAN = "onnxruntime.run"
TRACK_SPAN = "ortel.track"
FIRST_TOKEN_EVENT = "ortel.first_token"

ACTIVE: InferenceSpans | None = None  # read when a session or function is instrumented


def root_rate_from_env(default: float = DEFAULT_ROOT_SPANS_PER_SECOND) -> float:
    raw = os.environ.get(ROOT_SPANS_ENV)
    if raw is None or not raw.strip():
        return default
    try:
        rate = float(raw)
    except ValueError:
        raise ValueError(f"{ROOT_SPANS_ENV}={raw!r} is not a number") from None
    if not rate >= 0:
        raise ValueError(f"{ROOT_SPANS_ENV}={raw!r} must be >= 0 (inf: no limit)")
    return rate


def tracing_configured(tracer_provider: Any) -> bool:
    """True for a real provider (the SDK's), False for the API's no-op and unset proxy."""
    from opentelemetry import trace

    return not isinstance(tracer_provider, trace.NoOpTracerProvider | trace.ProxyTracerProvider)


def _drops_unsampled_children(tracer_provider: Any) -> bool:
    # With the default parent-based sampler a child of an unsampled parent is never sampled: skip
    # asking (a non-recording span still costs ~3 µs). Any other sampler is asked every time.
    sampler = getattr(tracer_provider, "sampler", None)
    if sampler is None:
        return False
    desc = sampler.get_description()
    return desc.startswith("ParentBased{") and all(
        f"{k}ParentNotSampled:AlwaysOffSampler" in desc for k in ("remote", "local")
    )


def _span_lookup() -> tuple[Callable[[], Any], str]:
    """``(current_context, key)`` with ``current_context().get(key)`` the current span or None.

    The API's ``get_current_span()`` costs ~200 ns a call; reading the runtime context's
    ContextVar directly costs ~30. Both the key (unique per process) and the ContextVar are
    found and checked here through the public API; any surprise falls back to it."""
    from opentelemetry import context, trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext

    probe = NonRecordingSpan(SpanContext(1, 1, False))
    ctx = trace.set_span_in_context(probe, context.Context())
    key = next(k for k, v in ctx.items() if v is probe)
    getter: Callable[[], Any] = context.get_current
    try:
        # Private to ContextVarsRuntimeContext (typed as the _RuntimeContext ABC): checked below.
        runtime = context._RUNTIME_CONTEXT  # noqa: SLF001 - checked below
        fast = runtime._current_context.get  # type: ignore[attr-defined]
        token = context.attach(ctx)
        try:
            if fast() is ctx and fast().get(key) is probe:
                getter = fast
        finally:
            context.detach(token)
    except Exception:  # another runtime context (OTEL_PYTHON_CONTEXT): the public way
        pass
    return getter, key


class InferenceSpans:
    """The tracer, the root-span limiter and the span-emitting wrappers built from them."""

    def __init__(
        self, tracer_provider: Any = None, *, root_spans_per_second: float | None = None
    ) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        from .otlp import ortel_version

        if tracer_provider is None:
            tracer_provider = trace.get_tracer_provider()
        self.tracer_provider = tracer_provider
        self.tracer = trace.get_tracer("ortel", ortel_version(), tracer_provider)
        rate = root_rate_from_env() if root_spans_per_second is None else root_spans_per_second
        if not rate >= 0:
            raise ValueError("root_spans_per_second must be >= 0")
        self.root_spans_per_second = rate
        # Root spans pass a GCRA limiter: ``rate`` a second with a burst of ``rate``. ``_tat[0]``
        # is the earliest perf_counter_ns at which the next root span is allowed.
        if rate == 0:
            self._interval = self._burst = 0
            self._tat = [1 << 62]  # never reached: no root spans
        elif math.isinf(rate):
            self._interval = self._burst = 0
            self._tat = [0]
        else:
            self._interval = int(1e9 / rate)
            self._burst = int(max(rate - 1, 0) * self._interval)
            self._tat = [0]
        self.skip_unsampled = _drops_unsampled_children(tracer_provider)
        self._current, self._span_key = _span_lookup()
        self._kind = SpanKind.INTERNAL
        self._error = functools.partial(Status, StatusCode.ERROR)
        self._in_context = trace.set_span_in_context
        self._attach, self._detach = context.attach, context.detach

    def _root_admitted(self, now: int) -> bool:
        tat = self._tat
        t = tat[0]
        if now < t:
            return False
        tat[0] = max(t, now - self._burst) + self._interval
        return True

    def admits(self, parent: Any, now: int) -> bool:
        """Given the current span (or None), should a call starting at ``now`` get a span?
        A child follows its parent's sampling decision; a root passes the rate limiter."""
        if parent is not None:
            sc = parent.get_span_context()
            if sc.is_valid:
                return sc.trace_flags.sampled or not self.skip_unsampled
        return self._root_admitted(now)

    def want(self, now: int) -> bool:
        return self.admits(self._current().get(self._span_key), now)

    def want_now(self) -> bool:
        """``want`` for a call starting now. When no span is current and the root limiter says
        no (the common case for a tight loop) this costs one ContextVar read and a compare."""
        now = perf_counter_ns()
        parent = self._current().get(self._span_key)
        if parent is not None:
            return self.admits(parent, now)
        tat = self._tat  # the root limiter, inlined: this is the hot case
        if now < tat[0]:
            return False
        tat[0] = max(tat[0], now - self._burst) + self._interval
        return True

    def attributes(self, series: Any, method: str | None = None) -> dict[str, Any]:
        st = series.state
        attrs = {"ortel.model": st.model, "ortel.provider": st.provider}
        if method is not None:
            attrs["ortel.run_method"] = method
        return attrs

    def start_run_span(self, attrs: dict[str, Any]) -> Any:
        return self.tracer.start_span(RUN_SPAN, kind=self._kind, attributes=attrs)

    def fail(self, span: Any, exc: BaseException) -> None:
        # The exception's type only: its message can quote input values (ONNX Runtime's and
        # users' errors do), and ortel never exports inputs. So no record_exception here.
        span.set_attribute("error.type", type(exc).__qualname__)
        span.set_status(self._error(type(exc).__qualname__))

    def open_current(self, name: str, attrs: dict[str, Any]) -> tuple[Any, Any]:
        """A span made current: ``(span, token)`` for ``close_current``."""
        span = self.tracer.start_span(name, kind=self._kind, attributes=attrs)
        return span, self._attach(self._in_context(span))

    def close_current(self, span: Any, token: Any, exc: BaseException | None) -> None:
        self._detach(token)
        if isinstance(exc, Exception):  # not for KeyboardInterrupt, SystemExit, cancellation
            self.fail(span, exc)
        span.end()

    # -- track ---------------------------------------------------------------------------------
    def open_track(self, block: Any) -> tuple[InferenceSpans, Any, Any] | None:
        """A span current for a ``track`` block, when one is wanted: ``(self, span, token)``,
        kept by the block and handed back to ``close_track`` when it ends."""
        if not self.want_now():
            return None
        return (self, *self.open_current(TRACK_SPAN, self.attributes(block._series)))

    def close_track(
        self, span: Any, token: Any, exc: BaseException | None, items: int | None
    ) -> None:
        if exc is None and items is not None:
            span.set_attribute("ortel.batch_size", int(items))
        self.close_current(span, token, exc)

    # -- generation ----------------------------------------------------------------------------
    def first_token(self, generation: Any) -> None:
        """Add ``ortel.first_token`` to the current span when a generation's first token came."""
        from opentelemetry import trace

        span = trace.get_current_span()
        if span.is_recording():
            st = generation._series.state
            span.add_event(
                FIRST_TOKEN_EVENT,
                {
                    "ortel.model": st.model,
                    "ortel.time_to_first_token": (generation._last - generation._t0) * 1e-9,
                },
            )


# -- switching it on and off -----------------------------------------------------------------
def enable(spans: InferenceSpans) -> None:
    """Sessions and ``@profiled`` functions instrumented from now on, and every ``track`` and
    ``track_generation`` block entered from now on, emit spans through ``spans``. The blocks ask
    ``ACTIVE`` when they start; nothing of theirs is replaced."""
    global ACTIVE
    ACTIVE = spans


def disable() -> None:
    """Back to plain wrappers for what is instrumented, and blocks entered, from now on."""
    global ACTIVE
    ACTIVE = None
