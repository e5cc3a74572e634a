"""``@profiled`` and ``track``: time any inference callable or block."""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter_ns
from typing import Any, TypeVar

from . import tracing, wrappers
from .recorder import RECORDER, Recorder, Series

F = TypeVar("F", bound=Callable[..., Any])


def profiled(
    model: str,
    *,
    provider: str = "unknown",
    sla_seconds: float | None = None,
    buckets: tuple[float, ...] | None = None,
    flops: float | None = None,
    recorder: Recorder = RECORDER,
) -> Callable[[F], F]:
    """Record every call of the decorated function (sync or async) as one inference.

    The first call is also reported as the cold start (``ortel_first_inference_seconds``).
    When OTel tracing is on at decoration time, each call is also a span (see ``tracing``).
    ``flops``: the FLOPs of one call, where known (for ``ortel_flops_per_watt``).
    """
    series = recorder.series(model, provider, sla_seconds=sla_seconds, buckets=buckets, flops=flops)

    def decorate(fn: F) -> F:
        return wrappers.function(fn, series, tracing.ACTIVE)  # type: ignore[return-value]

    return decorate


class track:  # noqa: N801 - used like a function: ``with track(model=...) as t``
    """Time a block as one inference: ``with track(model="m") as t: ...; t.items = 8``.

    An exception escaping the block is recorded as an error and re-raised. Works with
    ``async with`` too. The first block per (model, provider) in a process is the cold start.
    """

    __slots__ = ("_series", "_t0", "items", "_otel")  # _otel: span and context, with tracing on

    def __init__(
        self,
        model: str,
        *,
        provider: str = "unknown",
        sla_seconds: float | None = None,
        buckets: tuple[float, ...] | None = None,
        items: int | None = None,
        flops: float | None = None,
        recorder: Recorder = RECORDER,
    ) -> None:
        self._series: Series = recorder.series(
            model, provider, sla_seconds=sla_seconds, buckets=buckets, flops=flops
        )
        self.items = items
        self._t0 = 0
        self._otel: tuple[Any, Any, Any] | None = None

    def __enter__(self) -> track:
        spans = tracing.ACTIVE  # spans on: the block is a span too
        self._otel = None if spans is None else spans.open_track(self)
        self._t0 = perf_counter_ns()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        dt = perf_counter_ns() - self._t0
        s = self._series
        if exc is not None:
            if isinstance(exc, Exception):
                s.error(dt, exc)
        else:
            if s.claim_cold():
                s.set_first_inference(dt * 1e-9)
            s.ok.append(dt)
            if self.items is not None:
                try:
                    s.items.append(int(self.items))
                except OverflowError:  # beyond int64: not a batch size, and never worth raising
                    pass
        if self._otel is not None:
            spans, span, token = self._otel
            self._otel = None
            spans.close_track(span, token, exc, self.items)

    async def __aenter__(self) -> track:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)
