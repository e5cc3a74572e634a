"""Host description stored with every run."""

from __future__ import annotations

from pathlib import Path

from ortel.profiling.hostinfo import cpu_model, host_info


def test_cpu_model_from_cpuinfo(tmp_path: Path):
    (tmp_path / "cpuinfo").write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6248\n"
    )
    assert cpu_model(tmp_path) == "Intel(R) Xeon(R) Gold 6248"


def test_arm_cpuinfo_uses_hardware(tmp_path: Path):
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nBogoMIPS\t: 108.00\nHardware\t: BCM2835\n")
    assert cpu_model(tmp_path) == "BCM2835"


def test_missing_cpuinfo_is_not_an_error(tmp_path: Path):
    assert cpu_model(tmp_path / "nope")


def test_host_info_keys():
    h = host_info()
    for k in ("host", "cpu_model", "cores", "os", "python", "onnxruntime_version"):
        assert h[k]
    assert h["onnxruntime_version"] != "unknown"
