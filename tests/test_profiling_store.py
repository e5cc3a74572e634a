"""The DuckDB results store: save, find, export (CSV/JSON/Parquet) and import across hosts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb
import numpy as np
import pytest

from ortel.analysis.testmodels import gpt_decoder_model
from ortel.profiling.profiler import Options, profile
from ortel.profiling.runner import Policy
from ortel.profiling.store import Store, StoreError, default_path

FAST = Policy(min_duration=0.05, min_samples=30, warmup_window=0.01, warmup_max=0.05)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Two real runs of a decoder (with generation and an operator profile)."""
    d = tmp_path_factory.mktemp("runs")
    model = d / "gpt.onnx"
    model.write_bytes(gpt_decoder_model(layers=1, attention_mask=True))
    out = []
    for label in ("main", "branch"):
        o = Options(
            model,
            batch_sizes=[1, 2],
            seq_lens=[8],
            policy=FAST,
            power=False,
            generate=3,
            prompt_len=4,
            generate_runs=2,
            op_profile_runs=3,
            label=label,
            analyze=False,
        )
        out.append(profile(o, d))  # fmt: skip
    return out


@pytest.fixture
def store(tmp_path: Path, results) -> Store:
    s = Store(tmp_path / "runs.duckdb")
    for r in results:
        s.save(r)
    yield s
    s.close()


def test_saved_runs_read_back_exactly(store: Store, results):
    a, b = results
    rows = store.list()
    assert [r["run_id"] for r in rows] == [b.run_id, a.run_id]  # newest first
    assert rows[0]["label"] == "branch" and rows[0]["model_name"] == "gpt"
    assert rows[0]["configs"] == 2 and rows[0]["p50"] > 0
    s = store.summary(a.run_id)
    assert s == json.loads(json.dumps(a.summary()))
    for c in a.configs:
        got = store.samples(a.run_id, c.config.id)
        assert np.array_equal(got, c.phase.samples)  # raw samples, in order, bit for bit
        assert np.array_equal(store.samples(a.run_id, c.config.id, "warmup"),
                              c.phase.warmup_latencies)  # fmt: skip
    ttft = store.samples(a.run_id, None, "ttft")
    assert np.array_equal(ttft, [r.ttft for r in a.generation.runs])
    assert store.samples(a.run_id, None, "itl").size == 2 * 2
    (c0, c1) = store.configs(a.run_id)
    assert c0["p99"] == s["configurations"][0]["latency_seconds"]["p99"]
    assert c1["batch"] == 2 and c1["status"] == "ok"
    q = store.con.execute("SELECT count(*) FROM operators WHERE run_id = ?", [a.run_id])
    assert q.fetchone()[0] == len(s["operators"]["nodes"]) > 0
    q = store.con.execute("SELECT new_tokens, runs FROM generations WHERE run_id = ?", [a.run_id])
    assert q.fetchone() == (3, 2)
    host = store.con.execute("SELECT host, cores, model_sha256 FROM runs WHERE run_id = ?",
                             [a.run_id]).fetchone()  # fmt: skip
    assert host[0] and host[1] > 0 and len(host[2]) == 64


def test_run_references(store: Store, results):
    a, b = results
    assert store.resolve("latest") == b.run_id
    assert store.resolve("latest~1") == a.run_id
    assert store.resolve("label:main") == a.run_id
    assert store.resolve(a.run_id[:8]) == a.run_id
    assert store.resolve(a.run_id) == a.run_id
    for bad, match in [("latest~2", "2 run"), ("label:none", "no run"), ("abc", "not a run id"),
                       ("ffffffff", "no such run"), ("xyz!", "not a run id")]:  # fmt: skip
        with pytest.raises(StoreError, match=match):
            store.resolve(bad)


def test_a_run_is_stored_once(store: Store, results):
    with pytest.raises(StoreError, match="already stored"):
        store.save(results[0])
    assert store.count() == 2  # the failed save left nothing behind


def test_json_export_round_trips_through_import(store: Store, results, tmp_path: Path):
    a = results[0]
    (path,) = store.export([a.run_id], "json", tmp_path / "export.json")
    with Store(tmp_path / "other.duckdb") as other:
        assert other.import_files([path]) == (1, 0)
        assert other.import_files([path]) == (0, 1)  # idempotent
        assert other.summary(a.run_id) == store.summary(a.run_id)
        assert np.array_equal(other.samples(a.run_id, 0), store.samples(a.run_id, 0))
        assert np.array_equal(other.samples(a.run_id, None, "itl"),
                              store.samples(a.run_id, None, "itl"))  # fmt: skip
        assert other.configs(a.run_id) == store.configs(a.run_id)


def test_parquet_export_directory_imports(store: Store, results, tmp_path: Path):
    paths = store.export([r.run_id for r in results], "parquet", tmp_path / "pq")
    assert {p.name for p in paths} >= {"runs.parquet", "samples.parquet", "configs.parquet"}
    with Store(tmp_path / "other.duckdb") as other:
        assert other.import_files([tmp_path / "pq"]) == (2, 0)
        b = results[1].run_id
        assert other.summary(b) == store.summary(b)
        assert np.array_equal(other.samples(b, 1), store.samples(b, 1))


def test_csv_export_is_one_table_per_file(store: Store, results, tmp_path: Path):
    a = results[0]
    store.export([a.run_id], "csv", tmp_path / "csv")
    with open(tmp_path / "csv" / "configs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and rows[0]["run_id"] == a.run_id
    assert float(rows[0]["p50"]) == pytest.approx(store.configs(a.run_id)[0]["p50"])
    with open(tmp_path / "csv" / "samples.csv", newline="") as f:
        n = sum(1 for r in csv.DictReader(f) if r["kind"] == "latency" and r["config_id"] == "0")
    assert n == store.samples(a.run_id, 0).size
    assert "summary" not in (tmp_path / "csv" / "runs.csv").read_text().splitlines()[0]


def test_another_store_merges_in(store: Store, results, tmp_path: Path):
    store.close()
    with Store(tmp_path / "host2.duckdb") as other:
        assert other.import_files([store.path]) == (2, 0)
        assert other.import_files([store.path]) == (0, 2)
        assert {r["run_id"] for r in other.list()} == {r.run_id for r in results}
    store.con = duckdb.connect(str(store.path))  # for the fixture's close


@pytest.mark.parametrize(
    ("content", "name", "match"),
    [('{"format": "other"}', "x.json", "not an ortel runs export"),
     ("not json", "x.json", "not a readable JSON"),
     ('{"format": "ortel-runs", "version": 99, "runs": []}', "x.json", "newer"),
     ('{"format": "ortel-runs", "version": 1, "runs": [{"summary": {}}]}', "x.json", "malformed"),
     ("garbage", "x.duckdb", "not a results store")],
)  # fmt: skip
def test_bad_imports_are_one_line_errors(tmp_path: Path, content, name, match):
    (tmp_path / name).write_text(content)
    with Store(tmp_path / "s.duckdb") as s, pytest.raises(StoreError, match=match):
        s.import_files([tmp_path / name])


def test_import_missing_and_empty_dir(tmp_path: Path):
    with Store(tmp_path / "s.duckdb") as s:
        with pytest.raises(StoreError, match="no such file"):
            s.import_files([tmp_path / "nope.json"])
        (tmp_path / "d").mkdir()
        with pytest.raises(StoreError, match="runs.parquet"):
            s.import_files([tmp_path / "d"])


def test_a_duckdb_file_that_is_not_a_store(tmp_path: Path):
    con = duckdb.connect(str(tmp_path / "foreign.duckdb"))
    con.execute("CREATE TABLE t (x INTEGER)")
    con.close()
    with Store(tmp_path / "s.duckdb") as s, pytest.raises(StoreError, match="not an ortel"):
        s.import_files([tmp_path / "foreign.duckdb"])
    for read_only in (True, False):  # and writing never adds our tables to it
        with pytest.raises(StoreError, match="not an ortel"):
            Store(tmp_path / "foreign.duckdb", read_only=read_only)
    con = duckdb.connect(str(tmp_path / "foreign.duckdb"))
    assert [t for (t,) in con.execute("SHOW TABLES").fetchall()] == ["t"]


def test_read_only_on_a_missing_store(tmp_path: Path):
    with pytest.raises(StoreError, match="no results store"):
        Store(tmp_path / "none.duckdb", read_only=True)


def test_a_newer_schema_is_refused(tmp_path: Path):
    Store(tmp_path / "s.duckdb").close()
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    for read_only in (True, False):
        with pytest.raises(StoreError, match="newer"):
            Store(tmp_path / "s.duckdb", read_only=read_only)


def test_default_path(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("ORTEL_DB", str(tmp_path / "x.duckdb"))
    assert default_path() == tmp_path / "x.duckdb"
    monkeypatch.delenv("ORTEL_DB")
    assert default_path().name == "runs.duckdb" and "ortel" in str(default_path())


def test_unknown_export_format(store: Store, results, tmp_path: Path):
    with pytest.raises(StoreError, match="unknown export format"):
        store.export([results[0].run_id], "xml", tmp_path / "x")
