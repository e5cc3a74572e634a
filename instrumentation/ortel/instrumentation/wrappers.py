"""The timing wrappers: one factory per call shape, handed the tracing policy.

Every factory builds the plain wrapper first: two clock readings and an append into the series'
buffers, the only code that records a call. Without spans that wrapper is what the caller gets,
so the hot path is exactly that. With spans (``tracing.InferenceSpans``) the same plain wrapper
goes inside a span-deciding one: a call the policy declines goes straight to it, a call the
policy admits runs it inside a span. The metric never times the span's own start.

Call shapes: ``InferenceSession.run`` and ``run_with_ort_values`` (whose batch is the leading
dimension of the model's first input), any other method (``run_with_iobinding``: batch unknown),
and a decorated sync or async function (``@profiled``, which also reports its first call as the
cold start).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .recorder import Series
    from .tracing import InferenceSpans

Wrapper = Callable[..., Any]
Batch = Callable[[tuple, dict, str], int]


def run(orig: Wrapper, series: Series, first: str, spans: InferenceSpans | None) -> Wrapper:
    """``session.run(output_names, input_feed, run_options=None)``."""
    ok, items, clock = series.ok.append, series.items.append, perf_counter_ns

    def run(output_names: Any, input_feed: Any, run_options: Any = None) -> Any:
        t0 = clock()
        try:
            out = orig(output_names, input_feed, run_options)
        except Exception as exc:
            series.error(clock() - t0, exc)
            raise
        ok(clock() - t0)
        try:  # batch = leading dim of the model's first input; outside the timed span
            items(len(input_feed[first]))
        except (KeyError, TypeError):
            pass
        return out

    return run if spans is None else _spanned(run, spans, series, first, "run", _feed_batch)


def run_with_ort_values(
    orig: Wrapper, series: Series, first: str, spans: InferenceSpans | None
) -> Wrapper:
    """``session.run_with_ort_values(output_names, input_dict_ort_values, run_options=None)``."""
    ok, items, clock = series.ok.append, series.items.append, perf_counter_ns

    def run_with_ort_values(
        output_names: Any, input_dict_ort_values: Any, run_options: Any = None
    ) -> Any:
        t0 = clock()
        try:
            out = orig(output_names, input_dict_ort_values, run_options)
        except Exception as exc:
            series.error(clock() - t0, exc)
            raise
        ok(clock() - t0)
        try:
            items(input_dict_ort_values[first].shape()[0])
        except (KeyError, IndexError, TypeError, AttributeError):
            pass
        return out

    if spans is None:
        return run_with_ort_values
    return _spanned(
        run_with_ort_values, spans, series, first, "run_with_ort_values", _ort_values_batch
    )


def run_with_iobinding(
    orig: Wrapper, series: Series, first: str, spans: InferenceSpans | None
) -> Wrapper:
    """Any run method whose batch is not known from its arguments."""
    ok, clock = series.ok.append, perf_counter_ns

    def run_with_iobinding(*args: Any, **kwargs: Any) -> Any:
        t0 = clock()
        try:
            out = orig(*args, **kwargs)
        except Exception as exc:
            series.error(clock() - t0, exc)
            raise
        ok(clock() - t0)
        return out

    if spans is None:
        return run_with_iobinding
    return _spanned(run_with_iobinding, spans, series, first, "run_with_iobinding", None)


SESSION_METHODS: dict[str, Callable[[Wrapper, Series, str, InferenceSpans | None], Wrapper]] = {
    "run": run,
    "run_with_ort_values": run_with_ort_values,
    "run_with_iobinding": run_with_iobinding,
}


def _feed_batch(args: tuple, kwargs: dict, first: str) -> int:
    feed = args[1] if len(args) > 1 else kwargs["input_feed"]
    return len(feed[first])


def _ort_values_batch(args: tuple, kwargs: dict, first: str) -> int:
    feed = args[1] if len(args) > 1 else kwargs["input_dict_ort_values"]
    return int(feed[first].shape()[0])


def _spanned(
    plain: Wrapper,
    spans: InferenceSpans,
    series: Series,
    first: str,
    method: str,
    batch: Batch | None,
) -> Wrapper:
    """``plain`` inside a span when the policy wants one. The span is not made current: a run
    has no child spans, and attaching a context costs more than the Add model's whole run."""
    want, start, fail = spans.want_now, spans.start_run_span, spans.fail
    attrs = spans.attributes(series, method)

    def call(*args: Any, **kwargs: Any) -> Any:
        if not want():
            return plain(*args, **kwargs)
        span = start(attrs)
        try:
            out = plain(*args, **kwargs)
        except Exception as exc:
            fail(span, exc)
            span.end()
            raise
        if batch is not None:
            try:
                span.set_attribute("ortel.batch_size", batch(args, kwargs, first))
            except (KeyError, IndexError, TypeError, AttributeError):
                pass
        span.end()
        return out

    functools.update_wrapper(call, plain)
    return call


def function(fn: Wrapper, series: Series, spans: InferenceSpans | None) -> Wrapper:
    """A decorated function, sync or async: each call is one inference, the first one is also
    the cold start. With spans, the span is current while ``fn`` runs, so spans that ``fn``
    makes are its children."""
    ok = series.ok.append
    cold = [True]

    def done(t0: int) -> None:
        dt = perf_counter_ns() - t0
        if cold[0]:
            cold[0] = False
            series.set_first_inference(dt * 1e-9)
        ok(dt)

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_call(*args: Any, **kwargs: Any) -> Any:
            t0 = perf_counter_ns()
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                series.error(perf_counter_ns() - t0, exc)
                raise
            done(t0)
            return result

        return async_call if spans is None else _current_span_async(async_call, spans, series)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        t0 = perf_counter_ns()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            series.error(perf_counter_ns() - t0, exc)
            raise
        done(t0)
        return result

    return call if spans is None else _current_span(call, spans, series)


def _current_span(plain: Wrapper, spans: InferenceSpans, series: Series) -> Wrapper:
    want, open_span, close_span = spans.want_now, spans.open_current, spans.close_current
    name = _span_name(plain)
    attrs = spans.attributes(series)

    @functools.wraps(plain)
    def call(*args: Any, **kwargs: Any) -> Any:
        if not want():
            return plain(*args, **kwargs)
        span, token = open_span(name, attrs)
        try:
            result = plain(*args, **kwargs)
        except BaseException as exc:
            close_span(span, token, exc)
            raise
        close_span(span, token, None)
        return result

    return call


def _current_span_async(plain: Wrapper, spans: InferenceSpans, series: Series) -> Wrapper:
    want, open_span, close_span = spans.want_now, spans.open_current, spans.close_current
    name = _span_name(plain)
    attrs = spans.attributes(series)

    @functools.wraps(plain)
    async def call(*args: Any, **kwargs: Any) -> Any:
        if not want():
            return await plain(*args, **kwargs)
        span, token = open_span(name, attrs)
        try:
            result = await plain(*args, **kwargs)
        except BaseException as exc:
            close_span(span, token, exc)
            raise
        close_span(span, token, None)
        return result

    return call


def _span_name(fn: Wrapper) -> str:
    return getattr(fn, "__qualname__", "") or getattr(fn, "__name__", "") or "inference"
