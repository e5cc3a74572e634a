"""A process can serve its own metrics: ``start_http_server(9464)``."""

from __future__ import annotations

from typing import Any

from .recorder import RECORDER, Recorder


def make_registry(recorder: Recorder = RECORDER) -> Any:
    from prometheus_client import CollectorRegistry

    from ortel.core.exposition import ReadingsCollector

    reg = CollectorRegistry(auto_describe=False)
    reg.register(ReadingsCollector(recorder.readings))
    return reg


def start_http_server(
    port: int = 9464, addr: str = "127.0.0.1", recorder: Recorder = RECORDER
) -> Any:
    """Serve this process's inference metrics on http://addr:port/metrics (a daemon thread).

    Returns prometheus_client's ``(server, thread)``; ``server.shutdown()`` stops it.
    """
    import prometheus_client

    return prometheus_client.start_http_server(port, addr, registry=make_registry(recorder))
