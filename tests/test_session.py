import numpy as np
import onnxruntime as ort
import pytest

from ortel.core import catalog as c
from ortel.instrumentation.models import mlp_model
from ortel.instrumentation.recorder import Recorder
from ortel.instrumentation.session import instrument_session, uninstrument_session


def values(rec):
    return {(r.metric.name, r.labels): r.value for r in rec.readings()}


@pytest.fixture
def model_path(tmp_path):
    p = tmp_path / "tiny_mlp.onnx"
    p.write_bytes(mlp_model())
    return p


def make(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def feed(batch):
    return {"input": np.ones((batch, 64), np.float32)}


def test_records_runs_batches_cold_start_and_names_from_the_file(model_path):
    rec = Recorder()
    sess = instrument_session(make(model_path), recorder=rec)
    for b in (1, 4, 8):
        out = sess.run(None, feed(b))
        assert out[0].shape == (b, 10)
    got = values(rec)
    key = ("tiny_mlp", "CPUExecutionProvider")
    assert got[(c.INFERENCES.name, key + ("ok",))] == 3
    assert got[(c.INFERENCE_ITEMS.name, key)] == 13
    assert got[(c.FIRST_INFERENCE.name, key)] > 0


def test_errors_are_recorded_and_reraised(model_path):
    rec = Recorder()
    sess = instrument_session(make(model_path), model="m", recorder=rec)
    with pytest.raises(Exception) as info:
        sess.run(None, {"input": np.ones((1, 3), np.float32)})
    got = values(rec)
    assert got[(c.INFERENCES.name, ("m", "CPUExecutionProvider", "error"))] == 1
    assert got[(c.INFERENCE_ERRORS.name, ("m", type(info.value).__name__))] == 1


def test_run_with_ort_values_and_iobinding_are_recorded(model_path):
    rec = Recorder()
    sess = instrument_session(make(model_path), model="m", recorder=rec)
    x = ort.OrtValue.ortvalue_from_numpy(np.ones((2, 64), np.float32))
    sess.run_with_ort_values(None, {"input": x})
    binding = sess.io_binding()
    binding.bind_cpu_input("input", np.ones((3, 64), np.float32))
    binding.bind_output("probabilities")
    sess.run_with_iobinding(binding)
    got = values(rec)
    assert got[(c.INFERENCES.name, ("m", "CPUExecutionProvider", "ok"))] == 2
    assert got[(c.INFERENCE_ITEMS.name, ("m", "CPUExecutionProvider"))] == 2  # iobinding: unknown


def test_idempotent_and_uninstrument_restores_the_class_methods(model_path):
    rec = Recorder()
    sess = make(model_path)
    instrument_session(sess, model="m", recorder=rec)
    instrument_session(sess, model="m", recorder=rec)  # no double wrapping
    sess.run(None, feed(1))
    uninstrument_session(sess)
    assert "run" not in vars(sess)
    sess.run(None, feed(1))
    assert values(rec)[(c.INFERENCES.name, ("m", "CPUExecutionProvider", "ok"))] == 1


def test_other_sessions_are_untouched(model_path):
    rec = Recorder()
    a, b = make(model_path), make(model_path)
    instrument_session(a, model="m", recorder=rec)
    b.run(None, feed(1))
    assert values(rec)[(c.INFERENCES.name, ("m", "CPUExecutionProvider", "ok"))] == 0


def test_session_from_bytes_is_named_unknown():
    rec = Recorder()
    sess = instrument_session(
        ort.InferenceSession(mlp_model(), providers=["CPUExecutionProvider"]), recorder=rec
    )
    sess.run(None, feed(1))
    assert (c.INFERENCES.name, ("unknown", "CPUExecutionProvider", "ok")) in values(rec)


def test_load_time_is_recorded_when_given(model_path):
    rec = Recorder()
    instrument_session(make(model_path), model="m", load_seconds=0.25, recorder=rec)
    assert values(rec)[(c.SESSION_LOAD.name, ("m", "CPUExecutionProvider"))] == 0.25


def test_flops_given_to_instrument_session_reach_the_state(model_path):
    rec = Recorder()
    instrument_session(make(model_path), model="m", flops=1.5e6, recorder=rec)
    (state,) = rec.states()
    assert state.flops == 1.5e6
