"""What one `ortel top` frame costs against its budget at 10 frames a second.

Starts `ortel serve --demo` (plus `--models` extra model series from a helper process writing into
the same multiprocess directory, so /metrics is as large as a busy host's), then times each stage
of a frame over many frames: fetching /metrics, parsing the text format, turning it into a view,
rendering it with rich. Prints the median and p99 of each stage in ms, the share of the 100 ms
frame budget the whole frame takes, and the load average (the figures scale with it). Fetching
runs on its own thread in `ortel top`, so the screen and the keys stay responsive even when a
frame's fetch is slow; this shows how much headroom there is.

    python benchmarks/top_frame.py [--frames 200] [--models 20] [--width 120]
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from ortel.exporter import top as t

EXTRA_MODELS = """
import os, sys, time
from ortel.instrumentation import track
n = int(sys.argv[1])
parent = os.getppid()
while os.getppid() == parent:
    for i in range(n):
        with track(f"model_{i:02d}", provider="CPUExecutionProvider"):
            pass
    time.sleep(0.01)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if b"ortel_inferences_total" in r.read():
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {timeout:.0f}s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--models", type=int, default=20, help="extra model series (0: demo only)")
    ap.add_argument("--width", type=int, default=120, help="terminal columns to render")
    args = ap.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    with tempfile.TemporaryDirectory(prefix="ortel-bench-") as mp:
        env = dict(os.environ, ORTEL_MULTIPROC_DIR=mp)
        launcher = "import sys; from ortel.exporter.cli import main; sys.exit(main())"
        serve = subprocess.Popen(
            [sys.executable, "-c", launcher, "serve", "--demo", "--multiproc-dir", mp]
            + ["--listen", f"127.0.0.1:{port}"],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        extra = subprocess.Popen([sys.executable, "-c", EXTRA_MODELS, str(args.models)], env=env)
        try:
            wait_ready(url)
            time.sleep(2.5)  # let the extra models' first snapshots land
            top = t.Top(t.HttpSource(url))
            console = Console(file=io.StringIO(), width=args.width, force_terminal=True)
            state = t.State()
            req = urllib.request.Request(url, headers={"Accept": "text/plain;version=0.0.4"})
            fetch, parse, view, draw, size = [], [], [], [], 0
            for _ in range(args.frames):
                t0 = time.perf_counter()
                with urllib.request.urlopen(req, timeout=5) as r:  # what HttpSource.fetch does
                    text = r.read().decode()
                t1 = time.perf_counter()
                samples = t._collect(text_string_to_metric_families(t.only(text, t.WANTED)))
                t2 = time.perf_counter()
                v = top.view(samples, time.monotonic())
                t3 = time.perf_counter()
                console.print(t.render(v, state, url, 10))
                console.file.seek(0), console.file.truncate()
                t4 = time.perf_counter()
                fetch.append(t1 - t0), parse.append(t2 - t1), view.append(t3 - t2)
                draw.append(t4 - t3)
                size = sum(len(x) for x in samples.values())
            with urllib.request.urlopen(url) as r:
                body = len(r.read())
        finally:
            extra.terminate()
            serve.terminate()
            extra.wait(10), serve.wait(15)

    total = [sum(x) for x in zip(fetch, parse, view, draw)]
    print(f"/metrics: {body / 1024:.0f} KiB, {size} samples, {len(v.rows)} model rows")
    print(f"{'stage':<22}{'median ms':>10}{'p99 ms':>10}")
    for name, xs in (
        ("fetch (HTTP)", fetch),
        ("filter + parse", parse),
        ("view", view),
        ("render (rich)", draw),
        ("frame", total),
    ):
        print(f"{name:<22}{np.median(xs) * 1e3:>10.2f}{np.percentile(xs, 99) * 1e3:>10.2f}")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    budget = 0.1
    print(
        f"frame / 100 ms budget (10 Hz): median {np.median(total) / budget:.2f}, "
        f"p99 {np.percentile(total, 99) / budget:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
