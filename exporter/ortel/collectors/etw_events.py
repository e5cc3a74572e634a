"""ETW events and providers as ortel sees them: shared by the fold (etw.py) and the live
TraceEvent session (etw_live.py), so neither imports the other's module for them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KERNEL_PROVIDER = "Windows Kernel"  # TraceEvent's KernelTraceEventParser.ProviderName
ORT_PROVIDER = "Microsoft.ML.ONNXRuntime"


@dataclass(frozen=True)
class EtwEvent:
    """One event as TraceEvent parsed it: provider, TraceEvent's EventName (``Task/Opcode`` for
    kernel events, the event name for TraceLogging ones), header pid/tid (TraceEvent fixes them
    up), and the payload fields by TraceEvent's payload names."""

    provider: str
    name: str
    pid: int
    tid: int = -1
    payload: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> EtwEvent:
        return cls(
            str(d["provider"]),
            str(d["event"]),
            int(d["pid"]),
            int(d.get("tid", -1)),
            dict(d.get("payload", {})),
        )


@dataclass(frozen=True)
class ProviderSpec:
    guid: str
    level: int
    keywords: int
    capture_state: bool = False  # ask for a rundown of state that existed before the session
