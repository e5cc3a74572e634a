"""`ortel profile`, `ortel runs`, `ortel compare`: end to end through the real command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ortel.exporter.cli import main
from ortel.instrumentation.models import add_model, mlp_model

ERROR = "ortel: error: "
QUICK = ["--min-duration", "0.05", "--min-samples", "30", "--warmup-window", "0.01",
         "--warmup-max", "0.05", "--no-power", "--no-analyze", "-q"]  # fmt: skip


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("ORTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))  # never the user's real store


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    return (0 if e.value.code is None else int(e.value.code)), out, err


def one_error(err: str, *fragments: str) -> None:
    assert err.count("\n") == 1 and err.startswith(ERROR), repr(err)
    assert "Traceback" not in err
    for f in fragments:
        assert f in err, err


@pytest.fixture
def models(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, data in (("mlp", mlp_model(hidden=32)), ("big", mlp_model(hidden=1024)),
                       ("add", add_model())):  # fmt: skip
        out[name] = tmp_path / f"{name}.onnx"
        out[name].write_bytes(data)
    return out


def test_profile_writes_reports_and_stores_the_run(models, tmp_path: Path, capsys):
    db, out = tmp_path / "r.duckdb", tmp_path / "out"
    code, stdout, err = run_main(["profile", str(models["mlp"]), "--db", str(db), "--out",
                                  str(out), "--batch-sizes", "1,2", "--label", "ci", *QUICK],
                                 capsys)  # fmt: skip
    assert code == 0, err
    assert "stored as run" in stdout and f"reports in {out}" in stdout
    s = json.loads((out / "summary.json").read_text())
    assert s["label"] == "ci" and len(s["configurations"]) == 2
    assert (out / "report.html").is_file() and (out / "summary.md").is_file()
    assert "batch 2" in stdout  # the summary table
    code, listing, _ = run_main(["runs", "list", "--db", str(db), "--json"], capsys)
    (row,) = [json.loads(x) for x in listing.splitlines()]
    assert code == 0 and row["run_id"] == s["run_id"] and row["label"] == "ci"


def test_environment_variables_work_like_flags(models, tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("ORTEL_PROFILE_BATCH_SIZES", "1,3")
    monkeypatch.setenv("ORTEL_PROFILE_MIN_SAMPLES", "40")
    monkeypatch.setenv("ORTEL_DB", str(tmp_path / "env.duckdb"))
    code, _, err = run_main(["profile", str(models["mlp"]), "--no-op-profile", *QUICK[:2],
                             *QUICK[4:]], capsys)  # fmt: skip
    assert code == 0, err
    code, out, _ = run_main(["runs", "show", "latest", "--json"], capsys)
    s = json.loads(out)
    assert [c["batch"] for c in s["configurations"]] == [1, 3]
    assert s["settings"]["min_samples"] == 40 and s["samples"] >= 40


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["profile", "{tmp}/nope.onnx"], ["no such model file"]),
        (["profile", "{mlp}", "--batch-sizes", "1,x"], ["--batch-sizes", "integers"]),
        (["profile", "{mlp}", "--batch-sizes", "0"], [">= 1"]),
        (["profile", "{mlp}", "--providers", "warp-drive"], ["unknown provider"]),
        (["profile", "{mlp}", "--precision", "fp8"], ["unknown precision"]),
        (["profile", "{mlp}", "--seq-lens", "16"], ["sequence-length"]),
        (["profile", "{mlp}", "--shape", "input:1xQ"], ["--shape"]),
        (["profile", "{mlp}", "--min-samples", "0"], ["min-samples"]),
        (["profile", "{mlp}", "--generate", "8"], ["KV cache"]),
        (["profile", "{mlp}", "--generate", "0"], ["--generate must be >= 1"]),
        (["profile", "{mlp}", "--inputs", "{tmp}/missing.npy"], ["no such file"]),
        (["profile", "{add}", "--db", "{tmp}"], ["--db", "is a directory"]),
        (["profile", "{add}", "--db", "{tmp}/notadb.json"], ["cannot open the results store"]),
        (["runs", "show", "latest", "--db", "{tmp}/none.duckdb"], ["no results store"]),
        (["compare", "latest", "latest", "--db", "{tmp}/none.duckdb"], ["no results store"]),
        (["runs", "import", "{tmp}/nothing.json", "--db", "{tmp}/x.duckdb"], ["no such file"]),
        (["profile", "{mlp}", "--preprocess", "resnet"], ["--preprocess"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(models, tmp_path: Path, capsys, args, fragments):
    argv = [a.format(tmp=tmp_path, mlp=models["mlp"], add=models["add"]) for a in args]
    (tmp_path / "notadb.json").write_text("{}")
    if argv[0] == "profile":  # the fast settings first: the case's own flags override them
        argv = [*argv[:2], *QUICK, *argv[2:]]
    code, out, err = run_main(argv, capsys)
    assert code == 2
    one_error(err, *fragments)


def test_runs_show_export_import(models, tmp_path: Path, capsys):
    db = tmp_path / "a.duckdb"
    for _ in range(2):
        assert run_main(["profile", str(models["mlp"]), "--db", str(db), "--no-op-profile",
                         *QUICK], capsys)[0] == 0  # fmt: skip
    code, md, _ = run_main(["runs", "show", "latest~1", "--db", str(db)], capsys)
    assert code == 0 and md.startswith("# ortel profile: mlp")
    code, _, err = run_main(["runs", "show", "latest", "--db", str(db), "--out",
                             str(tmp_path / "again")], capsys)  # fmt: skip
    assert code == 0 and (tmp_path / "again" / "report.html").is_file()
    code, _, err = run_main(["runs", "export", "--db", str(db), "--out",
                             str(tmp_path / "all.json")], capsys)  # fmt: skip
    assert code == 0 and "exported 2 run(s)" in err
    code, _, err = run_main(["runs", "export", "latest", "--db", str(db), "--format", "parquet",
                             "--out", str(tmp_path / "pq")], capsys)  # fmt: skip
    assert code == 0 and (tmp_path / "pq" / "samples.parquet").is_file()
    code, _, err = run_main(["runs", "export", "latest", "--db", str(db), "--format", "csv",
                             "--out", str(tmp_path / "csv")], capsys)  # fmt: skip
    assert code == 0 and (tmp_path / "csv" / "configs.csv").is_file()
    other = tmp_path / "b.duckdb"
    code, _, err = run_main(["runs", "import", str(tmp_path / "all.json"), str(tmp_path / "pq"),
                             "--db", str(other)], capsys)  # fmt: skip
    assert code == 0 and "imported 2 run(s), 1 already present" in err
    code, table, _ = run_main(["runs", "list", "--db", str(other)], capsys)
    assert code == 0 and "mlp" in table


def test_compare_gate_fails_on_a_real_regression_and_passes_on_none(models, tmp_path, capsys):
    db = str(tmp_path / "c.duckdb")
    quick = ["--min-duration", "0.15", "--min-samples", "100", *QUICK[4:], "--no-op-profile"]
    assert run_main(["profile", str(models["mlp"]), "--db", db, "--label", "main", *quick],
                    capsys)[0] == 0  # fmt: skip
    assert run_main(["profile", str(models["big"]), "--db", db, *quick], capsys)[0] == 0
    code, out, _ = run_main(["compare", "label:main", "latest", "--db", db,
                             "--fail-on-regression", "5%"], capsys)  # fmt: skip
    assert code == 1, out
    assert "REGRESSION" in out and "FAIL" in out
    code, out, _ = run_main(["compare", "label:main", "label:main", "--db", db,
                             "--fail-on-regression", "5%", "--json"], capsys)  # fmt: skip
    assert code == 0
    doc = json.loads(out)
    assert doc["failed"] is False and doc["pairs"][0]["result"]["change"] == 0
    # Without the gate a regression is reported but does not fail.
    code, out, _ = run_main(["compare", "label:main", "latest", "--db", db], capsys)
    assert code == 0 and "REGRESSION" in out
    code, _, err = run_main(["compare", "label:main", "latest", "--db", db,
                             "--fail-on-regression", "lots"], capsys)  # fmt: skip
    assert code == 2
    one_error(err, "percentage")


def test_compare_runs_without_common_configurations(models, tmp_path, capsys):
    db = str(tmp_path / "d.duckdb")
    run_main(["profile", str(models["mlp"]), "--db", db, "--batch-sizes", "2", *QUICK], capsys)
    run_main(["profile", str(models["mlp"]), "--db", db, "--batch-sizes", "4", *QUICK], capsys)
    code, _, err = run_main(["compare", "latest~1", "latest", "--db", db], capsys)
    assert code == 2
    one_error(err, "no configuration in common")


def test_help_lists_commands_and_environment_variables(capsys):
    code, out, _ = run_main(["--help"], capsys)
    assert code == 0 and all(c in out for c in ("profile", "runs", "compare"))
    code, out, _ = run_main(["profile", "--help"], capsys)
    assert code == 0
    for env in ("ORTEL_PROFILE_BATCH_SIZES", "ORTEL_PROFILE_MIN_DURATION", "ORTEL_DB",
                "ORTEL_PROFILE_PROVIDERS"):  # fmt: skip
        assert env in out


@pytest.mark.slow
def test_ctrl_c_writes_and_stores_what_was_measured(models, tmp_path: Path):
    db, out = tmp_path / "i.duckdb", tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ortel.exporter", "profile", str(models["mlp"]), "--db", str(db),
         "--out", str(out), "--batch-sizes", "1,2,4", "--min-duration", "30", "--warmup-max",
         "0.2", "--no-power", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(4)  # interpreter start, imports, session load, warm-up: then measuring
    proc.send_signal(signal.SIGINT)
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    s = json.loads((out / "summary.json").read_text())
    assert s["interrupted"] is True
    assert s["configurations"][0]["status"] == "interrupted"
    assert s["configurations"][0]["samples"] > 0
    assert [c["status"] for c in s["configurations"][1:]] == ["skipped", "skipped"]
    assert "stored as run" in stdout
