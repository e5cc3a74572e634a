"""No code change: ``opentelemetry-instrument python app.py`` with only OTEL_* variables set sends
ONNX Runtime inference spans and ortel's metrics to a real OTLP receiver (gRPC and HTTP)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest
from otlp_receiver import OtlpReceiver

from ortel.core import catalog as c

# A plain onnxruntime program: nothing of ortel or OpenTelemetry in it.
APP = """
import os, sys
import numpy as np
import onnxruntime as ort

sess = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
x = np.ones((2, 16), np.float32)
for _ in range(int(sys.argv[2])):
    sess.run(None, {"x": x, "y": x})
try:
    sess.run(None, {"x": x})
except Exception as e:
    print("failed as planned:", type(e).__name__)
print("pid", os.getpid())
"""


def add_model_batch2(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 16])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 16])
    graph = helper.make_graph([helper.make_node("Add", ["x", "y"], ["z"])], "add", [x, y], [z])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_opentelemetry_instrument_with_only_otel_variables(tmp_path, protocol):
    exe = shutil.which("opentelemetry-instrument") or str(
        Path(sys.executable).parent / "opentelemetry-instrument"
    )
    assert Path(exe).exists(), "opentelemetry-instrument missing: pip install 'ortel[otel]'"
    model = tmp_path / "adder.onnx"
    add_model_batch2(model)
    app = tmp_path / "app.py"
    app.write_text(APP)
    runs = 25
    with OtlpReceiver(protocol) as rx:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ORTEL_"))}
        env.update(
            OTEL_SERVICE_NAME="classifier",
            OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
            OTEL_METRIC_EXPORT_INTERVAL="500",
            OTEL_LOGS_EXPORTER="none",
            OTEL_EXPERIMENTAL_RESOURCE_DETECTORS="ortel",
        )
        proc = subprocess.run(
            [exe, sys.executable, str(app), str(model), str(runs)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "failed as planned: ValueError" in proc.stdout
        pid = int(proc.stdout.split("pid ")[1].split()[0])

        # Spans: one per run (within the default root-span burst), the failed one an error.
        spans = rx.spans()
        assert [s.name for s in spans] == ["onnxruntime.run"] * (runs + 1)
        ok = [s for s in spans if s.span.status.code != 2]
        (bad,) = [s for s in spans if s.span.status.code == 2]  # STATUS_CODE_ERROR
        assert len(ok) == runs
        assert ok[0].attributes == {
            "ortel.model": "adder",
            "ortel.provider": "CPUExecutionProvider",
            "ortel.run_method": "run",
            "ortel.batch_size": 2,
        }
        assert bad.attributes["error.type"] == "ValueError"
        assert ok[0].scope == "ortel"
        res = ok[0].resource
        assert res["service.name"] == "classifier"
        assert res["process.pid"] == pid and res["host.name"]
        assert res["ortel.onnxruntime.version"] == ort.__version__
        assert "CPUExecutionProvider" in res["ortel.onnxruntime.providers"]

        # Metrics: names, units and values (the last export carries the final totals).
        count = {p.attributes["ortel.status"]: p for p in rx.latest("ortel.inference.count")}
        assert count["ok"].value == runs and count["error"].value == 1
        assert count["ok"].unit == "{inference}" and count["ok"].monotonic
        assert count["ok"].resource["service.name"] == "classifier"
        hist = {p.attributes["ortel.status"]: p for p in rx.latest("ortel.inference.duration")}
        assert hist["ok"].unit == "s" and hist["ok"].value.count == runs
        assert list(hist["ok"].value.explicit_bounds) == list(c.DEFAULT_LATENCY_BUCKETS)
        assert 0 < hist["ok"].value.sum < runs  # seconds, not ns
        (items,) = rx.latest("ortel.inference.items")
        assert items.value == 2 * runs and items.unit == "{item}"
        (errors,) = rx.latest("ortel.inference.errors")
        assert errors.attributes == {"ortel.model": "adder", "error.type": "ValueError"}
        (load,) = rx.latest("ortel.session.load.duration")
        assert load.unit == "s" and 0 < load.value < 60
        # The span pipeline is the SDK's here: ortel cannot count its drops, so it claims none.
        assert not rx.latest("ortel.otlp.dropped")
        quantiles = {
            p.attributes["ortel.quantile"] for p in rx.latest("ortel.inference.latency.quantile")
        }
        assert quantiles == set(c.QUANTILES)
