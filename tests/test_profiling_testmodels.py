"""The GPT-style decoder test model: a real KV cache (incremental logits equal the full pass)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from ortel.profiling.testmodels import gpt_decoder_model, main

LAYERS, HEADS, HD = 2, 4, 16


def empty_past(batch: int) -> dict[str, np.ndarray]:
    return {
        f"past_key_values.{i}.{k}": np.zeros((batch, HEADS, 0, HD), np.float32)
        for i in range(LAYERS)
        for k in ("key", "value")
    }


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    return ort.InferenceSession(gpt_decoder_model(), providers=["CPUExecutionProvider"])


def test_names_follow_the_optimum_convention(session):
    ins = [i.name for i in session.get_inputs()]
    outs = [o.name for o in session.get_outputs()]
    assert ins[:2] == ["input_ids", "attention_mask"]
    assert "past_key_values.1.value" in ins and "present.1.value" in outs
    assert outs[0] == "logits"


def test_incremental_decoding_with_the_cache_equals_the_full_pass(session):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 96, (2, 12))
    full = session.run(None, {"input_ids": ids, "attention_mask": np.ones((2, 12), np.int64),
                              **empty_past(2)})[0]  # fmt: skip
    names = [o.name for o in session.get_outputs()]
    out = session.run(None, {"input_ids": ids[:, :8], "attention_mask": np.ones((2, 8), np.int64),
                             **empty_past(2)})  # fmt: skip
    logits = [out[0]]
    for t in range(8, 12):
        past = {n.replace("present", "past_key_values"): v for n, v in zip(names[1:], out[1:])}
        mask = np.ones((2, t + 1), np.int64)
        out = session.run(None, {"input_ids": ids[:, t : t + 1], "attention_mask": mask, **past})
        assert out[1].shape == (2, HEADS, t + 1, HD)
        logits.append(out[0])
    assert np.abs(np.concatenate(logits, axis=1) - full).max() < 1e-4
    assert full.std() > 0.01  # not a degenerate all-equal output


def test_causal_mask_future_tokens_do_not_change_the_past(session):
    ids = np.arange(10).reshape(1, 10)
    a = session.run(None, {"input_ids": ids, "attention_mask": np.ones((1, 10), np.int64),
                           **empty_past(1)})[0]  # fmt: skip
    ids2 = ids.copy()
    ids2[0, 7:] = 50
    b = session.run(None, {"input_ids": ids2, "attention_mask": np.ones((1, 10), np.int64),
                           **empty_past(1)})[0]  # fmt: skip
    assert np.allclose(a[:, :7], b[:, :7], atol=1e-5)
    assert not np.allclose(a[:, 7:], b[:, 7:])


def test_padding_mask_hides_keys(session):
    ids = np.arange(6).reshape(1, 6)
    mask = np.ones((1, 6), np.int64)
    a = session.run(None, {"input_ids": ids, "attention_mask": mask, **empty_past(1)})[0]
    mask[0, 0] = 0
    b = session.run(None, {"input_ids": ids, "attention_mask": mask, **empty_past(1)})[0]
    assert not np.allclose(a[:, 1:], b[:, 1:])


def test_deterministic_bytes_and_cli(tmp_path):
    assert gpt_decoder_model() == gpt_decoder_model()
    assert main([str(tmp_path / "gpt.onnx"), "--layers", "1"]) == 0
    s = ort.InferenceSession(str(tmp_path / "gpt.onnx"))
    assert len(s.get_outputs()) == 3


def test_d_model_must_divide_into_heads():
    with pytest.raises(ValueError):
        gpt_decoder_model(d_model=30, heads=4)
