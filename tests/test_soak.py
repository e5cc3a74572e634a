"""A bounded soak in the suite: benchmarks/soak.py for ORTEL_SOAK_SECONDS (60 in CI, 15 here by
default), loopback only, stopping by itself.

8 threads of real onnxruntime inference through the shim, a daemon with every collector, scrapes
at 10 Hz. Asserted: counts exact (ok and errors), no failed scrape, every collector's success 1,
RSS growth after warm-up at most 5% for the daemon and the worker, exit 0 on SIGTERM. The figures
(scrape p99 among them) are printed and written as JSON (to ORTEL_SOAK_JSON when set).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SOAK = Path(__file__).resolve().parents[1] / "benchmarks" / "soak.py"
MAX_RSS_GROWTH = 0.05


def soak_seconds() -> float:
    raw = os.environ.get("ORTEL_SOAK_SECONDS")
    if raw:
        return float(raw)
    return 60.0 if os.environ.get("CI") == "true" else 15.0


def test_soak(tmp_path: Path) -> None:
    seconds = soak_seconds()
    out = Path(os.environ.get("ORTEL_SOAK_JSON") or tmp_path / "soak.json")
    proc = subprocess.run(
        [sys.executable, str(SOAK), "--duration", str(seconds), "--json", str(out)]
        + ["--max-rss-growth", str(MAX_RSS_GROWTH)],
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    print(proc.stdout)  # the figures, p99 included (pytest -s, or the report on failure)
    assert out.exists(), proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["calls_ok"] > 0 and r["calls_error"] > 0
    assert (r["daemon_ok"], r["daemon_error"]) == (r["calls_ok"], r["calls_error"])
    assert r["scrape_failures"] == []
    assert r["scrapes"] >= 0.8 * 10 * seconds
    assert set(r["collector_success"].values()) == {1.0}, r["collector_success"]
    for name in ("rss_daemon", "rss_worker"):
        assert r[name]["growth_ratio"] <= MAX_RSS_GROWTH, (name, r[name])
    assert r["daemon_exit_code"] == 0, r["daemon_log_tail"]
    assert r["problems"] == [] and proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
