"""Streaming trace parsing on real ONNX Runtime profiles, and on cut and garbled copies."""

from __future__ import annotations

import io
import json
import statistics

import numpy as np
import pytest
from analysis_fixtures import image, record_trace

from ortel.analysis import testmodels as tm
from ortel.analysis.trace import (
    ScanReport,
    TraceAggregator,
    TraceError,
    iter_events,
    parse_trace,
)
from ortel.instrumentation import models


@pytest.fixture(scope="module")
def cnn_trace(tmp_path_factory):
    out = tmp_path_factory.mktemp("trace")
    return record_trace(models.cnn_model(), image(), out, runs=5)


@pytest.fixture(scope="module")
def cf_trace(tmp_path_factory):
    out = tmp_path_factory.mktemp("cf")
    feeds = {"x": np.ones((1, 16), np.float32), "steps": np.array(4, np.int64)}
    return record_trace(tm.control_flow_model(), feeds, out, runs=3)


def test_streaming_yields_exactly_what_json_load_reads(cnn_trace):
    expected = json.loads(cnn_trace.read_text())
    for chunk in (7, 100, 4096, 1 << 20):  # boundaries inside every token, event and line
        report = ScanReport()
        got = list(iter_events(cnn_trace, report, chunk=chunk))
        assert got == expected
        assert report.events == len(expected) and not report.truncated and not report.garbled


def test_per_node_aggregates_match_the_raw_events(cnn_trace):
    events = json.loads(cnn_trace.read_text())
    s = parse_trace(cnn_trace, warmup_runs=1)
    runs = [e for e in events if e["name"] == "model_run"]
    assert s.runs.count == 4 and len(s.warmup_runs_us) == 1
    assert s.warmup_runs_us[0] == runs[0]["dur"]
    assert s.runs.mean_us == pytest.approx(statistics.mean(r["dur"] for r in runs[1:]))
    assert s.to_json()["runs_us"] == [r["dur"] for r in runs[1:]]  # each run, in order
    # Node events of the measured runs: those after the first model_run event in the file.
    first_run_end = events.index(runs[0])
    measured = [
        e for e in events[first_run_end:] if e["cat"] == "Node" and e["name"].endswith("_time")
    ]
    assert set(s.nodes) == {e["name"][: -len("_kernel_time")] for e in measured}
    for key, st in s.nodes.items():
        durs = [e["dur"] for e in measured if e["name"] == key + "_kernel_time"]
        assert st.count == len(durs) == 4
        assert st.total_us == sum(durs) and st.mean_us == pytest.approx(statistics.mean(durs))
        assert st.quantile_us(0.5) == pytest.approx(np.percentile(durs, 50), rel=0.011)
        assert st.quantile_us(0.9) == pytest.approx(np.percentile(durs, 90), rel=0.011)
        e = next(e for e in measured if e["name"] == key + "_kernel_time")
        assert st.op_type == e["args"]["op_name"] and st.provider == e["args"]["provider"]
    assert s.session["session_initialization_us"] > 0 and "model_loading_us" in s.session


def test_shapes_are_kept_per_node(cnn_trace):
    s = parse_trace(cnn_trace)
    conv = next(st for st in s.nodes.values() if st.op_type == "Conv")
    (ins, outs), n = next(iter(conv.shapes.items()))
    assert n == conv.count and ins[0] == ("float", (1, 3, 64, 64))
    assert outs[0][0] == "float" and len(outs[0][1]) == 4


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.5, 0.77, 0.99])
def test_a_truncated_profile_parses_what_is_there_and_says_so(cnn_trace, tmp_path, fraction):
    raw = cnn_trace.read_bytes()
    cut = tmp_path / "cut.json"
    cut.write_bytes(raw[: int(len(raw) * fraction)])
    complete = json.loads(raw)
    report = ScanReport()
    got = list(iter_events(cut, report))
    assert report.truncated
    assert got == complete[: len(got)]  # a prefix of the real events, none invented
    assert (
        len(got)
        >= sum(
            1 for ln in raw[: int(len(raw) * fraction)].splitlines() if ln.rstrip().endswith(b"},")
        )
        - 1
    )
    if got:
        s = TraceAggregator(1).add_all(got).summary(report, "cut.json")
        assert any("truncated" in w for w in s.warnings)


def test_a_garbled_event_is_skipped_and_counted(cnn_trace, tmp_path):
    lines = cnn_trace.read_text().splitlines()
    i = next(k for k, ln in enumerate(lines) if "_kernel_time" in ln) + 3
    lines[i] = lines[i][:40] + "\x00#garbage{{{" + lines[i][70:]
    bad = tmp_path / "garbled.json"
    bad.write_text("\n".join(lines))
    report = ScanReport()
    got = list(iter_events(bad, report, chunk=512))
    assert report.garbled == 1 and not report.truncated
    assert len(got) == len(json.loads(cnn_trace.read_text())) - 1


def test_chrome_object_form_and_not_a_trace(tmp_path, cnn_trace):
    events = json.loads(cnn_trace.read_text())
    p = tmp_path / "obj.json"
    p.write_text(json.dumps({"traceEvents": events, "displayTimeUnit": "ms"}))
    assert list(iter_events(p)) == events
    for text in ("", "   ", '{"a": 1}', "hello"):
        p.write_text(text)
        with pytest.raises(TraceError):
            parse_trace(p)
    p.write_text("[\n]\n")
    with pytest.raises(TraceError, match="no events"):
        parse_trace(p)


def test_loop_and_if_bodies_nest_under_their_node(cf_trace):
    s = parse_trace(cf_trace, warmup_runs=1)
    fixed = s.nodes["loop_fixed/fixed_body.matmul"]
    assert fixed.parent == "loop_fixed" and s.per_run(fixed) == 3  # constant trip count 3
    assert s.per_run(s.nodes["loop_steps/steps_body.matmul"]) == 4  # steps = 4
    branch = [k for k in s.nodes if k.startswith("branch/")]
    assert branch == ["branch/then.matmul"] or branch == ["branch/else.neg"]
    assert s.nodes["loop_fixed"].parent is None and s.per_run(s.nodes["loop_fixed"]) == 1


def test_a_single_run_is_used_with_a_warning_rather_than_dropped(tmp_path):
    trace = record_trace(
        models.add_model(),
        {"x": np.ones((1, 16), np.float32), "y": np.ones((1, 16), np.float32)},
        tmp_path,
        runs=1,
    )
    s = parse_trace(trace, warmup_runs=1)
    assert s.runs.count == 1 and list(s.nodes) == ["add"]
    assert any("warm-up" in w for w in s.warnings)


def test_progress_is_reported_in_characters_read(cnn_trace):
    seen: list[int] = []
    parse_trace(cnn_trace, progress=seen.append)
    assert seen and seen[-1] == len(cnn_trace.read_text())


def test_file_objects_stream_too(cnn_trace):
    got = list(iter_events(io.BytesIO(cnn_trace.read_bytes())))
    assert got == json.loads(cnn_trace.read_text())
