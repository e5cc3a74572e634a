"""Golden end-to-end test: ``ortel serve`` over the whole fixture tree, /metrics compared with a
checked-in expected output, and ``promtool check metrics`` clean on it.

What differs from run to run is masked before comparing: collector durations, timestamps, the
build's versions, and whatever belongs to the live daemon process (its pid, RSS, CPU time).
Everything else comes from the fixture files and must match byte for byte.

The collectors are pinned to those that read the fixture tree; nvml and powermetrics read the
machine (a GPU, macOS) and would make the output depend on where the test runs. A new collector
that reads the fixtures belongs in COLLECTORS.

Regenerate after an intended change (new metric, new fixture file, changed help text):

    ORTEL_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py

and review the diff of tests/golden/metrics.txt like any other change.
"""

from __future__ import annotations

import difflib
import os
import re
import time
from pathlib import Path

from harness import OrtelServe, http_get, promtool_check_metrics
from helpers import FIXTURES

GOLDEN = Path(__file__).parent / "golden" / "metrics.txt"
COLLECTORS = (
    "cpu",
    "memory",
    "process",
    "inference",
    "rapl",
    "hwmon",
    "thermal",
    "power_supply",  # the fixture has no power supplies: "no data", not a failure
    "estimate",
)
# Series that need two samples; the golden output is taken once every one of them is there.
TWO_SAMPLE_SERIES = ('ortel_power_watts{device="0",source="rapl"', "ortel_thermal_throttling{")
MASK = "<masked>"

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?P<labels>\{.*\})? (?P<value>\S+)$")


def mask(body: str) -> str:
    out = []
    for line in body.splitlines():
        m = _SAMPLE.match(line)
        if line.startswith("#") or not m:
            out.append(line)
            continue
        name, labels, value = m["name"], m["labels"] or "", m["value"]
        if name == "ortel_scrape_collector_duration_seconds" or name.endswith("_timestamp_seconds"):
            value = MASK
        elif name == "ortel_build_info":
            labels = re.sub(r'="[^"]*"', f'="{MASK}"', labels)
        elif name.startswith("ortel_process_"):  # the live daemon, not the fixture
            labels = re.sub(r'pid="\d+"', f'pid="{MASK}"', labels)
            value = MASK
        out.append(f"{name}{labels} {value}")
    return "\n".join(out) + "\n"


def serve() -> OrtelServe:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORTEL_")}
    return OrtelServe(
        "--procfs",
        str(FIXTURES / "procfs"),  # absolute: the daemon runs in a temporary directory
        "--sysfs",
        str(FIXTURES / "sysfs"),
        "--collectors",
        ",".join(COLLECTORS),
        "--interval",
        "0.5",
        env=env,
    )


def scrape_when_settled(url: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status, _, body = http_get(f"{url}/metrics")
        assert status == 200, body
        if all(s in body for s in TWO_SAMPLE_SERIES):
            return body
        assert time.monotonic() < deadline, f"no second sample after {timeout:.0f}s:\n{body}"
        time.sleep(0.1)


def test_metrics_over_the_fixture_tree_match_the_golden_file():
    with serve() as url:
        body = scrape_when_settled(url)
    got = mask(body)
    if os.environ.get("ORTEL_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(got)
    expected = GOLDEN.read_text()
    if got != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(True), got.splitlines(True), "golden/metrics.txt", "/metrics"
            )
        )
        raise AssertionError(
            "/metrics differs from tests/golden/metrics.txt (regenerate with "
            f"ORTEL_UPDATE_GOLDEN=1 if the change is intended):\n{diff}"
        )
    res = promtool_check_metrics(body)
    assert res.returncode == 0, res.stderr + res.stdout
    assert res.stderr.strip() == "", res.stderr


def test_mask_hides_only_what_changes_between_runs():
    body = (
        "# HELP ortel_build_info Always 1.\n"
        'ortel_build_info{python="3.11.7",version="0.1.0"} 1.0\n'
        'ortel_scrape_collector_duration_seconds{collector="cpu"} 0.00042\n'
        'ortel_collector_last_success_timestamp_seconds{collector="cpu"} 1.7e+09\n'
        'ortel_process_threads{name="python3",pid="4242",role="daemon"} 7.0\n'
        'ortel_rapl_energy_joules_total{index="0",zone="package-0"} 81234.56789\n'
    )
    assert mask(body) == (
        "# HELP ortel_build_info Always 1.\n"
        'ortel_build_info{python="<masked>",version="<masked>"} 1.0\n'
        'ortel_scrape_collector_duration_seconds{collector="cpu"} <masked>\n'
        'ortel_collector_last_success_timestamp_seconds{collector="cpu"} <masked>\n'
        'ortel_process_threads{name="python3",pid="<masked>",role="daemon"} <masked>\n'
        'ortel_rapl_energy_joules_total{index="0",zone="package-0"} 81234.56789\n'
    )
