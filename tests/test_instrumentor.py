import numpy as np
import onnxruntime as ort
import pytest

from ortel.core import catalog as c
from ortel.instrumentation.instrumentor import OnnxRuntimeInstrumentor
from ortel.instrumentation.models import add_model
from ortel.instrumentation.recorder import Recorder

FEED = {"x": np.ones((1, 16), np.float32), "y": np.ones((1, 16), np.float32)}
KEY = ("adder", "CPUExecutionProvider")


@pytest.fixture
def model(tmp_path):
    p = tmp_path / "adder.onnx"
    p.write_bytes(add_model())
    return str(p)


@pytest.fixture
def inst():
    i = OnnxRuntimeInstrumentor()
    yield i
    i.uninstrument()


def values(rec):
    return {(r.metric.name, r.labels): r.value for r in rec.readings()}


def test_singleton_and_declared_dependencies():
    assert OnnxRuntimeInstrumentor() is OnnxRuntimeInstrumentor()
    deps = OnnxRuntimeInstrumentor().instrumentation_dependencies()
    assert any(d.startswith("onnxruntime") for d in deps)


def test_new_sessions_are_instrumented_with_load_time(inst, model):
    rec = Recorder()
    inst.instrument(recorder=rec, sla_seconds={"adder": 1.0})
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    sess.run(None, FEED)
    sess.run(None, FEED)
    got = values(rec)
    assert got[(c.INFERENCES.name, KEY + ("ok",))] == 2
    assert got[(c.SESSION_LOAD.name, KEY)] > 0
    assert got[(c.SLA_TARGET.name, ("adder",))] == 1.0


def test_instrument_twice_is_idempotent_and_uninstrument_is_symmetric(inst, model):
    rec = Recorder()
    init = ort.InferenceSession.__init__
    inst.instrument(recorder=rec)
    inst.instrument(recorder=rec)
    assert ort.InferenceSession.__init__.__wrapped__ is init  # wrapped once
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    sess.run(None, FEED)
    inst.uninstrument()
    inst.uninstrument()
    assert ort.InferenceSession.__init__ is init
    sess.run(None, FEED)  # the existing session is restored too
    ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, FEED)
    assert values(rec)[(c.INFERENCES.name, KEY + ("ok",))] == 1
    assert not inst.is_instrumented


def test_failed_session_creation_propagates(inst, tmp_path):
    inst.instrument(recorder=Recorder())
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(Exception):  # noqa: B017 - ORT raises its own exception types
        ort.InferenceSession(str(bad), providers=["CPUExecutionProvider"])
