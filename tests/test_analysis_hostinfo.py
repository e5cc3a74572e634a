"""Host roofs: measuring GEMM and triad, the per-host cache."""

from __future__ import annotations

import json
import os
import socket

import pytest

from ortel.analysis import hostinfo as h


def test_llc_size_from_sysfs(tmp_path):
    for i, size in enumerate(["32K", "1024K", "32768K", "48K"]):
        d = tmp_path / f"devices/system/cpu/cpu0/cache/index{i}"
        d.mkdir(parents=True)
        (d / "size").write_text(size + "\n")
    assert h.llc_bytes(tmp_path) == 32 << 20
    assert h.llc_bytes(tmp_path / "nothing") == h.DEFAULT_LLC_BYTES


def test_cpu_model_from_procfs(tmp_path):
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nmodel name\t: Test CPU @ 3.0GHz\n")
    assert h.cpu_model(tmp_path) == "Test CPU @ 3.0GHz"
    assert h.cpu_model(tmp_path / "missing")  # falls back to platform, never empty


def test_gemm_and_triad_measure_something_plausible():
    flops = h.measure_gemm(n=128, seconds=0.05)
    assert 1e7 < flops < 1e15
    bw = h.measure_triad(8 << 20, threads=2, seconds=0.05)
    assert 1e7 < bw < 1e13


def info(**kw) -> h.HostInfo:
    base = dict(
        peak_flops=1e11,
        mem_bw=2e10,
        gemm_n=2048,
        triad_bytes=1 << 27,
        threads=2,
        cpu_model="Test CPU",
        logical_cpus=2,
        hostname="box",
        numpy="2",
        measured_at=0.0,
    )
    return h.HostInfo(**(base | kw))


def test_cache_round_trip_per_host(tmp_path):
    c = h.HostInfoCache(tmp_path / "sub" / "hostinfo.json")
    assert c.get(info().fingerprint) is None
    c.put(info())
    c.put(info(hostname="other", peak_flops=5e9))
    assert c.get(info().fingerprint).peak_flops == 1e11
    assert c.get(info(hostname="other").fingerprint).peak_flops == 5e9
    assert len(json.loads(c.path.read_text())) == 2
    c.path.write_text("{not json")
    assert c.get(info().fingerprint) is None  # a broken cache measures again


def test_host_info_uses_the_cache_for_this_host(tmp_path):
    me = info(hostname=socket.gethostname(), cpu_model=h.cpu_model(), logical_cpus=os.cpu_count())
    c = h.HostInfoCache(tmp_path / "hostinfo.json")
    c.put(me)
    got, how = h.host_info(c)
    assert how == "cached" and got.peak_flops == 1e11


def test_default_cache_path_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv(h.CACHE_ENV, str(tmp_path / "x.json"))
    assert h.default_cache_path() == tmp_path / "x.json"
    monkeypatch.delenv(h.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert h.default_cache_path() == tmp_path / "ortel" / "hostinfo.json"


@pytest.mark.slow
def test_a_full_measurement_is_cached(tmp_path):
    c = h.HostInfoCache(tmp_path / "hostinfo.json")
    got, how = h.host_info(c, refresh=True)
    assert how == "measured" and got.peak_flops > 0 and got.mem_bw > 0
    assert h.host_info(c)[1] == "cached"
