"""Live operator sampling in the shim, with real ONNX Runtime sessions."""

from __future__ import annotations

import logging
import time

import numpy as np
import onnxruntime as ort
import pytest
from analysis_fixtures import record_trace
from helpers import as_dict

from ortel.analysis import testmodels as tm
from ortel.core import catalog as c
from ortel.instrumentation import models, opsampling
from ortel.instrumentation.multiproc import SnapshotWriter
from ortel.instrumentation.recorder import Recorder
from ortel.instrumentation.session import instrument_session, uninstrument_session

CPU = "CPUExecutionProvider"
FEEDS = {"image": np.random.default_rng(0).standard_normal((1, 3, 64, 64), np.float32)}


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(opsampling.ENV, raising=False)


def session():
    return ort.InferenceSession(models.cnn_model(), providers=[CPU])


def run_until(sess, n_samples, timeout=20.0, ort_values=False):
    sampler = sess._ortel_op_sampler
    deadline = time.monotonic() + timeout
    feeds = (
        {k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in FEEDS.items()} if ort_values else FEEDS
    )
    while sampler.samples < n_samples and time.monotonic() < deadline:
        (sess.run_with_ort_values if ort_values else sess.run)(None, feeds)
    sampler.wait_idle(10)
    return sampler


def test_interval_from_env(monkeypatch, caplog):
    assert opsampling.interval_from_env() is None
    for raw, want in (("2.5", 2.5), ("0", None), ("-1", None), (" ", None)):
        monkeypatch.setenv(opsampling.ENV, raw)
        assert opsampling.interval_from_env() == want
    monkeypatch.setenv(opsampling.ENV, "often")
    with caplog.at_level(logging.WARNING):
        assert opsampling.interval_from_env() is None
    assert "not a number" in caplog.text


def test_off_by_default_the_hot_path_is_untouched():
    s = instrument_session(session(), "cnn", recorder=Recorder())
    s.run(None, FEEDS)  # past the cold call: the steady wrapper is in place
    assert "_ortel_op_sampler" not in vars(s)
    assert s.run.__qualname__ == "run.<locals>.run"


def test_sampled_inferences_become_operator_metrics():
    rec = Recorder()
    s = instrument_session(session(), "cnn", recorder=rec, op_sample_seconds=0.05)
    sampler = run_until(s, 2)
    assert sampler.samples >= 2 and sampler.errors == 0
    got = as_dict(rec.readings())
    n = sampler.samples
    conv = got[(c.OPERATOR_DURATION.name, ("cnn", "Conv", CPU))]
    assert conv.count == 5 * n and conv.sum > 0  # five convolutions per inference
    shares = {k[1][1]: v for k, v in got.items() if k[0] == c.OPERATOR_SHARE.name}
    # Each type's share of the summed operator time (which type is largest is timing, and on
    # a loaded machine a two-sample profile can put a small op on top).
    spent = {k[1][1]: v.sum for k, v in got.items() if k[0] == c.OPERATOR_DURATION.name}
    assert set(shares) == set(spent) and "Conv" in shares
    assert sum(shares.values()) == pytest.approx(1.0)
    for op, share in shares.items():
        assert share == pytest.approx(spent[op] / sum(spent.values()), rel=1e-9)
    assert got[(c.OPERATOR_SAMPLES.name, ("cnn",))] == n
    assert got[(c.GRAPH_NODES.name, ("cnn", CPU))] == 11
    assert got[(c.GRAPH_MEMCPY_NODES.name, ("cnn",))] == 0
    # the inference metrics are still there, untouched by the sampling
    assert got[(c.INFERENCES.name, ("cnn", CPU, "ok"))] > n
    uninstrument_session(s)
    assert not sampler._thread.is_alive()


def test_run_with_ort_values_is_sampled_too():
    rec = Recorder()
    s = instrument_session(session(), "cnn", recorder=rec, op_sample_seconds=0.05)
    assert run_until(s, 1, ort_values=True).samples >= 1
    uninstrument_session(s)


def test_env_var_turns_it_on(monkeypatch):
    monkeypatch.setenv(opsampling.ENV, "0.05")
    s = instrument_session(session(), "cnn", recorder=Recorder())
    assert run_until(s, 1).samples >= 1
    uninstrument_session(s)


def test_a_failing_sample_never_breaks_inference(caplog):
    rec = Recorder()
    s = instrument_session(session(), "cnn", recorder=rec, op_sample_seconds=0.05)
    sampler = s._ortel_op_sampler
    sampler._source = b"not a model"
    deadline = time.monotonic() + 10
    with caplog.at_level(logging.WARNING):
        while sampler.errors < 2 and time.monotonic() < deadline:
            assert s.run(None, FEEDS)[0].shape == (1, 10)
    assert sampler.errors >= 2 and sampler.samples == 0
    assert caplog.text.count("operator sampling failed") == 1  # logged once
    assert not any(k[0] == c.OPERATOR_SAMPLES.name for k in as_dict(rec.readings()))
    uninstrument_session(s)


def test_subgraph_nodes_count_once_per_iteration(tmp_path):
    feeds = {"x": np.ones((1, 16), np.float32), "steps": np.array(5, np.int64)}
    trace = record_trace(tm.control_flow_model(), feeds, tmp_path, runs=2)
    smp = opsampling.sample_from_profile(trace)
    matmuls = [op for op in smp.ops if op[0] == "MatMul"]
    then = any(op[0] == "MatMul" for op in smp.ops[-3:])  # the If's branch
    assert len(matmuls) == 3 + 5 + (1 if then else 0)
    assert smp.memcpy == 0 and sum(smp.nodes.values()) > 0


def test_the_daemon_merges_operator_metrics_from_snapshots(tmp_path):
    from pathlib import Path

    from ortel.collectors.inference import InferenceCollector

    snaps = tmp_path / "snaps"
    for i in range(2):  # two processes' snapshots (pids that no longer run: compacted, kept)
        rec = Recorder()
        s = instrument_session(session(), "cnn", recorder=rec, op_sample_seconds=0.05)
        run_until(s, 1)
        own = tmp_path / f"p{i}"
        SnapshotWriter(own)(rec)
        uninstrument_session(s)
        (snap,) = own.glob("ortel-*.snap")
        snaps.mkdir(exist_ok=True)
        snap.rename(snaps / f"ortel-{999_000 + i}-0.snap")
    tmp_path = snaps
    got = as_dict(InferenceCollector(tmp_path, Path("/proc")).collect())
    assert got[(c.OPERATOR_SAMPLES.name, ("cnn",))] >= 2
    assert got[(c.OPERATOR_DURATION.name, ("cnn", "Conv", CPU))].count >= 10
