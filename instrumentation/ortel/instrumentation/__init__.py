"""ortel's instrumentation shim: record inference latency, throughput and errors in-process.

    from ortel.instrumentation import profiled, track, instrument_session

Imports are lazy so that ``import ortel.instrumentation`` is cheap and the daemon can use the
shared catalogue without loading numpy or onnxruntime.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "profiled": "decorator",
    "track": "decorator",
    "track_generation": "generation",
    "instrument_session": "session",
    "uninstrument_session": "session",
    "OnnxRuntimeInstrumentor": "instrumentor",
    "OnnxRuntimeOtelInstrumentor": "otel",
    "start_otlp": "otel",
    "start_http_server": "server",
    "make_registry": "server",
    "enable_multiprocess": "recorder",
    "energy": "meter",
    "EnergyMeter": "meter",
    "RECORDER": "recorder",
    "Recorder": "recorder",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ortel.instrumentation' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
