"""A whole profile run, in-process: sweeps, failures that do not stop the run, Ctrl-C."""

from __future__ import annotations

import _thread
import threading
from pathlib import Path

import numpy as np
import pytest

from ortel.analysis.testmodels import gpt_decoder_model
from ortel.instrumentation.models import add_model, mlp_model
from ortel.profiling.inputs import InputError
from ortel.profiling.profiler import Options, Reporter, profile
from ortel.profiling.runner import Policy
from ortel.profiling.stats import STAT_KEYS

FAST = Policy(min_duration=0.05, min_samples=30, warmup_window=0.01, warmup_max=0.1)
SUMMARY_KEYS = {"load_seconds", "first_inference_seconds", "latency_seconds",
                "throughput_per_second", "samples"}  # fmt: skip


@pytest.fixture
def mlp(tmp_path: Path) -> Path:
    p = tmp_path / "mlp.onnx"
    p.write_bytes(mlp_model())
    return p


def opts(model: Path, **kw) -> Options:
    kw.setdefault("policy", FAST)
    kw.setdefault("power", False)
    kw.setdefault("op_profile_runs", 5)
    kw.setdefault("analyze", False)  # test_profiling_operators covers the ortel analyze hand-off
    return Options(model, **kw)


def test_sweep_of_batch_precision_and_concurrency(mlp: Path, tmp_path: Path):
    res = profile(opts(mlp, batch_sizes=[1, 4], precisions="int8,fp32", concurrency=[1, 2]),
                  tmp_path)  # fmt: skip
    s = res.summary()
    assert len(s["configurations"]) == 8
    assert all(c["status"] == "ok" for c in s["configurations"]), s["configurations"]
    labels = [c["label"] for c in s["configurations"]]
    assert labels[0] == "CPU, fp32, batch 1, concurrency 1"  # fp32 first: the reference
    assert set(s) >= SUMMARY_KEYS and set(s["latency_seconds"]) == set(STAT_KEYS)
    assert s["baseline"] == 0 and s["samples"] >= 30
    for c in s["configurations"]:
        assert set(c) >= SUMMARY_KEYS
        assert set(c["latency_seconds"]) == set(STAT_KEYS)
        assert c["samples"] >= 30 and c["measured_seconds"] >= 0.05
        assert c["items_per_second"] == pytest.approx(c["throughput_per_second"] * c["batch"])
        assert c["shapes"] == {"input": [c["batch"], 64]}
        assert c["load_seconds"] > 0 and c["first_inference_seconds"] > 0
        assert c["warmup"]["inferences"] > 0
        assert c["memory"]["peak_rss_bytes"] > 0
        if c["precision"] == "fp32":
            assert c["accuracy"] is None
        else:
            assert 0.999 < c["accuracy"]["cosine"] <= 1 and c["accuracy"]["max_abs_diff"] > 0
    int8 = [c for c in s["configurations"] if c["precision"] == "int8"]
    assert int8[0]["memory"]["model_weight_bytes"] < s["model"]["weight_bytes"]
    kinds = {r["kind"] for r in s["recommendations"]}
    assert {"batch", "concurrency", "precision"} <= kinds
    assert s["operators"]["runs"] == 5 and s["operators"]["nodes"]
    assert s["memory"]["model_weight_bytes"] == s["model"]["weight_bytes"] > 0
    assert s["power"]["unavailable"] == ["disabled (--no-power)"] and s["energy"] is None
    assert s["model"]["inputs"] == [{"name": "input", "type": "tensor(float)",
                                     "shape": ["batch", 64]}]  # fmt: skip
    assert len(s["model"]["sha256"]) == 64
    assert res.configs[0].phase.samples.size == s["samples"]


def test_a_provider_that_cannot_load_is_reported_not_fatal(mlp: Path, tmp_path: Path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is present: it would load")
    s = profile(opts(mlp, providers="cuda,cpu", op_profile=False), tmp_path).summary()
    cpu, cuda = s["configurations"]
    assert cpu["status"] == "ok" and cuda["status"] == "failed"
    assert cuda["error"] and cuda["samples"] == 0
    assert cuda["latency_seconds"]["p50"] is None  # unknown, not 0
    assert any(r["kind"] == "failed" and "CUDA" in r["text"] for r in s["recommendations"])


def test_a_batch_the_model_cannot_take_fails_alone(tmp_path: Path):
    p = tmp_path / "add.onnx"
    p.write_bytes(add_model())  # fixed [1, 16]
    res = profile(opts(p, batch_sizes=[1, 2], op_profile=False), tmp_path)
    s = res.summary()
    assert [c["status"] for c in s["configurations"]] == ["ok", "failed"]
    assert "fixed batch" in s["configurations"][1]["error"]
    assert any("fixed" in n for n in s["notes"])


def test_power_estimated_from_real_proc(mlp: Path, tmp_path: Path):
    empty = tmp_path / "sys"
    empty.mkdir()
    policy = Policy(min_duration=0.4, min_samples=10, warmup_window=0.01, warmup_max=0.05)
    s = profile(opts(mlp, power=True, sysfs=empty, power_interval=0.05, policy=policy,
                     op_profile=False), tmp_path).summary()  # fmt: skip
    assert s["power"]["source"] == "estimated"
    e = s["energy"]
    assert e["source"] == "estimated" and e["joules"] > 0
    assert e["joules_per_inference"] == pytest.approx(e["joules"] / s["samples"])
    assert e["inferences_per_joule"] == pytest.approx(s["samples"] / e["joules"])
    assert s["power"]["timeline"]
    assert any(r["kind"] == "power" for r in s["recommendations"])


def test_no_power_source_means_no_energy_numbers(mlp: Path, tmp_path: Path):
    s = profile(opts(mlp, power=True, sysfs=tmp_path / "x", procfs=tmp_path / "y",
                     op_profile=False), tmp_path).summary()  # fmt: skip
    assert s["energy"] is None and s["power"]["source"] == "none"
    assert s["power"]["unavailable"]


def test_generation_on_a_decoder(tmp_path: Path):
    p = tmp_path / "gpt.onnx"
    p.write_bytes(gpt_decoder_model(attention_mask=True))
    s = profile(opts(p, generate=4, prompt_len=6, generate_runs=2, op_profile=False,
                     seq_lens=[8]), tmp_path).summary()  # fmt: skip
    g = s["generation"]
    assert g["runs"] == 2 and g["new_tokens"] == 4 and g["prompt_tokens"] == 6
    assert g["time_to_first_token_seconds"]["p50"] > 0
    assert s["configurations"][0]["shapes"]["input_ids"] == [1, 8]
    assert s["configurations"][0]["shapes"]["past_key_values.0.key"] == [1, 4, 0, 16]
    assert any(r["kind"] == "generation" for r in s["recommendations"])


def test_generate_on_a_model_without_cache_fails_before_measuring(mlp: Path, tmp_path: Path):
    with pytest.raises(InputError, match="KV cache"):
        profile(opts(mlp, generate=4), tmp_path)


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"seq_lens": [16]}, "sequence-length"), ({"providers": "nope"}, "unknown provider"),
     ({"precisions": "fp4"}, "unknown precision"), ({"shapes": ["input:1xx"]}, "--shape"),
     ({"batch_sizes": [0]}, ">= 1")],
)  # fmt: skip
def test_bad_input_is_raised_before_measuring(mlp: Path, tmp_path: Path, kw, match):
    with pytest.raises((InputError, ValueError), match=match):
        profile(opts(mlp, **kw), tmp_path)


def test_missing_model(tmp_path: Path):
    with pytest.raises(InputError, match="no such model"):
        profile(opts(tmp_path / "nope.onnx"), tmp_path)


def test_real_inputs_from_a_file(mlp: Path, tmp_path: Path):
    x = np.random.default_rng(0).standard_normal((3, 64)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    s = profile(opts(mlp, inputs=[str(tmp_path / "x.npy")], batch_sizes=[2], op_profile=False),
                tmp_path).summary()  # fmt: skip
    assert s["settings"]["inputs"] == "files"
    assert s["configurations"][0]["shapes"] == {"input": [2, 64]}


class InterruptAt(Reporter):
    """Presses Ctrl-C (interrupts the main thread) shortly after configuration ``n`` starts."""

    def __init__(self, n: int) -> None:
        self.n = n

    def config(self, index: int, label: str) -> None:
        if index == self.n:
            threading.Timer(0.15, _thread.interrupt_main).start()


def test_ctrl_c_keeps_what_was_measured(mlp: Path, tmp_path: Path):
    # Ctrl-C lands 0.15 s into configuration 1, whose measured phase would last 0.6 s.
    policy = Policy(min_duration=0.6, min_samples=10, warmup_window=0.01, warmup_max=0.05)
    res = profile(opts(mlp, batch_sizes=[1, 2, 4], policy=policy), tmp_path, InterruptAt(1))
    s = res.summary()
    assert s["interrupted"]
    assert [c["status"] for c in s["configurations"]] == ["ok", "interrupted", "skipped"]
    assert s["configurations"][1]["samples"] > 0
    assert s["configurations"][2]["error"] == "not run: interrupted"
    assert s["operators"] is None  # the operator pass is not started after Ctrl-C
    assert any(r["kind"] == "run" for r in s["recommendations"])
