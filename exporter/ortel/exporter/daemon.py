"""``ortel serve``: wire collectors, the sampler, the HTTP endpoint and the optional demo."""

from __future__ import annotations

import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

from ortel.instrumentation import catalog as c
from ortel.instrumentation.readings import Reading

from . import __version__
from .collectors.registry import BY_NAME
from .config import Settings
from .http import make_server
from .sampler import Sampler

log = logging.getLogger("ortel.exporter")


class Daemon:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._demo: subprocess.Popen | None = None
        self._demo_dir: str | None = None
        opts = settings.options
        if settings.demo and opts.multiproc_dir is None:
            self._demo_dir = tempfile.mkdtemp(prefix="ortel-demo-")
            opts = replace(opts, multiproc_dir=Path(self._demo_dir))
        self.options = opts
        self.collectors = [BY_NAME[n].factory(opts) for n in settings.collectors]
        self.sampler = Sampler(self.collectors, settings.interval)
        self._build = Reading(c.BUILD_INFO, (__version__, platform.python_version()), 1.0)
        # Bind before anything starts so "port in use" fails fast and cleanly.
        try:
            self.server = make_server(
                settings.host, settings.port, self.readings, list(settings.collectors)
            )
        except OSError:
            if self._demo_dir:  # nothing else will remove it
                shutil.rmtree(self._demo_dir, ignore_errors=True)
            raise

    def readings(self) -> list[Reading]:
        return [self._build, *self.sampler.readings()]

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}"

    def start_demo(self) -> None:
        env = dict(os.environ, ORTEL_MULTIPROC_DIR=str(self.options.multiproc_dir))
        self._demo = subprocess.Popen(
            [sys.executable, "-m", "ortel.instrumentation.demo"], env=env, stdin=subprocess.DEVNULL
        )
        log.info("demo workload running as pid %d", self._demo.pid)

    def stop(self, *_: object) -> None:
        self._stop.set()

    def run(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.stop)
        if self.settings.demo:
            self.start_demo()
        self.sampler.start()
        server_thread = threading.Thread(
            target=self.server.serve_forever, name="ortel-http", daemon=True
        )
        server_thread.start()
        log.info(
            "serving %s/metrics (collectors: %s)", self.url, ", ".join(self.settings.collectors)
        )
        try:
            while not self._stop.wait(0.5):
                if self._demo is not None and self._demo.poll() is not None:
                    log.error("demo workload exited with code %s", self._demo.returncode)
                    self._demo = None
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._demo is not None:
            self._demo.terminate()
            try:
                self._demo.wait(5)
            except subprocess.TimeoutExpired:
                self._demo.kill()
        self.sampler.stop()
        if self._demo_dir:
            shutil.rmtree(self._demo_dir, ignore_errors=True)
        log.info("stopped")
