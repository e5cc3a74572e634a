"""End to end, real parts only: an instrumented process writing snapshots, `ortel serve` merging
them, a real Prometheus scraping it with the rules of `ortel rules`, a real Alertmanager, and a
webhook receiver here. Healthy, nothing fires; when the process fails 20 % of its calls, the
critical error-budget alert reaches the webhook with the model's labels, and resolves after.

The SLO windows are divided by --slo-window-scale (docs/alerts.md), so the workbook's 1h/5m pair
becomes 60s/5s and the test takes seconds, not hours; everything else is the shipped rules.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from harness import LOOPBACK, Alertmanager, OrtelServe, Prometheus

from ortel.exporter import dashboards as d
from ortel.exporter import rules as r

pytestmark = pytest.mark.slow

APPS = Path(__file__).parent / "apps"
MODEL = "fraud-detector"
PROVIDER = "cpu"
SCALE = 60  # 1h -> 60s, 5m -> 5s: the short window still spans five 1 s scrapes
ALERT = "OrtelErrorBudgetBurn"


class Webhook:
    """Alertmanager's webhook receiver: keeps every alert of every notification POSTed to it."""

    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with hook.lock:
                    hook.alerts.extend(json.loads(body)["alerts"])
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.url = f"http://{LOOPBACK}:{self.server.server_address[1]}/"

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.alerts)

    def __enter__(self) -> Webhook:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORTEL_")}
    env.update(extra)
    return env


def wait_until(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := cond()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f}s"
        time.sleep(0.2)
    return found


@contextmanager
def flaky_process(multiproc: Path, control: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = clean_env(ORTEL_MULTIPROC_DIR=str(multiproc), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(APPS / "flaky.py"), MODEL, str(control)], env=env)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


def last_alert_evaluation(prom: Prometheus) -> str:
    """lastEvaluation of the alerting group: a new value per evaluation round."""
    groups = prom.api("/api/v1/rules", type="alert")["groups"]
    return str(next(g["lastEvaluation"] for g in groups if g["name"] == "ortel.alerts"))


def ours(alert: dict[str, Any], status: str, target: str) -> bool:
    labels = alert["labels"]
    return (
        alert["status"] == status
        and labels["alertname"] == ALERT
        and labels["severity"] == "critical"
        and labels.get("long") == "1h"
        and labels.get("model") == MODEL
        and labels.get("provider") == PROVIDER
        and labels.get("instance") == target
    )


def fast_burn_panel() -> dict[str, Any]:
    """The SLO dashboard's panel for the fast pair (as generated; the shipped file is tested
    to be the same)."""
    panels = d.render(d.SLO)["panels"]
    return next(p for p in panels if p["title"].startswith("Error budget burn 1h / 5m"))


def test_critical_error_budget_alert_reaches_alertmanager_webhook(tmp_path):
    rules = tmp_path / "ortel-rules.yml"
    launcher = "import sys; from ortel.exporter.cli import main; sys.exit(main())"
    out = subprocess.run(
        [sys.executable, "-c", launcher, "rules", "--slo-window-scale", str(SCALE)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert out.returncode == 0, out.stderr
    rules.write_text(out.stdout)
    assert f"[{3600 // SCALE}s]" in out.stdout and f"[{300 // SCALE}s]" in out.stdout

    multiproc, control = tmp_path / "multiproc", tmp_path / "fail-share"
    multiproc.mkdir()
    serve = OrtelServe(
        "--collectors", "inference", "--multiproc-dir", str(multiproc), "--interval", "0.2",
        env=clean_env(),
    )  # fmt: skip
    with (
        Webhook() as hook,
        Alertmanager(hook.url) as am,
        serve,
        flaky_process(multiproc, control),
        Prometheus([serve.target], rule_files=[rules], alertmanagers=[am.target]) as prom,
    ):
        # Healthy: the model's SLIs are recorded (0), the alerts are evaluated over them twice
        # more, and nothing is pending, firing or sent.
        where = f'model="{MODEL}", provider="{PROVIDER}"'
        prom.wait_for(f"{r.error_sli('1h')}{{{where}}} == 0", timeout=30)
        prom.wait_for(f'{r.latency_sli("1h")}{{model="{MODEL}"}} == 0', timeout=30)
        seen = {last_alert_evaluation(prom)}

        def two_more() -> bool:
            seen.add(last_alert_evaluation(prom))
            return len(seen) > 2

        wait_until(two_more, 15, "two more evaluations of the alerts")
        assert prom.api("/api/v1/alerts")["alerts"] == []
        assert hook.received() == [] and am.alerts() == []

        # 20 % of the calls fail from now on.
        control.write_text("0.2")
        firing = wait_until(
            lambda: [a for a in hook.received() if ours(a, "firing", serve.target)],
            30,
            f"a critical {ALERT} for {MODEL} at the webhook",
        )
        alert = firing[0]
        assert alert["labels"]["job"] == "ortel" and alert["labels"]["short"] == "5m"
        assert MODEL in alert["annotations"]["summary"]
        assert f"{MODEL} on {PROVIDER} at {serve.target}" in alert["annotations"]["description"]
        assert alert["annotations"]["runbook_url"] == f"docs/alerts.md#{ALERT.lower()}"
        # The alert fires while the windows still fill; the short one then settles at 20 %.
        prom.wait_for(f"0.18 < {r.error_sli('5m')}{{{where}}} < 0.22", timeout=15)
        # The SLO view shows it: both of the panel's burn rates above its dashed line.
        panel = fast_burn_panel()
        line = panel["fieldConfig"]["defaults"]["thresholds"]["steps"][-1]["value"]
        assert line == 14.4
        for target in panel["targets"]:
            expr = target["expr"].replace("$instance", serve.target).replace("$model", MODEL)
            burn = prom.query(expr)
            assert burn and float(burn[0]["value"][1]) > line, (expr, burn)
        # Only the error budget burns: latency stays within its SLO, nothing else breaks.
        assert {a["labels"]["alertname"] for a in hook.received()} == {ALERT}

        # Healthy again: the short window empties and the fast pair resolves at the webhook.
        control.write_text("0")
        wait_until(
            lambda: [a for a in hook.received() if ours(a, "resolved", serve.target)],
            30,
            f"the critical {ALERT} for {MODEL} resolved at the webhook",
        )
