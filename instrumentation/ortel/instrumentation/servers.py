"""Flush when a server has finished its last request, where its exit skips every exit hook.

uvicorn shuts down gracefully on SIGTERM (its own workers, ``uvicorn --workers N`` and gunicorn's
uvicorn workers alike): it finishes the requests in flight, runs the app's lifespan shutdown,
then puts back the signal handlers it found and raises the signal again, so the process dies by
SIGTERM and neither atexit nor multiprocessing's finalizers run. Flushing right after the
server's ``shutdown`` returns records every call the server made.

A server module is hooked once it has been imported, whichever comes first: checked when the
multiprocess writer is enabled and on every flush (a dictionary lookup), so an app that imports
ortel before uvicorn, or uvicorn before ortel (a preloading gunicorn master), is covered.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

log = logging.getLogger("ortel.instrumentation")

# module -> (class, coroutine method after which the server has served its last request)
SUPPORTED: dict[str, tuple[str, str]] = {"uvicorn.server": ("Server", "shutdown")}

_hooked: set[str] = set()
_flushes: list[Callable[[], None]] = []


def hook_servers(flush: Callable[[], None]) -> None:
    """Call ``flush`` after the shutdown of every supported server imported so far. Idempotent:
    a server is wrapped once, and a flush function added once."""
    if flush not in _flushes:
        _flushes.append(flush)
    for module, (cls, method) in SUPPORTED.items():
        mod = sys.modules.get(module)
        if mod is None or module in _hooked:
            continue
        import wrapt

        _hooked.add(module)
        wrapt.wrap_function_wrapper(mod, f"{cls}.{method}", _flush_after)


def _flush_after(wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
    async def shutdown() -> Any:
        try:
            return await wrapped(*args, **kwargs)
        finally:
            for flush in list(_flushes):
                try:
                    flush()
                except Exception:  # the server's shutdown must go on whatever ortel does
                    log.exception("ortel: flush after the server's shutdown failed")

    return shutdown()
