"""InferenceCollector: the host's inference metrics, merged from instrumented processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import as_dict

from ortel.collectors.base import NoDataError
from ortel.collectors.inference import InferenceCollector
from ortel.core import catalog as c
from ortel.core.cardinality import DEFAULT_LIMITS
from ortel.core.multiproc_files import ENV

HAS_PROC = Path("/proc/self/stat").exists()

WORKER = """
from ortel.instrumentation import profiled, track

@profiled("e2e", provider="cpu", sla_seconds=60.0)
def infer(x):
    return x * 2

for i in range({tracked}):
    with track("e2e", provider="cpu", items=4):
        pass
for i in range({profiled}):
    infer(i)
"""


def run_worker(directory: Path, tracked: int, profiled: int) -> None:
    """A short-lived instrumented process; it writes its last snapshot at exit."""
    code = textwrap.dedent(WORKER.format(tracked=tracked, profiled=profiled))
    subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, ENV: str(directory)},
        timeout=60,
        check=True,
    )


def test_no_directory_is_no_data():
    with pytest.raises(NoDataError):
        list(InferenceCollector(None).collect())


def test_missing_directory_is_no_data(tmp_path):
    with pytest.raises(NoDataError):
        list(InferenceCollector(tmp_path / "absent").collect())


def test_an_empty_directory_reports_only_the_bookkeeping(tmp_path):
    got = as_dict(InferenceCollector(tmp_path).collect())
    assert got == {
        (c.MULTIPROC_PROCESSES.name, ("live",)): 0.0,
        (c.MULTIPROC_PROCESSES.name, ("exited",)): 0.0,
        (c.MULTIPROC_BAD_FILES.name, ()): 0.0,
        **{(c.LABEL_VALUES_DROPPED.name, (label,)): 0.0 for label in DEFAULT_LIMITS},
    }


def test_bad_files_are_counted(tmp_path):
    (tmp_path / "ortel-1-1.snap").write_text("{")
    col = InferenceCollector(tmp_path)
    for _ in range(2):
        assert as_dict(col.collect())[(c.MULTIPROC_BAD_FILES.name, ())] == 1.0


@pytest.mark.skipif(not HAS_PROC, reason="liveness comes from /proc")
def test_an_exited_worker_is_counted_exactly_and_kept_after_compaction(tmp_path):
    run_worker(tmp_path, tracked=3, profiled=2)
    assert [p.name for p in tmp_path.glob("ortel-*.snap")] != []

    col = InferenceCollector(tmp_path, Path("/proc"))
    for _ in range(3):
        got = as_dict(col.collect())
        assert got[(c.INFERENCES.name, ("e2e", "cpu", "ok"))] == 5.0
        assert got[(c.INFERENCE_ITEMS.name, ("e2e", "cpu"))] == 12.0
        assert got[(c.INFERENCE_DURATION.name, ("e2e", "cpu", "ok"))].count == 5
        assert got[(c.SLA_VIOLATIONS.name, ("e2e",))] == 0.0
        assert got[(c.MULTIPROC_PROCESSES.name, ("exited",))] == 1.0
        assert got[(c.MULTIPROC_PROCESSES.name, ("live",))] == 0.0
        assert got[(c.MULTIPROC_BAD_FILES.name, ())] == 0.0
    assert [p.name for p in tmp_path.iterdir()] == ["ortel-archive.snap"]

    run_worker(tmp_path, tracked=1, profiled=0)  # a second worker adds to the same series
    got = as_dict(col.collect())
    assert got[(c.INFERENCES.name, ("e2e", "cpu", "ok"))] == 6.0
    assert got[(c.MULTIPROC_PROCESSES.name, ("exited",))] == 2.0
