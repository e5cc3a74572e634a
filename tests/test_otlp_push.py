"""``ortel serve --otlp-endpoint`` (otlp_push.py): settings, and the daemon's push to a real OTLP
receiver over gRPC and HTTP/protobuf, carrying the same values /metrics serves."""

from __future__ import annotations

import os
import re
import time

import pytest
from harness import OrtelServe, free_port, http_get
from helpers import FIXTURES
from otlp_receiver import OtlpReceiver

from ortel.exporter import otlp_push


@pytest.mark.parametrize(
    ("params", "env", "error"),
    [
        ({"otlp_endpoint": "collector:4317"}, {}, "expected a URL"),
        ({"otlp_endpoint": "http://:4317"}, {}, "expected a URL"),
        ({"otlp_endpoint": "http://host:99999"}, {}, "bad port"),
        ({}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "nope"}, "OTEL_EXPORTER_OTLP_ENDPOINT 'nope'"),
        ({"otlp_endpoint": "http://h:1"}, {"OTEL_EXPORTER_OTLP_PROTOCOL": "udp"}, "not one of"),
        ({"otlp_endpoint": "http://h:1", "otlp_interval": 0.0}, {}, "--otlp-interval"),
        ({"otlp_endpoint": "http://h:1", "otlp_interval": float("inf")}, {}, "--otlp-interval"),
    ],
)
def test_bad_settings_are_one_line_errors(params, env, error):
    with pytest.raises(ValueError, match=re.escape(error)):
        otlp_push.settings_from(params, env)


def test_settings_off_flag_and_environment():
    assert otlp_push.settings_from({}, {}) is None
    s = otlp_push.settings_from({"otlp_endpoint": "http://h:4317", "otlp_interval": 5.0}, {})
    assert s == otlp_push.OtlpSettings("http://h:4317", "grpc", 5.0)
    env = {
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "https://c:4318/v1/metrics",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }
    # The endpoint stays with the exporter, which reads the OTEL_* variables itself.
    assert otlp_push.settings_from({}, env) == otlp_push.OtlpSettings(None, "http/protobuf", None)
    flag = {"otlp_endpoint": "http://h:1", "otlp_protocol": "grpc"}
    assert otlp_push.settings_from(flag, env).protocol == "grpc"  # the flag wins


def test_without_the_otel_extra(monkeypatch, caplog):
    monkeypatch.setattr(otlp_push, "otel_installed", lambda: False)
    with pytest.raises(ValueError, match=re.escape("pip install 'ortel[otel]'")):
        otlp_push.settings_from({"otlp_endpoint": "http://h:4317"}, {})
    # An ambient OTEL_EXPORTER_OTLP_ENDPOINT (set for every pod, say) does not stop the daemon.
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}
    assert otlp_push.settings_from({}, env) is None
    assert "OTEL_EXPORTER_OTLP_ENDPOINT is set but OTLP export needs" in caplog.text


def test_cli_reports_bad_otlp_settings_in_one_line(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "ortel.exporter", "serve", "--otlp-endpoint", "x", "--check-config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "ortel: error: --otlp-endpoint 'x': expected a URL like http://127.0.0.1:4317"
    ]


def scraped(url: str, name: str) -> float:
    _, _, body = http_get(f"{url}/metrics")
    m = re.search(rf"^{re.escape(name)} (\S+)$", body, re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ORTEL_"))}
    env.update(extra)
    return env


FIXTURE_ARGS = (
    "--procfs",
    str(FIXTURES / "procfs"),
    "--sysfs",
    str(FIXTURES / "sysfs"),
    "--collectors",
    "cpu,memory",
)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_daemon_pushes_the_same_values_it_serves(protocol):
    with OtlpReceiver(protocol) as rx:
        args = ("--otlp-endpoint", rx.endpoint, "--otlp-protocol", protocol)
        with OrtelServe(*FIXTURE_ARGS, *args, "--otlp-interval", "0.3", env=clean_env()) as url:
            (limit,) = rx.wait_for_metric("system.memory.limit")
            assert limit.unit == "By" and limit.kind == "sum" and not limit.monotonic
            assert limit.value == scraped(url, "ortel_memory_total_bytes")
            assert limit.resource["service.name"] == "ortel"
            assert limit.resource["ortel.version"] and limit.resource["host.name"]
            cpu = {p.attributes["cpu.mode"]: p for p in rx.latest("system.cpu.time")}
            assert cpu["user"].unit == "s" and cpu["user"].monotonic
            assert cpu["user"].value == scraped(url, 'ortel_cpu_seconds_total{mode="user"}')
            (used,) = rx.latest("system.memory.usage")
            assert used.attributes == {"system.memory.state": "used"}
            success = {
                p.attributes["ortel.collector"]: p.value
                for p in rx.latest("ortel.collector.success")
            }
            assert success == {"cpu": 1.0, "memory": 1.0}


@pytest.mark.slow
def test_daemon_push_from_standard_otel_variables_only():
    with OtlpReceiver("http/protobuf") as rx:
        env = clean_env(
            OTEL_EXPORTER_OTLP_ENDPOINT=rx.endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_METRIC_EXPORT_INTERVAL="300",
            OTEL_SERVICE_NAME="edge-exporter",
        )
        with OrtelServe(*FIXTURE_ARGS, env=env):
            (info,) = rx.wait_for_metric("ortel.build.info")
            assert info.resource["service.name"] == "edge-exporter"
            assert info.attributes["process.runtime.version"]


@pytest.mark.slow
def test_unreachable_endpoint_is_counted_and_never_stalls_the_daemon():
    env = clean_env(OTEL_EXPORTER_OTLP_TIMEOUT="3")  # each failed push holds its thread 3 s
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with OrtelServe(
        *FIXTURE_ARGS, "--otlp-endpoint", dead, "--otlp-interval", "0.3", env=env
    ) as url:
        name = 'ortel_otlp_dropped_total{reason="export_failed",signal="metrics"}'
        deadline = time.monotonic() + 20
        while scraped(url, name) == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert scraped(url, name) > 0
        t0 = time.monotonic()
        status, _, _ = http_get(f"{url}/metrics")
        assert status == 200 and time.monotonic() - t0 < 1.5  # scrapes are not held up
    # leaving OrtelServe asserted a clean exit 0 on SIGTERM within its stop timeout


def test_the_push_never_imports_onnxruntime():
    import json
    import subprocess
    import sys

    code = """
import json, sys
from ortel.exporter.otlp_push import OtlpPush, OtlpSettings
from ortel.core import catalog as c
from ortel.core.readings import reading
settings = OtlpSettings("http://127.0.0.1:9", "grpc", 3600.0)
push = OtlpPush(settings, lambda: [reading(c.MEMORY_TOTAL, 1.0)])
push.export.hook._producer.produce()
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("onnxruntime", "onnx"))))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=clean_env()
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == []
