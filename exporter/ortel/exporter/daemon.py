"""``ortel serve``: wire collectors, the sampler, the HTTP endpoint and the optional demo.

Signals: SIGTERM/SIGINT stop accepting scrapes, let those in flight finish (up to DRAIN_SECONDS)
and exit 0. SIGHUP reloads: the config file and the web config are read again and everything but
the listen address and --demo takes effect without a restart (a reload that fails is logged and
changes nothing).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ortel.collectors.registry import BY_NAME
from ortel.core import catalog as c
from ortel.core.readings import Reading

from . import __version__
from .attribution import Activity, Attribution, activity_from
from .config import ConfigError, Settings
from .derive import Carbon, Derived
from .http import make_server
from .otlp_push import OtlpPush
from .sampler import Sampler
from .webconfig import Policy, Security, describe

DRAIN_SECONDS = 5.0  # SIGTERM: how long scrapes in flight may take to finish


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, policy: Policy) -> str | None:
    """What to warn about when the endpoint is reachable beyond this machine, if anything."""
    if is_loopback(host):
        return None
    where = f"listening on {host}"
    if policy.ssl_context is None and not policy.authenticates:
        return (
            f"{where} without TLS or authentication: anyone who can reach this port can read "
            "the metrics (--web-config, --bearer-token-file; see docs/security.md)"
        )
    if not policy.authenticates:
        return (
            f"{where} with TLS but no authentication: anyone who can connect can read the metrics"
        )
    if policy.ssl_context is None:
        return f"{where} without TLS: credentials and metrics cross the network in clear text"
    return None


log = logging.getLogger("ortel.exporter")


def close_collectors(collectors: list) -> None:
    """Let each collector release what it holds; one that fails to does not stop the others."""
    for col in collectors:
        try:
            col.close()
        except Exception as e:
            log.warning("collector %s: close failed: %s", col.name, e)


class Daemon:
    def __init__(
        self,
        settings: Settings,
        security: Security | None = None,
        reloader: Callable[[], Settings] | None = None,
    ) -> None:
        self.settings = settings
        self.security = security or Security(settings.web_config, settings.bearer_token_file)
        self.reloader = reloader
        self._config_ok = True  # the latest SIGHUP reload of the config file worked
        self._stop = threading.Event()
        self._hup = threading.Event()
        self._demo: subprocess.Popen | None = None
        self._demo_dir: str | None = None
        self.otlp: OtlpPush | None = None  # started by run() with --otlp-endpoint
        if settings.demo and settings.options.multiproc_dir is None:
            self._demo_dir = tempfile.mkdtemp(prefix="ortel-demo-")
        self.options = self._options(settings)
        self.collectors = [BY_NAME[n].factory(self.options) for n in settings.collectors]
        self.sampler = Sampler(self.collectors, settings.interval, settings.collector_timeout)
        # Computed from the latest readings at each scrape (derive.py); the lambda follows the
        # sampler across reloads.
        self.carbon = Carbon(settings.grid_intensity_g_per_kwh)
        # Energy per inference: stepped every interval by its own thread (run()), served at
        # each scrape as a derivation.
        self.attribution = Attribution(
            settings.options.cpu_idle_watts,
            settings.options.window_seconds,
            grams_per_joule=lambda: self.carbon.grams_per_joule,
        )
        self.derived = Derived(lambda: self.sampler.readings(), [self.carbon, self.attribution])
        self._build = Reading(c.BUILD_INFO, (__version__, platform.python_version()), 1.0)
        # Bind before anything starts so "port in use" fails fast and cleanly.
        try:
            self.server = make_server(
                settings.host,
                settings.port,
                self.readings,
                list(settings.collectors),
                self.security,
                settings.web_max_requests,
            )
        except OSError:
            if self._demo_dir:  # nothing else will remove it
                shutil.rmtree(self._demo_dir, ignore_errors=True)
            raise

    def _options(self, settings: Settings):
        opts = settings.options
        if self._demo_dir and opts.multiproc_dir is None:
            opts = replace(opts, multiproc_dir=Path(self._demo_dir))
        return opts

    def readings(self) -> list[Reading]:
        out = [self._build, *self.derived()]
        if self.reloader is not None and getattr(self.reloader, "config_path", None) is not None:
            out.append(Reading(c.CONFIG_RELOAD_SUCCESS, ("file",), float(self._config_ok)))
        if self.security.configured:
            ok = float(self.security.last_reload_ok)
            out.append(Reading(c.CONFIG_RELOAD_SUCCESS, ("web",), ok))
        if self.otlp is not None:
            out.extend(self.otlp.readings())
        out.extend(self.server.limiter.readings())
        return out

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        assert isinstance(host, str)  # bind stored getsockname(): a str host, never bytes
        scheme = "https" if self.security.policy.ssl_context is not None else "http"
        return f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}"

    def warn_if_exposed(self) -> None:
        why = exposure_warning(self.settings.host, self.security.policy)
        if why:
            log.warning("%s", why)

    def reload(self) -> bool:
        """Re-read the config file and the web config; apply what can change while running."""
        log.info("reloading configuration")
        new = self.settings
        if self.reloader is not None:
            try:
                new = self.reloader()
            except ConfigError as e:
                self._config_ok = False
                log.error("config not reloaded, previous settings stay in force: %s", e)
                return False
            self._config_ok = True
        web_ok = self.security.reload((new.web_config, new.bearer_token_file))
        self.apply(new)
        return web_ok

    def apply(self, new: Settings) -> None:
        old = self.settings
        if (new.host, new.port) != (old.host, old.port):
            log.warning(
                "listen address %s:%d takes a restart; still serving %s",
                new.host,
                new.port,
                self.url,
            )
            new = replace(new, host=old.host, port=old.port)
        if new.demo != old.demo:
            log.warning("--demo takes a restart; left as it was")
            new = replace(new, demo=old.demo)
        logging.getLogger().setLevel(new.log_level.upper())
        self.server.limiter.limit = new.web_max_requests
        self.carbon.set_intensity(new.grid_intensity_g_per_kwh)  # from now on; the total stays
        self.attribution.cpu_idle_watts = new.options.cpu_idle_watts
        self.attribution.window_seconds = new.options.window_seconds
        opts = self._options(new)
        sampling = (new.collectors, new.interval, new.collector_timeout, opts)
        if sampling != (old.collectors, old.interval, old.collector_timeout, self.options):
            self._resample(new, opts)
        self.settings = new
        self.warn_if_exposed()

    def _resample(self, new: Settings, opts) -> None:
        """A new sampler for new collector settings. Collectors whose options did not change are
        kept (their counters and previous samples continue) unless stuck in a sample."""
        old = self.sampler
        stuck = set(old.stop())
        keep = {}
        if opts == self.options:
            keep = {col.name: col for col in old.collectors if col.name not in stuck}
        collectors = [keep.get(n) or BY_NAME[n].factory(opts) for n in new.collectors]
        sampler = Sampler(collectors, new.interval, new.collector_timeout)
        sampler.start(wait=1.0)
        close_collectors([col for col in old.collectors if col not in collectors])
        self.sampler, self.collectors, self.options = sampler, collectors, opts
        log.info("collectors now %s, every %gs", ", ".join(new.collectors) or "none", new.interval)

    def start_demo(self) -> None:
        env = dict(os.environ, ORTEL_MULTIPROC_DIR=str(self.options.multiproc_dir))
        self._demo = subprocess.Popen(
            [sys.executable, "-m", "ortel.instrumentation.demo"], env=env, stdin=subprocess.DEVNULL
        )
        log.info("demo workload running as pid %d", self._demo.pid)

    def stop(self, *_: object) -> None:
        self._stop.set()

    def hangup(self, *_: object) -> None:
        self._hup.set()  # the main loop reloads: a signal handler should not do the work

    def run(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self.hangup)
        if self.security.configured:
            log.info("web config: %s", describe(self.security.policy))
        self.warn_if_exposed()
        if self.settings.demo:
            self.start_demo()
        self.sampler.start()
        threading.Thread(target=self._attribute, name="ortel-attribution", daemon=True).start()
        if self.settings.otlp is not None:
            self.otlp = OtlpPush(self.settings.otlp, self.readings)
            log.info("%s", self.otlp.describe())
        server_thread = threading.Thread(
            target=self.server.serve_forever, name="ortel-http", daemon=True
        )
        server_thread.start()
        log.info(
            "serving %s/metrics (collectors: %s)", self.url, ", ".join(self.settings.collectors)
        )
        try:
            while not self._stop.wait(0.2):
                if self._hup.is_set():
                    self._hup.clear()
                    self.reload()
                if self._demo is not None and self._demo.poll() is not None:
                    log.error("demo workload exited with code %s", self._demo.returncode)
                    self._demo = None
        finally:
            self.shutdown()

    def _activity(self) -> Activity | None:
        """The inference collector's latest merge (per-process busy time), if it runs."""
        for col in self.collectors:
            if col.name == "inference":
                return activity_from(getattr(col, "latest", None))
        return None

    def step_attribution(self) -> None:
        self.attribution.step(self.sampler.readings(), self._activity())

    def _attribute(self) -> None:
        """Attribute energy once per interval, half an interval after the collectors sample (they
        start together), so each step sees every collector's sample of the same tick."""
        failed = False
        next_at = time.monotonic() + self.settings.interval / 2
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            try:
                self.step_attribution()
                failed = False
            except Exception:  # a bug here must not take the daemon down; said once per run
                if not failed:
                    log.exception("energy attribution failed")
                failed = True
            next_at += self.settings.interval
            if next_at < time.monotonic():  # fell behind: skip missed ticks
                next_at = time.monotonic() + self.settings.interval

    def shutdown(self) -> None:
        self.server.shutdown()  # no new connections; those in flight carry on
        left = self.server.drain(DRAIN_SECONDS)
        if left:
            log.warning("%d connection(s) still open after %gs: closing", left, DRAIN_SECONDS)
        self.server.server_close()
        if self._demo is not None:
            self._demo.terminate()
            try:
                self._demo.wait(5)
            except subprocess.TimeoutExpired:
                self._demo.kill()
        if self.otlp is not None:
            self.otlp.stop()  # the last push, while the sampler still has readings
        self.sampler.stop()
        close_collectors(self.collectors)  # child processes (powermetrics) go with the daemon
        if self._demo_dir:
            shutil.rmtree(self._demo_dir, ignore_errors=True)
        log.info("stopped")
