"""LLM generation: KV-cache detection by naming convention, prefill and decode timing."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from ortel.analysis.testmodels import gpt_decoder_model
from ortel.instrumentation.models import mlp_model
from ortel.profiling import generate as gen
from ortel.profiling.inputs import InputError, InputSpec, ShapeOverrides


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    return ort.InferenceSession(
        gpt_decoder_model(attention_mask=True), providers=["CPUExecutionProvider"]
    )


def layout_of(s) -> gen.KvLayout:
    return gen.detect([InputSpec.of(i) for i in s.get_inputs()], [o.name for o in s.get_outputs()])


def test_detects_the_optimum_layout(session):
    lay = layout_of(session)
    assert lay.input_ids == "input_ids" and lay.attention_mask == "attention_mask"
    assert lay.position_ids is None and lay.logits == "logits"
    assert ("past_key_values.0.key", "present.0.key") in lay.pairs
    assert len(lay.pairs) == 4


@pytest.mark.parametrize(
    ("past", "present"),
    [("past.0", "present.0"), ("past_key.3", "present_key.3"),
     ("past_key_values.2.value", "present_key_values.2.value")],
)  # fmt: skip
def test_other_naming_conventions(past, present):
    specs = [
        InputSpec("input_ids", "tensor(int64)", ("b", "s")),
        InputSpec("position_ids", "tensor(int64)", ("b", "s")),
        InputSpec(past, "tensor(float)", (2, "b", 4, "past_seq", 8)),
    ]
    lay = gen.detect(specs, ["logits", present])
    assert lay.pairs == ((past, present),) and lay.position_ids == "position_ids"
    p = gen.empty_past(specs[2], 3, ShapeOverrides())
    assert p.shape == (2, 3, 4, 0, 8)


def test_not_a_decoder():
    s = ort.InferenceSession(mlp_model())
    with pytest.raises(InputError, match="KV cache"):
        layout_of(s)


def test_inputs_it_cannot_feed_are_named():
    specs = [
        InputSpec("input_ids", "tensor(int64)", ("b", "s")),
        InputSpec("pixel_values", "tensor(float)", ("b", 3, 8, 8)),
        InputSpec("past.0", "tensor(float)", ("b", 4, "past", 8)),
    ]
    with pytest.raises(InputError, match="pixel_values"):
        gen.detect(specs, ["logits", "present.0"])


def test_dynamic_head_dim_needs_a_shape():
    spec = InputSpec("past.0", "tensor(float)", ("batch", "heads", "past", 8))
    with pytest.raises(InputError, match="--shape heads=N"):
        gen.empty_past(spec, 1, ShapeOverrides())
    assert gen.empty_past(spec, 1, ShapeOverrides(dims={"heads": 2})).shape == (1, 2, 0, 8)


def test_one_generation(session):
    lay = layout_of(session)
    prompt = np.arange(10).reshape(1, 10)
    r = gen.generate_once(session, lay, prompt, 6, ShapeOverrides())
    assert len(r.steps) == 5 and r.tokens == 6
    assert r.ttft > 0 and all(s > 0 for s in r.steps)
    # 2 layers x (key, value) x batch 1 x 4 heads x (10 + 5 cached tokens) x 16 x 4 bytes
    assert r.kv_cache_bytes == 2 * 2 * 4 * 15 * 16 * 4


def test_greedy_tokens_match_a_full_recompute(session):
    """The decode loop feeds presents back correctly: same tokens as recomputing from scratch."""
    lay = layout_of(session)
    prompt = np.array([[5, 17, 3, 42]])
    names = [o.name for o in session.get_outputs()]

    def full(ids):
        feed = {"input_ids": ids, "attention_mask": np.ones(ids.shape, np.int64)}
        feed |= {p: np.zeros((1, 4, 0, 16), np.float32) for p, _ in lay.pairs}
        return session.run(names[:1], feed)[0][:, -1].argmax(-1)

    ids = prompt
    for _ in range(5):
        ids = np.concatenate([ids, full(ids)[:, None]], axis=1)
    recorded = []

    class Spy:
        def run(self, names_, feed):
            out = session.run(names_, feed)
            recorded.append(out[0][:, -1].argmax(-1)[0])
            return out

    gen.generate_once(Spy(), lay, prompt, 5, ShapeOverrides())
    assert recorded == ids[0, 4:].tolist()


def test_run_generation_summary(session):
    lay = layout_of(session)
    steps = []
    res = gen.run_generation(session, lay, prompt_tokens=8, new_tokens=5, runs=3, batch=2,
                             progress=lambda i, n: steps.append((i, n)))  # fmt: skip
    assert steps == [(1, 3), (2, 3), (3, 3)]
    s = res.summary()
    assert s["runs"] == 3 and s["batch"] == 2 and s["cold_time_to_first_token_seconds"] > 0
    assert s["inter_token_latency_seconds"]["p50"] > 0
    assert s["kv_cache_bytes"] == 2 * 2 * 2 * 4 * 12 * 16 * 4
    assert s["kv_cache_bytes_per_token"] == 2 * 2 * 4 * 16 * 4
    decode = sum(sum(r.steps) for r in res.runs)
    assert s["decode_tokens_per_second"] == pytest.approx(2 * 3 * 4 / decode)
    assert s["joules_per_token"] is None and s["energy"] is None  # no power data: unknown
    assert res.ended >= res.started > 0


def test_one_token_has_no_inter_token_latency(session):
    res = gen.run_generation(session, layout_of(session), prompt_tokens=4, new_tokens=1, runs=2)
    s = res.summary()
    assert s["inter_token_latency_seconds"]["p50"] is None
    assert s["time_to_first_token_seconds"]["p50"] > 0


def test_bad_counts(session):
    with pytest.raises(InputError):
        gen.run_generation(session, layout_of(session), prompt_tokens=0, new_tokens=3, runs=1)


def test_the_analysis_packages_decoder_generates_too():
    """ortel.analysis.testmodels' decoder (no attention_mask input) follows the same naming."""
    tm = pytest.importorskip("ortel.analysis.testmodels")
    s = ort.InferenceSession(tm.gpt_decoder_model(layers=1), providers=["CPUExecutionProvider"])
    lay = layout_of(s)
    assert lay.attention_mask is None and len(lay.pairs) == 2
    res = gen.run_generation(s, lay, prompt_tokens=5, new_tokens=4, runs=2, vocab_high=256)
    summary = res.summary()
    assert summary["runs"] == 2 and summary["kv_cache_bytes"] > 0
    assert len(res.runs[0].steps) == 3
