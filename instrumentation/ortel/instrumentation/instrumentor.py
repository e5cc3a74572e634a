"""``OnnxRuntimeInstrumentor``: instrument every onnxruntime.InferenceSession in the process.

Follows the opentelemetry-python-contrib instrumentor template: one instance per class, supported
versions declared as data, symmetric and idempotent ``instrument``/``uninstrument``, wrapt
wrappers with the ``(wrapped, instance, args, kwargs)`` signature.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Collection
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, TypedDict

from .recorder import RECORDER, Recorder
from .session import instrument_session, model_name, uninstrument_session

if TYPE_CHECKING:
    from .tracing import InferenceSpans

_instruments = ("onnxruntime >= 1.16",)


class _Options(TypedDict, total=False):
    """What ``instrument()`` was given, for the sessions created from then on."""

    namer: Callable[[Any], str]
    sla: float | dict[str, float] | None
    recorder: Recorder
    spans: InferenceSpans | None


class OnnxRuntimeInstrumentor:
    _instance: OnnxRuntimeInstrumentor | None = None
    # Set once, in __new__, on the one instance.
    _instrumented: bool
    _sessions: weakref.WeakSet[Any]
    _options: _Options

    def __new__(cls) -> OnnxRuntimeInstrumentor:
        if cls._instance is None:
            inst = super().__new__(cls)
            inst._instrumented = False
            inst._sessions = weakref.WeakSet()
            inst._options = {}
            cls._instance = inst
        return cls._instance

    @property
    def is_instrumented(self) -> bool:
        return self._instrumented

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def instrument(
        self,
        *,
        model_namer: Callable[[Any], str] = model_name,
        sla_seconds: float | dict[str, float] | None = None,
        recorder: Recorder = RECORDER,
        spans: InferenceSpans | None = None,
    ) -> None:
        """Patch InferenceSession so new sessions are instrumented (load time included).

        ``sla_seconds`` is one target for every model or a ``{model: seconds}`` map; ``spans``
        makes every run a span too (``ortel.instrumentation.otel`` passes it when tracing is on).
        """
        if self._instrumented:
            return
        self._options = {
            "namer": model_namer,
            "sla": sla_seconds,
            "recorder": recorder,
            "spans": spans,
        }
        self._instrument()
        self._instrumented = True

    def uninstrument(self) -> None:
        if not self._instrumented:
            return
        self._uninstrument()
        self._instrumented = False

    def _instrument(self) -> None:
        import onnxruntime
        import wrapt

        wrapt.wrap_function_wrapper(onnxruntime.InferenceSession, "__init__", self._init_wrapper)

    def _uninstrument(self) -> None:
        import onnxruntime

        init = onnxruntime.InferenceSession.__init__
        if hasattr(init, "__wrapped__"):
            onnxruntime.InferenceSession.__init__ = init.__wrapped__
        for s in list(self._sessions):
            uninstrument_session(s)
        self._sessions.clear()

    def _init_wrapper(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict
    ) -> None:
        t0 = perf_counter_ns()
        wrapped(*args, **kwargs)
        load = (perf_counter_ns() - t0) * 1e-9
        opts = self._options
        model = opts["namer"](instance)
        sla = opts["sla"]
        if isinstance(sla, dict):
            sla = sla.get(model)
        instrument_session(
            instance,
            model,
            sla_seconds=sla,
            load_seconds=load,
            recorder=opts["recorder"],
            spans=opts["spans"],
        )
        self._sessions.add(instance)
