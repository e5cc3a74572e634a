"""Design requirement: ortel never logs or exports tensors, weights or input values.

Instrumented inference runs with inputs full of distinctive numbers, through the success path and
every error path we can provoke (wrong shape, wrong dtype, wrong input name, and a function whose
exception message quotes its input). Then everything ortel produces is searched for those numbers
and for the error messages: the process's own /metrics (text and OpenMetrics), its snapshot file,
the daemon's merged /metrics, and every log line and byte written to stdout/stderr. Errors are
recorded by exception class name only.

The negative controls prove the search can fail: the secret is in the messages the errors carry.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from ortel.collectors.inference import InferenceCollector
from ortel.exporter.http import _Families
from ortel.instrumentation import instrument_session, profiled, track
from ortel.instrumentation.models import add_model, mlp_model
from ortel.instrumentation.multiproc import SnapshotWriter
from ortel.instrumentation.recorder import Recorder

# Exactly representable in float32, so the value printed anywhere would be these digits.
X, Y = 4242.4375, 1357.8125
SECRETS = ["4242.4375", "4242.44", "1357.8125", "1357.81", "5600.25", "42424375", "13578125"]


def _session(model: bytes) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def _exposition(readings) -> str:
    fams = _Families(lambda: readings)
    return generate_latest(fams).decode() + generate_openmetrics(fams).decode()


@pytest.fixture
def everything(tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture):
    """Run the workload; return (all text ortel produced, the error messages raised)."""
    caplog.set_level(logging.DEBUG)  # every logger, every level
    mdir = tmp_path / "multiproc"
    rec = Recorder()
    writer = SnapshotWriter(mdir)
    errors: list[str] = []

    add = instrument_session(_session(add_model()), "add", recorder=rec, sla_seconds=1e-3)
    x = np.full((1, 16), X, dtype=np.float32)
    y = np.full((1, 16), Y, dtype=np.float32)
    for _ in range(20):
        out = add.run(None, {"x": x, "y": y})
    assert out[0][0, 0] == X + Y  # the numbers really went through the model

    mlp = _session(mlp_model())
    inp = mlp.get_inputs()[0]
    mlp = instrument_session(mlp, "mlp", recorder=rec)
    mlp.run(None, {inp.name: np.full((4, inp.shape[1]), X, dtype=np.float32)})

    bad_feeds = [
        {"x": np.full((1, 8), X, np.float32), "y": y},  # wrong shape
        {"x": np.full((1, 16), X, np.float64), "y": y},  # wrong dtype
        {"bogus": x},  # wrong input name
        {"x": [[X] * 8], "y": y},  # a list, not an array
    ]
    for feed in bad_feeds:
        with pytest.raises(Exception) as e:  # noqa: B017, PT011 - whatever ORT raises
            add.run(None, feed)
        errors.append(str(e.value))

    @profiled(model="echo", recorder=rec)
    def echo(batch: np.ndarray) -> None:
        raise ValueError(f"cannot use input {batch.tolist()} (sum {float(batch.sum())})")

    with pytest.raises(ValueError) as e:
        echo(x)
    errors.append(str(e.value))

    with pytest.raises(KeyError) as e, track(model="blocks", recorder=rec):
        raise KeyError(f"feature {X} missing for {Y}")
    errors.append(str(e.value))

    rec.flush()
    writer(rec)
    shim = _exposition(rec.readings())
    # Binary files: any secret would show as its UTF-8 bytes.
    snapshots = b"".join(p.read_bytes() for p in sorted(mdir.iterdir())).decode("utf-8", "replace")
    daemon = _exposition(list(InferenceCollector(mdir).collect()))
    logs = "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
    )
    out, err = capfd.readouterr()
    produced = {
        "shim /metrics": shim,
        "snapshot files": snapshots,
        "daemon /metrics": daemon,
        "logs": logs,
        "stdout/stderr": out + err,
    }
    return produced, errors


def test_the_workload_recorded_what_it_should(everything) -> None:
    produced, errors = everything
    daemon = produced["daemon /metrics"]
    ok = 'ortel_inferences_total{model="add",provider="CPUExecutionProvider",status="ok"} 20.0'
    assert ok in daemon
    assert 'ortel_inference_errors_total{error_type="ValueError",model="echo"} 1.0' in daemon
    assert 'ortel_inference_errors_total{error_type="KeyError",model="blocks"} 1.0' in daemon
    assert len(errors) == 6


def test_the_secrets_were_in_the_error_paths(everything) -> None:
    """Negative control: the messages ortel saw carry the input values; if ortel exported or
    logged messages, the next test would find them."""
    _, errors = everything
    assert any("4242.4375" in m for m in errors)
    assert any("1357.8125" in m for m in errors)


@pytest.mark.parametrize(
    "where", ["shim /metrics", "snapshot files", "daemon /metrics", "logs", "stdout/stderr"]
)
def test_no_input_value_or_error_message_is_exported_or_logged(everything, where: str) -> None:
    produced, errors = everything
    text = produced[where]
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} found in {where}"
    for message in errors:
        # Whole messages, and their longest line: a partial echo would show there.
        longest = max(message.splitlines(), key=len).strip()
        assert message not in text and longest not in text, f"error text in {where}: {message}"
