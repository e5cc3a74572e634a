"""A real ``ortel serve`` process on the fixture procfs/sysfs: endpoints, values, shutdown."""

from __future__ import annotations

import gzip
import os
import platform
import time
import urllib.request
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from harness import OrtelServe, http_get
from helpers import FIXTURES
from prometheus_client.parser import text_string_to_metric_families

PROCFS = FIXTURES / "procfs"
SYSFS = FIXTURES / "sysfs"
HOST_COLLECTORS = ("cpu", "memory", "process")

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def clean_env() -> dict[str, str]:
    """The test runner's environment without any ORTEL_* setting that could change the daemon."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ORTEL_")}


def serve(*args: str, **kwargs: float) -> OrtelServe:
    # The daemon runs in a temporary working directory: fixture paths must be absolute.
    return OrtelServe(*args, env=clean_env(), **kwargs)


def scrape(url: str) -> Series:
    status, ctype, body = http_get(f"{url}/metrics")
    assert status == 200, body
    assert ctype.startswith("text/plain"), ctype
    out: Series = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(series: Series, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in series, f"{name}{labels} not scraped; have {sorted(k[0] for k in series)}"
    return series[key]


def meminfo_bytes(key: str) -> int:
    for line in (PROCFS / "meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == key:
            return int(rest.split()[0]) * 1024
    raise KeyError(key)


@pytest.fixture(scope="module")
def host_url() -> Iterator[str]:
    with serve(
        "--procfs",
        str(PROCFS),
        "--sysfs",
        str(SYSFS),
        "--collectors",
        ",".join(HOST_COLLECTORS),
    ) as url:
        yield url


def test_memory_values_come_from_the_fixture(host_url: str) -> None:
    m = scrape(host_url)
    total = meminfo_bytes("MemTotal")
    assert value(m, "ortel_memory_total_bytes") == total
    assert value(m, "ortel_memory_available_bytes") == meminfo_bytes("MemAvailable")
    assert value(m, "ortel_memory_used_bytes") == total - meminfo_bytes("MemAvailable")


def test_cpu_values_come_from_the_fixture(host_url: str) -> None:
    m = scrape(host_url)
    cpus = [ln for ln in (PROCFS / "stat").read_text().splitlines() if ln[:4].startswith("cpu")]
    assert value(m, "ortel_cpu_logical_processors") == len(cpus) - 1  # minus the aggregate
    khz = int((SYSFS / "devices/system/cpu/cpu0/cpufreq/scaling_cur_freq").read_text())
    assert value(m, "ortel_cpu_frequency_hertz", cpu="0") == khz * 1000


@pytest.mark.parametrize("collector", HOST_COLLECTORS)
def test_each_collector_reports_success_and_data(host_url: str, collector: str) -> None:
    m = scrape(host_url)
    assert value(m, "ortel_scrape_collector_success", collector=collector) == 1
    assert value(m, "ortel_scrape_collector_has_data", collector=collector) == 1
    assert value(m, "ortel_scrape_collector_duration_seconds", collector=collector) >= 0


def test_only_the_chosen_collectors_run(host_url: str) -> None:
    m = scrape(host_url)
    ran = {
        dict(labels)["collector"] for name, labels in m if name == "ortel_scrape_collector_success"
    }
    assert ran == set(HOST_COLLECTORS)


def test_build_info(host_url: str) -> None:
    m = scrape(host_url)
    info = value(m, "ortel_build_info", version=version("ortel"), python=platform.python_version())
    assert info == 1


def test_healthz(host_url: str) -> None:
    status, ctype, body = http_get(f"{host_url}/healthz")
    assert (status, body) == (200, "ok\n")
    assert ctype.startswith("text/plain")


def test_index_page_links_the_endpoints(host_url: str) -> None:
    status, ctype, body = http_get(f"{host_url}/")
    assert status == 200
    assert ctype.startswith("text/html")
    assert '<a href="/metrics">' in body
    assert '<a href="/healthz">' in body
    for name in HOST_COLLECTORS:
        assert f"<li>{name}</li>" in body


@pytest.mark.parametrize("path", ["/nope", "/metrics/extra", "/healthz/"])
def test_unknown_path_is_404(host_url: str, path: str) -> None:
    status, _, body = http_get(f"{host_url}{path}")
    assert (status, body) == (404, "not found\n")


def test_query_string_is_ignored(host_url: str) -> None:
    status, _, body = http_get(f"{host_url}/metrics?debug=1")
    assert status == 200
    assert "ortel_build_info" in body


def test_openmetrics_when_asked(host_url: str) -> None:
    status, ctype, body = http_get(
        f"{host_url}/metrics", accept="application/openmetrics-text; version=1.0.0"
    )
    assert status == 200
    assert ctype.startswith("application/openmetrics-text"), ctype
    assert body.endswith("# EOF\n")
    assert "ortel_memory_total_bytes" in body


def test_text_format_by_default(host_url: str) -> None:
    _, ctype, body = http_get(f"{host_url}/metrics")
    assert ctype.startswith("text/plain; version=0.0.4")
    assert "# EOF" not in body


def test_gzip_when_accepted(host_url: str) -> None:
    req = urllib.request.Request(f"{host_url}/metrics", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        encoding = resp.headers.get("Content-Encoding")
        raw = resp.read()
        length = int(resp.headers["Content-Length"])
    assert encoding == "gzip"
    assert length == len(raw)
    text = gzip.decompress(raw).decode()
    assert "ortel_memory_total_bytes" in text


def test_sigterm_stops_the_daemon_quickly() -> None:
    # OrtelServe's exit sends SIGTERM and asserts exit code 0 within stop_timeout.
    with serve("--collectors", "cpu", "--procfs", str(PROCFS), stop_timeout=5.0) as url:
        assert http_get(f"{url}/healthz")[0] == 200
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 5.0


def test_inference_with_an_empty_multiproc_dir_has_data(tmp_path: Path) -> None:
    with serve("--collectors", "inference", "--multiproc-dir", str(tmp_path)) as url:
        m = scrape(url)
    assert value(m, "ortel_scrape_collector_success", collector="inference") == 1
    assert value(m, "ortel_scrape_collector_has_data", collector="inference") == 1
    assert value(m, "ortel_multiproc_processes", state="live") == 0


def test_inference_with_a_missing_multiproc_dir_is_no_data_not_failure(tmp_path: Path) -> None:
    missing = tmp_path / "not-yet"
    with serve("--collectors", "inference", "--multiproc-dir", str(missing)) as url:
        m = scrape(url)
    assert value(m, "ortel_scrape_collector_success", collector="inference") == 1
    assert value(m, "ortel_scrape_collector_has_data", collector="inference") == 0
    assert not any(name == "ortel_multiproc_processes" for name, _ in m)


def _children(pid: int) -> dict[int, str]:
    """Live child processes of pid: {pid: command line}."""
    out: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            out[int(entry.name)] = cmdline
    return out


def test_demo_child_is_stopped_with_the_daemon() -> None:
    # The process collector on the real /proc tells us the daemon's pid (role="daemon").
    with serve("--demo", "--collectors", "process") as url:
        m = scrape(url)
        roles = {
            dict(lbl)["role"]: dict(lbl)["pid"] for n, lbl in m if n == "ortel_process_threads"
        }
        daemon_pid = int(roles["daemon"])
        children = _children(daemon_pid)
        demo = [pid for pid, cmd in children.items() if "ortel.instrumentation.demo" in cmd]
        assert demo, f"no demo child under pid {daemon_pid}: {children}"
    # OrtelServe's exit already asserted the process group is empty; check the child by pid too.
    assert not [pid for pid in demo if Path(f"/proc/{pid}").exists()]
