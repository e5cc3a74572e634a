"""The regression gate: fails on a real slow-down, passes on noise and on no change."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from ortel.instrumentation.models import mlp_model
from ortel.profiling.compare import compare_runs, judge, parse_threshold
from ortel.profiling.profiler import Options, profile
from ortel.profiling.runner import Policy, run
from ortel.profiling.store import Store


def lognormal(seed: int, n: int, median: float = 1e-3, sigma: float = 0.25) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(np.log(median), sigma, n)


@pytest.mark.parametrize("seed", range(10))
def test_same_distribution_is_no_regression(seed):
    v = judge(lognormal(seed, 3000), lognormal(seed + 100, 3000), "p50", threshold=0.05)
    assert not v.regression
    assert abs(v.change.point) < 0.05


def test_ten_percent_slower_is_a_regression():
    v = judge(lognormal(1, 3000), lognormal(2, 3000, median=1.1e-3), "p50", threshold=0.05)
    assert v.regression and v.significant and v.word == "REGRESSION"
    assert v.change.low > 0.05 * 0.5 and 0.05 < v.change.point < 0.15
    assert v.mwu.p_value < 1e-10 and v.mwu.prob_b_greater > 0.55


def test_a_real_but_small_slowdown_is_below_the_threshold():
    v = judge(lognormal(1, 20000), lognormal(2, 20000, median=1.02e-3), "p50", threshold=0.05)
    assert v.significant and not v.regression and v.word == "slower"


def test_a_large_point_change_on_a_handful_of_noisy_samples_is_not_significant():
    a, b = lognormal(1, 8, sigma=0.6), lognormal(2, 8, median=1.15e-3, sigma=0.6)
    v = judge(a, b, "p50", threshold=0.05)
    assert not v.significant and not v.regression and v.word == "no significant change"


def test_faster_is_an_improvement():
    v = judge(lognormal(1, 3000), lognormal(2, 3000, median=0.8e-3), "p50", threshold=0.05)
    assert v.improvement and not v.regression and v.word == "faster"


def test_tail_regression_with_the_median_unchanged():
    """A slower p99 shows up when p99 is the gated statistic, though the median is the same."""
    rng = np.random.default_rng(5)
    a = lognormal(1, 20000)
    b = lognormal(2, 20000)
    slow = rng.random(b.size) < 0.03
    b[slow] *= 3  # 3% of requests three times slower
    assert not judge(a, b, "p50", threshold=0.05).regression
    v = judge(a, b, "p99", threshold=0.05)
    assert v.regression and v.change.point > 0.5


def test_bad_arguments():
    with pytest.raises(ValueError):
        judge([1.0, 2.0], [1.0, 2.0], "p42")
    with pytest.raises(ValueError):
        judge([1.0], [1.0, 2.0])


@pytest.mark.parametrize(("text", "value"), [("5%", 0.05), ("0.05", 0.05), (" 12.5% ", 0.125)])
def test_parse_threshold(text, value):
    assert parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["five", "-5%", "%", "5000%"])
def test_parse_threshold_rejects(text):
    with pytest.raises(ValueError):
        parse_threshold(text)


# --- real measurements with an injected slow-down ------------------------------------------


def interleaved(fn_a, fn_b, blocks: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Measure A and B in alternating short blocks, so both see the same machine load (other
    processes come and go on a shared CI runner); each block warms up like a real run."""
    p = Policy(min_duration=0.08, min_samples=40, warmup_window=0.01, warmup_max=0.03)
    a, b = [], []
    for _ in range(blocks):
        a.append(run(fn_a, p).samples)
        b.append(run(fn_b, p).samples)
    return np.concatenate(a), np.concatenate(b)


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    return ort.InferenceSession(mlp_model(), providers=["CPUExecutionProvider"])


def inference(session, extra: float):
    """One real inference plus ``extra`` seconds of injected delay (time.sleep releases the CPU,
    so the delay is the same whatever else the machine is doing)."""
    feed = {"input": np.ones((1, 64), np.float32)}

    def fn() -> None:
        session.run(None, feed)
        time.sleep(extra)

    return fn


@pytest.mark.slow
def test_gate_passes_an_unchanged_model_and_fails_an_injected_slowdown(session):
    base = inference(session, 0.002)
    a, b = interleaved(base, inference(session, 0.002))
    same = judge(a, b, "p50", threshold=0.05)
    assert not same.regression, same
    a, b = interleaved(base, inference(session, 0.003))  # +1 ms on ~2.1 ms: about +45%
    slower = judge(a, b, "p50", threshold=0.05)
    assert slower.regression, slower
    assert slower.change.point > 0.2


# --- stored runs -------------------------------------------------------------------------------


def test_compare_stored_runs_matches_configurations(tmp_path: Path):
    fast = tmp_path / "mlp.onnx"
    fast.write_bytes(mlp_model(hidden=32))
    slow = tmp_path / "mlp_big.onnx"
    slow.write_bytes(mlp_model(hidden=1024))  # a real regression: 30x the arithmetic
    p = Policy(min_duration=0.15, min_samples=100, warmup_window=0.01, warmup_max=0.05)
    with Store(tmp_path / "s.duckdb") as store:
        ids = []
        for model, batches in ((fast, [1, 2]), (slow, [1, 4])):
            o = Options(model, batch_sizes=batches, policy=p, power=False, op_profile=False)
            ids.append(store.save(profile(o, tmp_path)))
        cmp = compare_runs(store, ids[0], ids[1], "p50", 0.05)
        same = compare_runs(store, ids[0], ids[0], "p50", 0.05)
    (pair,) = cmp.pairs  # batch 1 is the only configuration both runs have
    assert pair.label == "CPU, fp32, batch 1, concurrency 1"
    assert cmp.only_a == ["CPU, fp32, batch 2, concurrency 1"]
    assert cmp.only_b == ["CPU, fp32, batch 4, concurrency 1"]
    assert any("different model files" in n for n in cmp.notes)
    assert pair.verdict.regression and cmp.failed
    assert cmp.to_json()["pairs"][0]["result"]["verdict"] == "REGRESSION"
    assert not same.failed and same.pairs[0].verdict.change.point == 0
