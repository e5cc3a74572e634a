import asyncio

import pytest

from ortel.core import catalog as c
from ortel.instrumentation.decorator import profiled, track
from ortel.instrumentation.recorder import Recorder

KEY = ("m", "unknown")


def values(rec):
    return {(r.metric.name, r.labels): r.value for r in rec.readings()}


def test_sync_function_calls_are_recorded_with_cold_start():
    rec = Recorder()

    @profiled(model="m", recorder=rec)
    def infer(x):
        """doc"""
        return x * 2

    assert [infer(i) for i in range(5)] == [0, 2, 4, 6, 8]
    assert infer.__name__ == "infer" and infer.__doc__ == "doc"
    got = values(rec)
    assert got[(c.INFERENCES.name, KEY + ("ok",))] == 5
    assert (c.FIRST_INFERENCE.name, KEY) in got


def test_async_function_is_awaited_and_timed():
    rec = Recorder()

    @profiled(model="m", provider="CUDAExecutionProvider", recorder=rec)
    async def infer():
        await asyncio.sleep(0.01)
        return 1

    assert asyncio.run(infer()) == 1
    h = values(rec)[(c.INFERENCE_DURATION.name, ("m", "CUDAExecutionProvider", "ok"))]
    assert h.count == 1 and h.sum >= 0.009


def test_exceptions_are_counted_and_propagate():
    rec = Recorder()

    @profiled(model="m", recorder=rec)
    def infer():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        infer()
    got = values(rec)
    assert got[(c.INFERENCE_ERRORS.name, ("m", "RuntimeError"))] == 1
    assert got[(c.INFERENCES.name, KEY + ("ok",))] == 0


def test_track_block_with_items_and_error():
    rec = Recorder()
    with track(model="m", recorder=rec) as t:
        t.items = 8
    with pytest.raises(KeyError), track(model="m", recorder=rec):
        raise KeyError("x")
    got = values(rec)
    assert got[(c.INFERENCES.name, KEY + ("ok",))] == 1
    assert got[(c.INFERENCE_ITEMS.name, KEY)] == 8
    assert got[(c.INFERENCE_ERRORS.name, ("m", "KeyError"))] == 1
    assert (c.FIRST_INFERENCE.name, KEY) in got


def test_async_with_track():
    rec = Recorder()

    async def main():
        async with track(model="m", items=2, recorder=rec):
            await asyncio.sleep(0)

    asyncio.run(main())
    assert values(rec)[(c.INFERENCE_ITEMS.name, KEY)] == 2


def test_keyboard_interrupt_is_not_an_inference_error():
    rec = Recorder()
    with pytest.raises(KeyboardInterrupt), track(model="m", recorder=rec):
        raise KeyboardInterrupt
    got = values(rec)
    assert got[(c.INFERENCES.name, KEY + ("ok",))] == 0
    assert (c.INFERENCES.name, KEY + ("error",)) not in got


def test_flops_are_recorded_once_per_series_off_the_hot_path():
    rec = Recorder()

    @profiled(model="m", flops=2e9, recorder=rec)
    def f():
        return 1

    f()
    with track(model="m", flops=5e9, recorder=rec):  # the first declaration stays
        pass
    with track(model="n", flops=3e9, recorder=rec):
        pass
    states = {s.model: s for s in rec.states()}
    assert (states["m"].flops, states["n"].flops) == (2e9, 3e9)
    with pytest.raises(ValueError):
        track(model="o", flops=float("nan"), recorder=rec)
