"""Execution providers: selection, and sessions that fail loudly instead of falling back."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from ortel.instrumentation.models import add_model
from ortel.profiling import providers as pv


def test_cpu_by_alias_and_by_name():
    assert pv.select("cpu").providers == [pv.CPU]
    assert pv.select("CPUExecutionProvider").providers == [pv.CPU]


def test_all_is_what_this_onnxruntime_offers_minus_remote_endpoints():
    sel = pv.select("all", available=["AzureExecutionProvider", "CUDAExecutionProvider", pv.CPU])
    assert sel.providers == [pv.CPU, "CUDAExecutionProvider"]  # CPU first: the reference
    assert [p for p, _ in sel.skipped] == ["AzureExecutionProvider"]
    real = pv.select("all")
    assert set(real.providers) <= set(ort.get_available_providers())
    assert pv.CPU in real.providers


def test_known_but_absent_providers_are_kept_to_fail_at_load():
    sel = pv.select("tensorrt,cuda,cpu,cuda")
    assert sel.providers == [pv.CPU, "TensorrtExecutionProvider", "CUDAExecutionProvider"]


@pytest.mark.parametrize("spec", ["gpu9000", "", " , "])
def test_unknown_or_empty_is_an_error(spec):
    with pytest.raises(ValueError, match="--providers"):
        pv.select(spec)


def test_cpu_session_and_its_load_time(tmp_path: Path):
    p = tmp_path / "add.onnx"
    p.write_bytes(add_model())
    session, seconds = pv.make_session(p, pv.CPU, threads=1)
    assert session.get_providers()[0] == pv.CPU
    assert 0 < seconds < 10


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="CUDA present here"
)
def test_a_provider_onnxruntime_would_silently_replace_by_cpu_is_a_failure():
    with pytest.raises(pv.ProviderError, match="fell back|CUDA"):
        pv.make_session(add_model(), "CUDAExecutionProvider")


def test_an_unloadable_model_is_a_provider_error(tmp_path: Path):
    p = tmp_path / "bad.onnx"
    p.write_bytes(b"not a model")
    with pytest.raises(pv.ProviderError):
        pv.make_session(p, pv.CPU)


def test_profiling_session_writes_a_trace(tmp_path: Path):
    import numpy as np

    s, _ = pv.make_session(add_model(), pv.CPU, profile_prefix=tmp_path / "trace")
    x = np.ones((1, 16), np.float32)
    s.run(None, {"x": x, "y": x})
    assert Path(s.end_profiling()).is_file()


def test_short_name():
    assert pv.short_name("CUDAExecutionProvider") == "CUDA"
