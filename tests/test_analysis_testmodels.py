"""The analysis test models: valid, deterministic, running, and behaving as documented."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from ortel.analysis import testmodels as tm

BUILDERS = [
    tm.grouped_cnn_model,
    tm.transformer_encoder_model,
    tm.gpt_decoder_model,
    tm.control_flow_model,
    tm.dynamic_dims_model,
]


@pytest.mark.parametrize("build", BUILDERS, ids=lambda b: b.__name__)
def test_deterministic_and_valid(build):
    a, b = build(), build()
    assert a == b
    onnx.checker.check_model(onnx.load_from_string(a), full_check=True)


def run(model: bytes, feeds):
    s = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return s.run(None, feeds)


def decoder_feeds(ids, past=None, layers=2):
    feeds = {"input_ids": np.array([ids], np.int64)}
    for i in range(layers):
        for kv in ("key", "value"):
            feeds[f"past_key_values.{i}.{kv}"] = (
                np.zeros((1, 4, 0, 16), np.float32) if past is None else past[f"present.{i}.{kv}"]
            )
    return feeds


def test_gpt_decoder_kv_cache_conventions_and_semantics():
    m = tm.gpt_decoder_model()
    proto = onnx.load_from_string(m)
    ins = [i.name for i in proto.graph.input]
    outs = [o.name for o in proto.graph.output]
    assert ins == ["input_ids"] + [
        f"past_key_values.{i}.{kv}" for i in (0, 1) for kv in ("key", "value")
    ]
    assert outs == ["logits"] + [f"present.{i}.{kv}" for i in (0, 1) for kv in ("key", "value")]
    s = ort.InferenceSession(m, providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]

    def step(ids, past=None):
        return dict(zip(names, s.run(None, decoder_feeds(ids, past))))

    full = step([5, 7, 9])
    assert full["logits"].shape == (1, 3, 256) and full["present.1.value"].shape == (1, 4, 3, 16)
    # causal: changing the last token leaves earlier positions alone
    other = step([5, 7, 3])
    assert np.allclose(full["logits"][0, :2], other["logits"][0, :2])
    assert not np.allclose(full["logits"][0, 2], other["logits"][0, 2])
    # a decode step on the cache equals the same position of the full prefill
    prefix = step([5, 7])
    nxt = step([9], prefix)
    assert nxt["present.0.key"].shape == (1, 4, 3, 16)
    assert np.allclose(nxt["logits"][0, 0], full["logits"][0, 2], atol=1e-4)


def test_other_models_run_with_their_documented_shapes():
    assert run(tm.grouped_cnn_model(), {"image": np.ones((2, 3, 32, 32), np.float32)})[0].shape == (
        2,
        10,
    )
    h = np.ones((2, 16, 64), np.float32)
    assert run(tm.transformer_encoder_model(), {"hidden_states": h})[0].shape == (2, 16, 64)
    cf = {"x": np.ones((1, 16), np.float32), "steps": np.array(2, np.int64)}
    assert run(tm.control_flow_model(), cf)[0].shape == (1, 16)
    assert run(tm.dynamic_dims_model(), {"features": np.ones((3, 5, 32), np.float32)})[0].shape == (
        3,
        10,
    )


def test_hand_computed_mac_formulas():
    assert tm.GROUPED_CNN_MACS == 3_694_752
    assert tm.encoder_macs(2, 16) == 1_638_400
    # decoder: per layer 4·B·S·H² + 2·B·S·T·H + 8·B·S·H², plus the LM head
    assert tm.decoder_macs(1, 1, 9) == 2 * (4 * 64 * 64 + 2 * 10 * 64 + 8 * 64 * 64) + 64 * 256


def test_resnet_rejects_unknown_depths():
    with pytest.raises(ValueError):
        tm.resnet_model(19)


# --- with attention_mask: the decoder ortel profile --generate runs ---------------------------
LAYERS, HEADS, HD = 2, 4, 16


def empty_cache(batch: int) -> dict[str, np.ndarray]:
    return {
        f"past_key_values.{i}.{k}": np.zeros((batch, HEADS, 0, HD), np.float32)
        for i in range(LAYERS)
        for k in ("key", "value")
    }


@pytest.fixture(scope="module")
def masked_session() -> ort.InferenceSession:
    return ort.InferenceSession(
        tm.gpt_decoder_model(attention_mask=True), providers=["CPUExecutionProvider"]
    )


def test_names_follow_the_optimum_convention(masked_session):
    ins = [i.name for i in masked_session.get_inputs()]
    outs = [o.name for o in masked_session.get_outputs()]
    assert ins[:2] == ["input_ids", "attention_mask"]
    assert "past_key_values.1.value" in ins and "present.1.value" in outs
    assert outs[0] == "logits"


def test_incremental_decoding_with_the_cache_equals_the_full_pass(masked_session):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 96, (2, 12))
    full = masked_session.run(None, {"input_ids": ids, "attention_mask": np.ones((2, 12), np.int64),
                              **empty_cache(2)})[0]  # fmt: skip
    names = [o.name for o in masked_session.get_outputs()]
    first = {"input_ids": ids[:, :8], "attention_mask": np.ones((2, 8), np.int64)}
    out = masked_session.run(None, {**first, **empty_cache(2)})
    logits = [out[0]]
    for t in range(8, 12):
        past = {n.replace("present", "past_key_values"): v for n, v in zip(names[1:], out[1:])}
        mask = np.ones((2, t + 1), np.int64)
        out = masked_session.run(
            None, {"input_ids": ids[:, t : t + 1], "attention_mask": mask, **past}
        )
        assert out[1].shape == (2, HEADS, t + 1, HD)
        logits.append(out[0])
    assert np.abs(np.concatenate(logits, axis=1) - full).max() < 1e-4
    assert full.std() > 0.01  # not a degenerate all-equal output


def test_causal_mask_future_tokens_do_not_change_the_past(masked_session):
    ids = np.arange(10).reshape(1, 10)
    a = masked_session.run(None, {"input_ids": ids, "attention_mask": np.ones((1, 10), np.int64),
                           **empty_cache(1)})[0]  # fmt: skip
    ids2 = ids.copy()
    ids2[0, 7:] = 50
    b = masked_session.run(None, {"input_ids": ids2, "attention_mask": np.ones((1, 10), np.int64),
                           **empty_cache(1)})[0]  # fmt: skip
    assert np.allclose(a[:, :7], b[:, :7], atol=1e-5)
    assert not np.allclose(a[:, 7:], b[:, 7:])


def test_padding_mask_hides_keys(masked_session):
    ids = np.arange(6).reshape(1, 6)
    mask = np.ones((1, 6), np.int64)
    a = masked_session.run(None, {"input_ids": ids, "attention_mask": mask, **empty_cache(1)})[0]
    mask[0, 0] = 0
    b = masked_session.run(None, {"input_ids": ids, "attention_mask": mask, **empty_cache(1)})[0]
    assert not np.allclose(a[:, 1:], b[:, 1:])


def test_deterministic_bytes_and_cli(tmp_path):
    assert tm.gpt_decoder_model(attention_mask=True) == tm.gpt_decoder_model(attention_mask=True)
    assert tm.main([str(tmp_path / "gpt.onnx"), "--layers", "1"]) == 0
    s = ort.InferenceSession(str(tmp_path / "gpt.onnx"))
    assert len(s.get_outputs()) == 3


def test_hidden_must_divide_into_heads():
    with pytest.raises(ValueError):
        tm.gpt_decoder_model(hidden=30, heads=4)
