"""``instrument_session``: record every run of one onnxruntime.InferenceSession.

The wrappers are instance attributes that shadow the class's methods, so uninstrumenting is
deleting them and other sessions are untouched. The first call of any run method records the
cold start, then swaps in the steady-state wrappers, so the hot path carries no first-call check.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from time import perf_counter_ns
from typing import Any

from . import opsampling, tracing, wrappers
from .recorder import RECORDER, Recorder, Series


def model_name(session: Any) -> str:
    """The model file's stem, or "unknown" for sessions built from bytes."""
    path = getattr(session, "_model_path", None)
    return Path(path).stem if isinstance(path, str | Path) and str(path) else "unknown"


def instrument_session(
    session: Any,
    model: str | None = None,
    *,
    sla_seconds: float | None = None,
    buckets: tuple[float, ...] | None = None,
    load_seconds: float | None = None,
    recorder: Recorder = RECORDER,
    spans: tracing.InferenceSpans | None = None,
    op_sample_seconds: float | None = None,
    flops: float | None = None,
) -> Any:
    """Instrument ``session`` in place and return it. Instrumenting twice is a no-op.

    With ``spans`` (default: the active one, when OTel tracing is on) each run also emits a span.
    ``op_sample_seconds`` (default: ``ORTEL_OP_SAMPLE_SECONDS``, off when unset) profiles one
    inference's operators every that many seconds (see ``opsampling``). ``flops``: the FLOPs
    of one run, where known (for ``ortel_flops_per_watt``).
    """
    if "_ortel_series" in vars(session):
        return session
    providers = session.get_providers()
    series = recorder.series(
        model or model_name(session),
        providers[0] if providers else "unknown",
        sla_seconds=sla_seconds,
        buckets=buckets,
        flops=flops,
    )
    if load_seconds is not None:
        series.set_load(load_seconds)
    originals = {m: getattr(session, m) for m in wrappers.SESSION_METHODS if hasattr(session, m)}
    spans = tracing.ACTIVE if spans is None else spans
    inputs = session.get_inputs()
    first = inputs[0].name if inputs else ""
    steady = {
        m: wrappers.SESSION_METHODS[m](fn, series, first, spans) for m, fn in originals.items()
    }
    sampler = opsampling.attach(session, series, recorder, op_sample_seconds)
    if sampler is not None:  # only then: with sampling off the hot path is exactly as above
        steady = sampler.wrap(steady)

    def go_warm() -> None:
        for m, fn in steady.items():
            setattr(session, m, fn)

    cold = [True]  # shared by the three methods: the session has one first call
    for m in originals:
        setattr(session, m, _cold(steady[m], series, go_warm, cold))
    session._ortel_series = series
    return session


def uninstrument_session(session: Any) -> None:
    d = vars(session)
    if d.pop("_ortel_series", None) is None:
        return
    for m in wrappers.SESSION_METHODS:
        d.pop(m, None)
    sampler = d.pop("_ortel_op_sampler", None)
    if sampler is not None:
        sampler.close()


def _cold(
    warm_fn: Callable[..., Any], series: Series, go_warm: Callable[[], None], cold: list[bool]
) -> Callable[..., Any]:
    def first_call(*args: Any, **kwargs: Any) -> Any:
        if not cold[0]:  # a reference taken before the first call: stay correct, not fast
            return warm_fn(*args, **kwargs)
        cold[0] = False  # claim first: a concurrent second caller must not count as cold too
        go_warm()
        t0 = perf_counter_ns()
        try:
            return warm_fn(*args, **kwargs)
        finally:
            series.set_first_inference((perf_counter_ns() - t0) * 1e-9)

    return first_call
