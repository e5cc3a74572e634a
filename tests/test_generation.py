"""track_generation: TTFT / inter-token histograms and token counters, merged like the rest."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from harness import promtool_check_metrics
from helpers import as_dict
from prometheus_client import generate_latest

from ortel.collectors.multiproc_reader import MultiprocReader
from ortel.core import catalog as c
from ortel.core import snapshot
from ortel.core.multiproc_files import snapshot_name
from ortel.core.state import merge_all, readings
from ortel.instrumentation import track_generation
from ortel.instrumentation.recorder import Recorder
from ortel.instrumentation.server import make_registry

ML = ("llm", "cpu")


def generate(rec: Recorder, tokens: int, step: float, prefill: float, prompt: int = 7) -> None:
    with track_generation(model="llm", provider="cpu", prompt_tokens=prompt, recorder=rec) as g:
        time.sleep(prefill)
        for _ in range(tokens):
            g.token()
            time.sleep(step)


def test_first_token_and_inter_token_times_land_in_their_histograms():
    rec = Recorder()
    generate(rec, tokens=5, step=0.012, prefill=0.03)
    got = as_dict(rec.readings())
    ttft = got[(c.TIME_TO_FIRST_TOKEN.name, ML)]
    itl = got[(c.INTER_TOKEN_LATENCY.name, ML)]
    assert ttft.count == 1 and ttft.bounds == c.TTFT_BUCKETS
    assert 0.03 <= ttft.sum < 0.5
    # 0.03 s is above the 0.02 bucket and, unless the machine stalls, inside 0.04.
    assert sum(ttft.counts[: c.TTFT_BUCKETS.index(0.02) + 1]) == 0
    assert itl.count == 4 and itl.bounds == c.TPOT_BUCKETS  # 5 tokens: 4 gaps
    assert itl.sum >= 4 * 0.012
    assert sum(itl.counts[: c.TPOT_BUCKETS.index(0.01) + 1]) == 0
    assert got[(c.GENERATED_TOKENS.name, ML)] == 5
    assert got[(c.PROMPT_TOKENS.name, ML)] == 7


def test_generation_only_series_has_no_all_zero_inference_series():
    rec = Recorder()
    generate(rec, tokens=2, step=0, prefill=0)
    names = {r.metric.name for r in rec.readings()}
    assert c.TIME_TO_FIRST_TOKEN.name in names
    assert c.INFERENCES.name not in names and c.INFERENCE_DURATION.name not in names


def test_inference_series_without_generations_is_unchanged():
    rec = Recorder()
    s = rec.series("llm", "cpu")
    s.ok.append(1000)
    names = {r.metric.name for r in rec.readings()}
    assert c.INFERENCES.name in names
    assert c.TIME_TO_FIRST_TOKEN.name not in names
    assert rec.states()[0].generation is None  # no generation state until one is tracked


def test_both_apis_on_one_model_report_both():
    rec = Recorder()
    rec.series("llm", "cpu").ok.append(2000)
    generate(rec, tokens=3, step=0, prefill=0)
    got = as_dict(rec.readings())
    assert got[(c.INFERENCES.name, ML + ("ok",))] == 1
    assert got[(c.GENERATED_TOKENS.name, ML)] == 3


def test_batched_step_counts_tokens_once_per_step_for_latency():
    rec = Recorder()
    with track_generation(model="llm", provider="cpu", recorder=rec) as g:
        g.token(count=4)
        g.token(count=4)
        g.prompt_tokens = 40
    got = as_dict(rec.readings())
    assert got[(c.GENERATED_TOKENS.name, ML)] == 8
    assert got[(c.PROMPT_TOKENS.name, ML)] == 40
    assert got[(c.INTER_TOKEN_LATENCY.name, ML)].count == 1


def test_tokens_before_an_exception_are_counted_and_the_error_propagates():
    rec = Recorder()
    with pytest.raises(RuntimeError), track_generation(model="llm", recorder=rec) as g:
        g.token()
        g.token()
        raise RuntimeError("client went away")
    got = as_dict(rec.readings())
    assert got[(c.GENERATED_TOKENS.name, ("llm", "unknown"))] == 2


def test_no_token_means_no_first_token_time():
    rec = Recorder()
    with track_generation(model="llm", provider="cpu", prompt_tokens=3, recorder=rec):
        pass
    got = as_dict(rec.readings())
    assert got[(c.TIME_TO_FIRST_TOKEN.name, ML)].count == 0
    assert got[(c.PROMPT_TOKENS.name, ML)] == 3


async def _agen(rec: Recorder) -> None:
    async with track_generation(model="llm", provider="cpu", recorder=rec) as g:
        g.token()


def test_async_with():
    import asyncio

    rec = Recorder()
    asyncio.run(_agen(rec))
    assert as_dict(rec.readings())[(c.GENERATED_TOKENS.name, ML)] == 1


def test_state_round_trips_and_merges_exactly():
    a, b = Recorder(), Recorder()
    generate(a, tokens=4, step=0, prefill=0, prompt=10)
    generate(b, tokens=6, step=0, prefill=0, prompt=20)
    sa, sb = a.states()[0], b.states()[0]
    assert snapshot.decode(snapshot.encode(snapshot.Snapshot([sa]))).series == [sa]
    merged = merge_all([[sa], [sb]])[ML]
    g = merged.generation
    assert g.generated_tokens == 10 and g.prompt_tokens == 30
    assert g.ttft.count == 2 and g.itl.count == 3 + 5
    assert g.ttft.sum_ns == sa.generation.ttft.sum_ns + sb.generation.ttft.sum_ns


def test_snapshot_without_generation_merges_with_one_that_has_it():
    old = Recorder()
    old.series("llm", "cpu").ok.append(5000)
    new = Recorder()
    generate(new, tokens=2, step=0, prefill=0)
    (back,) = snapshot.decode(snapshot.encode(snapshot.Snapshot(old.states()))).series
    assert back.generation is None
    merged = merge_all([[back], new.states()])[ML]
    assert merged.ok.count == 1 and merged.generation.generated_tokens == 2


@pytest.mark.parametrize(
    "bad",
    [
        [],
        {"ttft": [[0], 0, 0]},
        {
            "ttft": [[0] * (len(c.TTFT_BUCKETS) + 1), 0, 0],
            "itl": [[0] * (len(c.TPOT_BUCKETS) + 1), 0, 0],
            "tokens": [-1, 0],
        },
    ],
)
def test_malformed_generation_state_is_rejected(bad):
    rec = Recorder()
    generate(rec, tokens=1, step=0, prefill=0)
    data = snapshot.encode(snapshot.Snapshot(rec.states()))
    good = json.dumps(snapshot._generation_out(rec.states()[0].generation), separators=(",", ":"))
    bad_json = json.dumps(bad, separators=(",", ":"))
    # Same-length edit of the metadata keeps the array section where it is.
    assert good.encode() in data and len(bad_json) <= len(good)
    corrupt = data.replace(good.encode(), bad_json.ljust(len(good)).encode())
    with pytest.raises(snapshot.SnapshotError):
        snapshot.decode(corrupt)


def test_daemon_merges_generations_of_two_processes(tmp_path: Path):
    """Through the daemon's own reader: two live processes' snapshots (fake /proc entries)."""
    mdir, proc = tmp_path / "mp", tmp_path / "proc"
    mdir.mkdir()
    for pid, tokens in ((101, 3), (102, 5)):
        rec = Recorder()
        generate(rec, tokens=tokens, step=0, prefill=0, prompt=4)
        (proc / str(pid)).mkdir(parents=True)
        fields = ["S"] + ["0"] * 18 + ["55"] + ["0"] * 30
        (proc / str(pid) / "stat").write_text(f"{pid} (python3) " + " ".join(fields) + "\n")
        snap = snapshot.Snapshot(rec.states(), pid=pid, start=55, written=time.time())
        snapshot.write(mdir / snapshot_name(pid, 55), snap)
    merged = MultiprocReader(mdir, proc).read().series
    got = as_dict(readings(merged.values(), time.time()))
    assert got[(c.GENERATED_TOKENS.name, ML)] == 8
    assert got[(c.PROMPT_TOKENS.name, ML)] == 8
    assert got[(c.TIME_TO_FIRST_TOKEN.name, ML)].count == 2
    assert got[(c.INTER_TOKEN_LATENCY.name, ML)].count == 2 + 4


def test_exposition_is_promtool_clean():
    rec = Recorder()
    generate(rec, tokens=3, step=0.001, prefill=0.002)
    body = generate_latest(make_registry(rec)).decode()
    assert "ortel_time_to_first_token_seconds_bucket" in body
    assert 'ortel_inter_token_latency_seconds_bucket{le="0.01",model="llm",provider="cpu"}' in body
    assert "ortel_generated_tokens_total" in body
    res = promtool_check_metrics(body)
    assert res.returncode == 0, res.stderr + res.stdout
    assert res.stderr.strip() == "", res.stderr


def test_fork_reset_clears_generation_buffers():
    rec = Recorder()
    s = rec.series("llm", "cpu")
    s.ttft.append(1), s.itl.append(1), s.tokens.append((1, 1))
    rec.reset()
    assert len(s.ttft) == len(s.itl) == 0 and s.tokens == []
