"""The live ETW side of the ``etw`` collector: pythonnet + Microsoft.Diagnostics.Tracing.TraceEvent.

Windows only, imported only there (by ``EtwCollector``); it implements ``etw.TraceEventApi``.
Everything this module does is hand TraceEvent's objects over as plain ``EtwEvent``s: the mapping
to metrics, the session names and the stale-session rules live in ``etw.py`` where they are
tested on every OS. Tested live only on Windows (tests/test_etw_live.py, skipped elsewhere).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .base import NoDataError
from .etw_events import KERNEL_PROVIDER, ORT_PROVIDER, EtwEvent, ProviderSpec

log = logging.getLogger("ortel.exporter")

# Per kernel event kind: TraceEvent's parser event, and the payload properties the fold reads.
KERNEL_EVENTS: dict[str, tuple[str, ...]] = {
    "ThreadCSwitch": ("OldProcessID", "OldThreadState"),
    "ProcessStart": ("ProcessID", "ImageFileName"),
    "ProcessDCStart": ("ProcessID", "ImageFileName"),
    "ProcessStop": ("ProcessID", "ImageFileName"),
    "ThreadStart": (),
    "ThreadDCStart": (),
    "ThreadStop": (),
    "MemoryTransitionFault": (),
    "MemoryDemandZeroFault": (),
    "MemoryCopyOnWrite": (),
    "MemoryGuardMemory": (),
    "MemoryHardMemory": (),
    "DiskIORead": ("DiskNumber", "TransferSize"),
    "DiskIOWrite": ("DiskNumber", "TransferSize"),
    "PerfInfoPMCSample": ("ProfileSource",),
}


_bad_events = 0


def _bad_event(e: Exception) -> None:
    global _bad_events
    _bad_events += 1
    if _bad_events == 1:  # once: this runs for every event
        log.warning("etw: an event could not be read, skipping such events: %s", e)


def _plain(value: Any) -> Any:
    """A .NET payload value as a Python int, float or str (enums become their number)."""
    if isinstance(value, bool | int | float | str):
        return value
    from System import Convert, Enum  # type: ignore[import-not-found]

    if isinstance(value, Enum):
        return int(Convert.ToInt64(value))
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value)


class LiveSession:
    """One TraceEventSession and the thread that runs its Source.Process()."""

    def __init__(self, session: Any, name: str) -> None:
        self.session = session
        self.name = name
        self._failure: BaseException | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"ortel-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self.session.Source.Process()  # blocks until the session stops
        except BaseException as e:  # reported by failure(); the collector restarts the sessions
            self._failure = e
        else:
            if not self._stopped:
                self._failure = RuntimeError("the session stopped (stopped by another tool?)")

    def events_lost(self) -> int:
        return int(self.session.EventsLost)

    def failure(self) -> BaseException | None:
        return self._failure

    def stop(self) -> None:
        self._stopped = True
        self.session.Stop(True)  # noThrow
        self.session.Dispose()
        self._thread.join(timeout=5)


class LiveApi:
    def __init__(self) -> None:
        from Microsoft.Diagnostics.Tracing import TraceEventLevel  # type: ignore[import-not-found]
        from Microsoft.Diagnostics.Tracing.Parsers import (  # type: ignore[import-not-found]
            KernelTraceEventParser,
        )
        from Microsoft.Diagnostics.Tracing.Session import (  # type: ignore[import-not-found]
            TraceEventProfileSources,
            TraceEventSession,
        )

        self.Level = TraceEventLevel
        self.Keywords = KernelTraceEventParser.Keywords
        self.Sources = TraceEventProfileSources
        self.Session = TraceEventSession

    def is_elevated(self) -> bool:
        elevated = self.Session.IsElevated()  # Nullable<bool>: None when it cannot tell
        return elevated is not False

    def active_sessions(self) -> list[str]:
        return [str(n) for n in self.Session.GetActiveSessionNames()]

    def stop_session(self, name: str) -> None:
        session = self.Session.GetActiveSession(name)
        if session is not None:
            session.Stop(True)

    def process_start(self, pid: int) -> int | None:
        from System import ArgumentException  # type: ignore[import-not-found]
        from System.Diagnostics import Process  # type: ignore[import-not-found]

        try:
            process = Process.GetProcessById(pid)
        except ArgumentException:
            return None  # no such process
        try:
            return int(process.StartTime.ToFileTimeUtc())
        except Exception:  # a protected process: it runs, its start time is unknown
            return 0

    def profile_sources(self) -> dict[str, tuple[int, int, int]]:
        out: dict[str, tuple[int, int, int]] = {}
        for kv in self.Sources.GetInfo():
            info = kv.Value
            out[str(kv.Key)] = (int(info.ID), int(info.MinInterval), int(info.MaxInterval))
        return out

    def set_profile_sources(self, ids: Sequence[int], intervals: Sequence[int]) -> None:
        from System import Array, Int32  # type: ignore[import-not-found]

        self.Sources.Set(Array[Int32](list(ids)), Array[Int32](list(intervals)))

    def start_session(
        self,
        name: str,
        kernel_keywords: int,
        providers: Sequence[ProviderSpec],
        on_event: Callable[[EtwEvent], None],
    ) -> LiveSession:
        from System import Enum, Guid, Int64, UInt64  # type: ignore[import-not-found]

        session = self.Session(name)
        session.StopOnDispose = True
        try:
            source = session.Source
            if kernel_keywords:
                self._subscribe_kernel(source, on_event)
                session.EnableKernelProvider(Enum.ToObject(self.Keywords, kernel_keywords))
            if providers:
                self._subscribe_dynamic(source, on_event)
            for p in providers:
                level = Enum.ToObject(self.Level, p.level)
                session.EnableProvider(Guid(p.guid), level, UInt64(p.keywords))
                if p.capture_state:  # ONNX Runtime answers with SessionCreation per live session
                    session.CaptureState(Guid(p.guid), Int64(p.keywords))
        except BaseException:
            session.Dispose()
            raise
        live = LiveSession(session, name)
        live.start()
        return live

    @staticmethod
    def _subscribe_kernel(source: Any, on_event: Callable[[EtwEvent], None]) -> None:
        kernel = source.Kernel
        for event, fields in KERNEL_EVENTS.items():

            def handler(data: Any, fields: tuple[str, ...] = fields) -> None:
                try:
                    payload = {f: _plain(getattr(data, f)) for f in fields}
                    pid, tid = int(data.ProcessID), int(data.ThreadID)
                    on_event(EtwEvent(KERNEL_PROVIDER, str(data.EventName), pid, tid, payload))
                except Exception as e:  # an exception into .NET would stop Source.Process()
                    _bad_event(e)

            getattr(kernel, event).__iadd__(handler)  # kernel.<event> += handler

    @staticmethod
    def _subscribe_dynamic(source: Any, on_event: Callable[[EtwEvent], None]) -> None:
        def handler(data: Any) -> None:
            try:
                if str(data.ProviderName) != ORT_PROVIDER:
                    return
                names = list(data.PayloadNames)
                payload = {str(n): _plain(data.PayloadValue(i)) for i, n in enumerate(names)}
                pid, tid = int(data.ProcessID), int(data.ThreadID)
                on_event(EtwEvent(ORT_PROVIDER, str(data.EventName), pid, tid, payload))
            except Exception as e:
                _bad_event(e)

        source.Dynamic.All.__iadd__(handler)


def load_traceevent(assembly: Path) -> LiveApi:
    """Load TraceEvent through pythonnet; NoDataError with the fix when that is not possible."""
    try:
        import clr  # type: ignore[import-not-found]  # pythonnet
    except ImportError as e:
        raise NoDataError(f"pythonnet is not installed (pip install 'ortel[windows]'): {e}") from e
    folder = str(Path(assembly).resolve().parent)
    if folder not in sys.path:
        sys.path.append(folder)  # pythonnet resolves TraceEvent's dependencies from sys.path
    try:
        clr.AddReference(str(Path(assembly).resolve()))
    except Exception as e:
        raise NoDataError(f"cannot load {assembly}: {e}") from e
    return LiveApi()
