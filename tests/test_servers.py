"""servers.py: flushing after a server's shutdown, against a stand-in module of uvicorn's shape
(the real uvicorn paths run in tests/test_deployments.py)."""

from __future__ import annotations

import asyncio
import sys
import types

import pytest

from ortel.instrumentation import servers


@pytest.fixture
def fake_uvicorn(monkeypatch):
    mod = types.ModuleType("uvicorn.server")
    order: list[str] = []

    class Server:
        async def shutdown(self, sockets=None):
            order.append("shutdown")
            return "done"

    mod.Server = Server  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "uvicorn.server", mod)
    monkeypatch.setattr(servers, "_hooked", set())
    monkeypatch.setattr(servers, "_flushes", [])
    return mod, order


def test_flush_runs_after_the_shutdown_returns(fake_uvicorn):
    mod, order = fake_uvicorn
    servers.hook_servers(lambda: order.append("flush"))
    assert asyncio.run(mod.Server().shutdown()) == "done"
    assert order == ["shutdown", "flush"]


def test_hooking_again_wraps_once_and_flushes_once(fake_uvicorn):
    mod, order = fake_uvicorn

    def flush() -> None:
        order.append("flush")

    for _ in range(3):
        servers.hook_servers(flush)
    asyncio.run(mod.Server().shutdown())
    assert order == ["shutdown", "flush"]


def test_a_failing_shutdown_still_flushes(fake_uvicorn):
    mod, order = fake_uvicorn

    async def broken(self, sockets=None):
        raise RuntimeError("boom")

    mod.Server.shutdown = broken
    servers.hook_servers(lambda: order.append("flush"))
    with pytest.raises(RuntimeError):
        asyncio.run(mod.Server().shutdown())
    assert order == ["flush"]


def test_a_server_imported_later_is_hooked_on_a_later_call(monkeypatch, fake_uvicorn):
    mod, order = fake_uvicorn
    monkeypatch.delitem(sys.modules, "uvicorn.server")

    def flush() -> None:
        order.append("flush")

    servers.hook_servers(flush)  # nothing to hook yet
    monkeypatch.setitem(sys.modules, "uvicorn.server", mod)
    servers.hook_servers(flush)  # as the next flush does
    asyncio.run(mod.Server().shutdown())
    assert order == ["shutdown", "flush"]


def test_a_failing_flush_does_not_break_the_shutdown(fake_uvicorn):
    mod, order = fake_uvicorn

    def broken() -> None:
        raise OSError("disk full")

    servers.hook_servers(broken)
    assert asyncio.run(mod.Server().shutdown()) == "done"
    assert order == ["shutdown"]
