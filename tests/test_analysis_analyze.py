"""The whole analysis on real profiles of the test models: MAC counts against hand-computed
values, per-iteration control flow, fused-node provenance; ResNets against published figures."""

from __future__ import annotations

import pytest
from analysis_fixtures import image, record_trace, write

from ortel.analysis import testmodels as tm
from ortel.analysis.analyze import Options, analyze, static_summary
from ortel.analysis.energy import Power
from ortel.analysis.graph import load_model
from ortel.analysis.mapping import compose, map_graphs
from ortel.analysis.profile_run import make_inputs, profile
from ortel.analysis.roofline import Roof
from ortel.analysis.trace import parse_trace
from ortel.instrumentation import models

ROOF = Roof(50e9, 10e9)
POWER = Power(20.0, "given", "test")


def analyse(tmp_path, name: str, model: bytes, shapes=None, level="all"):
    path = write(tmp_path, name, model)
    orig = load_model(path, shapes)
    run = profile(
        path, orig, tmp_path / name, runs=3, min_seconds=0, opt_level=level, measure_power=False
    )
    trace = parse_trace(run.trace_path)
    opt = load_model(run.optimized_path, dict(orig.input_shapes))
    if run.extended_path:
        ext = load_model(run.extended_path, dict(orig.input_shapes))
        mapping = compose(map_graphs(orig.graph, ext.graph), map_graphs(ext.graph, opt.graph, True))
    else:
        mapping = map_graphs(orig.graph, opt.graph)
    return analyze(orig, opt, trace, ROOF, POWER, mapping, Options()), orig


def test_grouped_dilated_cnn_macs(tmp_path):
    a, _ = analyse(tmp_path, "gcnn", tm.grouped_cnn_model(), {"batch": (2,)})
    assert a.summary["total_macs"] == 2 * tm.GROUPED_CNN_MACS
    assert a.summary["original_model"]["total_macs"] == 2 * tm.GROUPED_CNN_MACS
    assert a.summary["unknown_ops"] == [] and not a.summary["totals_partial"]
    # every original node is accounted for by a node that ran
    seen = {f.split(" (")[0] for r in a.rows for f in r.fused_from}
    assert seen == {r.key for r in a.original_rows}


def test_transformer_encoder_macs_and_fusions(tmp_path):
    a, _ = analyse(tmp_path, "enc", tm.transformer_encoder_model(), {"batch": (2,), "seq": (16,)})
    assert a.summary["total_macs"] == tm.encoder_macs(2, 16)
    gelu = next(r for r in a.rows if r.op_type == "BiasGelu")
    assert [f.split(" ")[0] for f in gelu.fused_from][-1] == "ffn.gelu"
    assert gelu.flops == 6 * 2 * 16 * 256 and gelu.macs == 0
    assert set(a.summary["constant_folded_nodes"]) >= {"ffn.up.weight", "ffn.down.bias"}


@pytest.mark.parametrize("seq,past", [(8, 0), (1, 12)])
def test_gpt_decoder_with_kv_cache_macs(tmp_path, seq, past):
    a, _ = analyse(tmp_path, "gpt", tm.gpt_decoder_model(), {"seq": (seq,), "past_seq": (past,)})
    assert a.summary["total_macs"] == tm.decoder_macs(1, seq, past)
    assert a.summary["original_model"]["total_macs"] == tm.decoder_macs(1, seq, past)
    scores = [r for r in a.rows if r.op_type == "FusedMatMul"]
    assert len(scores) == 2 and all(r.macs == 4 * seq * (past + seq) * 16 for r in scores)


def test_control_flow_counted_per_executed_iteration(tmp_path):
    model = tm.control_flow_model()
    a, orig = analyse(tmp_path, "cf", model)
    steps = int(make_inputs(orig)["steps"])  # what the profiled run was fed
    rows = {r.key: r for r in a.rows}
    assert rows["loop_fixed/fixed_body.matmul"].calls_per_run == 3
    assert rows["loop_steps/steps_body.matmul"].calls_per_run == steps
    branch = [k for k in rows if k.startswith("branch/")]
    then = branch == ["branch/then.matmul"]
    expected = 3 * 256 + steps * 256 + (256 if then else 0)
    assert a.summary["total_macs"] == expected
    loop = rows["loop_fixed"]
    assert loop.status == "control_flow" and loop.macs == 0 and loop.bound == "control_flow"
    inner = sum(r.time_us for r in a.rows if r.parent == "loop_fixed")
    assert loop.self_time_us == pytest.approx(max(loop.time_us - inner, 0.0))
    # without a trace, the constant trip count multiplies; the input-driven one is flagged
    flagged = "\n".join(a.summary["original_model"]["flagged"])
    assert "trip count 3 (constant)" in flagged and "trip count unknown" in flagged


def test_dynamic_dims_resolved_by_shape(tmp_path):
    a, _ = analyse(tmp_path, "dyn", tm.dynamic_dims_model(), {"batch": (3,), "seq": (5,)})
    assert a.summary["total_macs"] == 3 * 5 * 32 * 64 + 3 * 64 * 10


def test_rows_join_time_cost_roofline_energy_and_critical_path(tmp_path):
    a, _ = analyse(tmp_path, "cnn", models.cnn_model(), {"batch": (1,)})
    s = a.summary
    assert s["serial_sum_us"] == pytest.approx(sum(r.time_us for r in a.rows if r.parent is None))
    assert s["critical_path_us"] <= s["serial_sum_us"] + 1e-9
    assert s["critical_path"] == [r.key for r in a.rows if r.on_critical_path]
    conv = next(r for r in a.rows if r.key == "bn2.relu_nchwc")
    assert conv.macs == 32 * 32 * 32 * 16 * 9 and conv.bound in ("compute", "memory")
    assert conv.arithmetic_intensity == pytest.approx(conv.flops / conv.bytes_total)
    assert conv.energy_j == pytest.approx(20.0 * conv.self_time_us * 1e-6)
    assert conv.energy_compute_j == pytest.approx(conv.flops * 2.3e-12)
    assert s["energy_per_inference_j"] == pytest.approx(20.0 * s["run_wall_us"] * 1e-6)
    assert s["power"] == {"watts": 20.0, "source": "given", "detail": "test"}
    assert sum(g["time_us"] for g in a.by_op_type) == pytest.approx(s["serial_sum_us"])
    assert s["memcpy_nodes"] == 0 and s["nodes_per_provider"] == {"CPUExecutionProvider": 11}


def test_a_trace_of_another_model_is_named_not_silently_costed(tmp_path):
    trace = record_trace(models.cnn_model(), image(), tmp_path, runs=2)
    other = load_model(write(tmp_path, "mlp", models.mlp_model()))
    a = analyze(other, other, parse_trace(trace), ROOF, POWER)
    assert any("not in the optimized graph" in w for w in a.warnings)
    conv = next(r for r in a.rows if r.op_type == "Conv")
    assert conv.macs is not None  # still costed from the trace's own shapes


def _resnet_static(tmp_path, depth):
    orig = load_model(write(tmp_path, f"r{depth}", tm.resnet_model(depth)))
    rows, s = static_summary(orig)
    bn_stats = sum(
        orig.graph.tensor(n.inputs[3]).numel * 2
        for n in orig.graph.nodes
        if n.op_type == "BatchNormalization"
    )
    return s, bn_stats


def test_resnet18_matches_published_figures(tmp_path):
    s, bn_stats = _resnet_static(tmp_path, 18)
    gmacs, params = tm.RESNET_PUBLISHED[18]
    assert s["total_macs"] / 1e9 == pytest.approx(gmacs, rel=0.01)
    # torchvision counts BN weight and bias, not its running mean and variance
    assert s["total_params"] - bn_stats == params
    assert s["unknown_ops"] == []


@pytest.mark.slow
def test_resnet50_matches_published_figures(tmp_path):
    s, bn_stats = _resnet_static(tmp_path, 50)
    gmacs, params = tm.RESNET_PUBLISHED[50]
    assert s["total_macs"] / 1e9 == pytest.approx(gmacs, rel=0.01)
    assert s["total_params"] - bn_stats == params


@pytest.mark.slow
def test_resnet18_profiled_end_to_end_keeps_its_macs(tmp_path):
    a, _ = analyse(tmp_path, "r18", tm.resnet_model(18))
    assert a.summary["total_macs"] / 1e9 == pytest.approx(1.81, rel=0.01)
    assert a.summary["unknown_ops"] == []
    assert a.offload.eligible > 0 and a.offload.set_speedup_latency > 1.5
    assert len(a.path.path) > 20
