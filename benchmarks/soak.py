"""Soak: instrumented inference threads, a daemon with every collector, scrapes at 10 Hz.

    python benchmarks/soak.py --duration 600 --json soak.json

Runs on loopback only and stops by itself. A worker process runs ``--threads`` threads of real
onnxruntime inference (the 1-node Add model, one call in 100 with a malformed input so errors are
counted too) through the shim, writing snapshots to a multiprocess directory. ``ortel serve``
merges them with every collector enabled (sysfs from the test fixtures, so power, thermal and
hwmon collectors have something to read; procfs is the real one, since the daemon must see the
worker alive). The driver scrapes /metrics at ``--scrape-hz`` and samples both processes' RSS once
a second.

At the end it checks, and reports as JSON:

- counts exact: the daemon's ok and error totals equal the calls the worker's threads made;
- RSS growth after warm-up (daemon and worker): median of the last samples over the median of
  the samples just after warm-up, minus 1;
- scrape latency p50/p99/max, scrapes that failed;
- every collector's success in the final scrape, and the daemon's exit code on SIGTERM.

Exit status 0 when counts are exact, nothing failed and RSS grew at most ``--max-rss-growth``.
``tests/test_soak.py`` runs this script for ``ORTEL_SOAK_SECONDS`` (60 in CI).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURE_SYSFS = REPO / "tests" / "fixtures" / "sysfs"
ERROR_EVERY = 100  # default: one call in this many feeds a malformed input


# --- the instrumented worker (runs in its own process) -----------------------------------------


def worker(duration: float, threads: int, error_every: int = ERROR_EVERY) -> int:
    import numpy as np
    import onnxruntime as ort

    from ortel.instrumentation import instrument_session
    from ortel.instrumentation.models import add_model
    from ortel.instrumentation.recorder import RECORDER

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    session = instrument_session(
        ort.InferenceSession(add_model(), so, providers=["CPUExecutionProvider"]), "soak_add"
    )
    good = np.ones((1, 16), np.float32)
    bad = np.ones((1, 8), np.float32)
    ok = [0] * threads
    err = [0] * threads
    stop = time.monotonic() + duration

    def run(i: int) -> None:
        n = 0
        while time.monotonic() < stop:
            n += 1
            if error_every and n % error_every == 0:
                try:
                    session.run(None, {"x": bad, "y": good})
                except Exception:
                    err[i] += 1
                continue
            session.run(None, {"x": good, "y": good})
            ok[i] += 1

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    RECORDER.flush()  # the final snapshot, before we say what we did
    print(json.dumps({"ok": sum(ok), "errors": sum(err)}), flush=True)
    return 0


# --- the driver --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def scrape(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


def totals(body: str) -> tuple[dict[str, float], dict[str, float]]:
    """(ok/error inference totals, collector successes) from one /metrics body."""
    from prometheus_client.parser import text_string_to_metric_families

    counts = {"ok": 0.0, "error": 0.0}
    success: dict[str, float] = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            if s.name == "ortel_inferences_total":
                counts[s.labels["status"]] = counts.get(s.labels["status"], 0.0) + s.value
            elif s.name == "ortel_scrape_collector_success":
                success[s.labels["collector"]] = s.value
    return counts, success


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def growth(samples: list[tuple[float, int]], warmup: float, window: float = 3.0) -> dict:
    """RSS growth after warm-up. ``growth_ratio`` is the least-squares trend over every sample
    after warm-up (end of the fitted line over its start, minus 1): RSS swings by a few MiB with
    how full the shim's buffers are at the moment of sampling, and a trend sees through that
    where two end points would not. The medians of the first and last ``window`` seconds are
    reported beside it."""
    post = [(t, r) for t, r in samples if t >= warmup]
    if len(post) < 5:
        return {"baseline_bytes": None, "final_bytes": None, "growth_ratio": None}
    n = len(post)
    mt = sum(t for t, _ in post) / n
    mr = sum(r for _, r in post) / n
    var = sum((t - mt) ** 2 for t, _ in post)
    slope = sum((t - mt) * (r - mr) for t, r in post) / var if var else 0.0
    start = mr + slope * (post[0][0] - mt)
    end = mr + slope * (post[-1][0] - mt)
    first = [r for t, r in post if t < post[0][0] + window]
    last = [r for t, r in post if t > post[-1][0] - window]
    base, final = statistics.median(first), statistics.median(last)
    return {
        "baseline_bytes": int(base),
        "final_bytes": int(final),
        "peak_bytes": max(r for _, r in post),
        "median_growth_ratio": final / base - 1.0,
        "trend_bytes_per_s": slope,
        "growth_ratio": end / start - 1.0,
    }


def soak(
    duration: float,
    threads: int,
    scrape_hz: float,
    warmup: float | None,
    error_every: int = ERROR_EVERY,
    malloc_arena_max: int = 2,
) -> dict:
    from ortel.collectors.registry import SPECS

    warmup = max(5.0, duration * 0.25) if warmup is None else warmup
    tmp = tempfile.TemporaryDirectory(prefix="ortel-soak-")
    mdir = Path(tmp.name) / "multiproc"
    mdir.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORTEL_")}
    # The latency window's slices accumulate until the window is full: a window shorter than
    # the warm-up makes what follows the steady state (the default 60 s would need a longer run).
    window = max(5.0, min(60.0, warmup - 5.0))
    env["ORTEL_WINDOW_SECONDS"] = str(window)  # the worker's; the daemon's is --window
    if malloc_arena_max:
        # glibc gives each thread that allocates its own heap arena; eight inference threads
        # make eight arenas whose fragmentation grows RSS for minutes in any such process, with
        # or without ortel (docs/reliability.md). Two arenas, as often set for threaded Python
        # servers, leave growth that would be ortel's own.
        env["MALLOC_ARENA_MAX"] = str(malloc_arena_max)
    collectors = ",".join(s.name for s in SPECS)
    daemon_log = open(Path(tmp.name) / "daemon.log", "wb")  # noqa: SIM115 - closed below
    daemon = subprocess.Popen(
        [sys.executable, "-m", "ortel.exporter", "serve", "--listen", f"127.0.0.1:{port}"]
        + ["--multiproc-dir", str(mdir), "--collectors", collectors, "--window", str(window)]
        + (["--sysfs", str(FIXTURE_SYSFS)] if FIXTURE_SYSFS.is_dir() else []),
        env=env,
        stdout=daemon_log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    wenv = dict(env, ORTEL_MULTIPROC_DIR=str(mdir))
    result: dict = {
        "duration_s": duration,
        "threads": threads,
        "scrape_hz": scrape_hz,
        "window_s": window,
        "error_every": error_every,
        "malloc_arena_max": malloc_arena_max or None,
    }
    work = None
    try:
        deadline = time.monotonic() + 30
        while True:  # up?
            try:
                scrape(url, timeout=1)
                break
            except OSError:
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("ortel serve did not come up") from None
                time.sleep(0.1)
        work = subprocess.Popen(
            [sys.executable, __file__, "--worker", "--duration", str(duration)]
            + ["--threads", str(threads), "--error-every", str(error_every)],
            env=wenv,
            stdout=subprocess.PIPE,
            text=True,
        )
        latencies: list[float] = []
        failures: list[str] = []
        rss: dict[str, list[tuple[float, int]]] = {"daemon": [], "worker": []}
        t0 = time.monotonic()
        next_scrape, next_rss = t0, t0
        progress = _progress(duration)
        while work.poll() is None:
            now = time.monotonic()
            if now >= next_rss:
                for name, pid in (("daemon", daemon.pid), ("worker", work.pid)):
                    r = rss_bytes(pid)
                    if r is not None and now - t0 <= duration:  # under load, not exiting
                        rss[name].append((now - t0, r))
                next_rss += 1.0
                progress(now - t0)
            if now >= next_scrape:
                s0 = time.perf_counter()
                try:
                    scrape(url)
                    latencies.append(time.perf_counter() - s0)
                except OSError as e:
                    failures.append(f"{now - t0:.1f}s: {e}")
                next_scrape += 1.0 / scrape_hz
            time.sleep(max(0.0, min(next_scrape, next_rss) - time.monotonic()))
        progress(duration, done=True)
        out, _ = work.communicate(timeout=30)
        calls = json.loads(out.strip().splitlines()[-1])
        # The worker has exited: the daemon compacts its final snapshot into the archive.
        deadline = time.monotonic() + 15
        while True:
            counts, success = totals(scrape(url))
            if counts == {"ok": calls["ok"], "error": calls["errors"]}:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        result.update(
            calls_ok=calls["ok"],
            calls_error=calls["errors"],
            calls_per_second=(calls["ok"] + calls["errors"]) / duration,
            daemon_ok=counts["ok"],
            daemon_error=counts["error"],
            counts_exact=counts["ok"] == calls["ok"] and counts["error"] == calls["errors"],
            scrapes=len(latencies),
            scrape_failures=failures,
            scrape_p50_s=percentile(latencies, 0.50),
            scrape_p99_s=percentile(latencies, 0.99),
            scrape_max_s=max(latencies, default=float("nan")),
            collector_success=success,
            warmup_s=warmup,
            rss_daemon=growth(rss["daemon"], warmup),
            rss_worker=growth(rss["worker"], warmup),
            rss_samples={k: [(round(t, 1), r) for t, r in v] for k, v in rss.items()},
        )
    finally:
        if work is not None and work.poll() is None:
            work.kill()
            work.wait()
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                result["daemon_exit_code"] = daemon.wait(15)
            except subprocess.TimeoutExpired:
                daemon.kill()
                result["daemon_exit_code"] = None
        else:
            result["daemon_exit_code"] = daemon.returncode
        daemon_log.close()
        result["daemon_log_tail"] = (Path(tmp.name) / "daemon.log").read_text()[-2000:]
        tmp.cleanup()
    return result


def _progress(duration: float):
    """A rich progress bar on an interactive stderr; nothing otherwise (CI logs, tests)."""
    if not sys.stderr.isatty():
        return lambda elapsed, done=False: None
    from rich.progress import Progress

    p = Progress(transient=True)
    task = p.add_task("soak", total=duration)
    p.start()

    def update(elapsed: float, done: bool = False) -> None:
        p.update(task, completed=min(elapsed, duration))
        if done:
            p.stop()

    return update


def verdict(r: dict, max_growth: float) -> list[str]:
    """What failed, in words (empty: the soak held)."""
    bad = []
    if not r.get("counts_exact"):
        bad.append(
            f"counts differ: daemon ok={r.get('daemon_ok')} error={r.get('daemon_error')}, "
            f"threads ok={r.get('calls_ok')} error={r.get('calls_error')}"
        )
    if r.get("scrape_failures"):
        bad.append(f"{len(r['scrape_failures'])} scrapes failed: {r['scrape_failures'][:3]}")
    for name in ("rss_daemon", "rss_worker"):
        g = (r.get(name) or {}).get("growth_ratio")
        if g is None:
            bad.append(f"{name}: not enough RSS samples")
        elif g > max_growth:
            bad.append(f"{name} grew {g:.1%} after warm-up (limit {max_growth:.0%})")
    failed = [n for n, v in (r.get("collector_success") or {}).items() if v != 1.0]
    if failed:
        bad.append(f"collectors failed: {failed}")
    if r.get("daemon_exit_code") != 0:
        bad.append(f"daemon exited {r.get('daemon_exit_code')} on SIGTERM")
    return bad


def summary(r: dict) -> str:
    def mib(v: int | None) -> str:
        return "?" if v is None else f"{v / 2**20:.1f} MiB"

    lines = [
        f"soak: {r['duration_s']:.0f} s, {r['threads']} threads, scrapes at {r['scrape_hz']:g} Hz",
        f"  calls: {r.get('calls_ok')} ok + {r.get('calls_error')} errors "
        f"({r.get('calls_per_second', 0):.0f}/s); daemon: {r.get('daemon_ok'):.0f} ok + "
        f"{r.get('daemon_error'):.0f} errors; exact: {r.get('counts_exact')}",
        f"  scrapes: {r.get('scrapes')} ({len(r.get('scrape_failures') or [])} failed), "
        f"p50 {r.get('scrape_p50_s', 0) * 1e3:.1f} ms, "
        f"p99 {r.get('scrape_p99_s', 0) * 1e3:.1f} ms, "
        f"max {r.get('scrape_max_s', 0) * 1e3:.1f} ms",
    ]
    for name in ("rss_daemon", "rss_worker"):
        g = r.get(name) or {}
        ratio = g.get("growth_ratio")
        lines.append(
            f"  {name}: {mib(g.get('baseline_bytes'))} after {r.get('warmup_s', 0):.0f} s warm-up"
            f" -> {mib(g.get('final_bytes'))} at the end, peak {mib(g.get('peak_bytes'))}"
            + (
                ""
                if ratio is None
                else f"; growth {ratio:+.2%} (trend), {g['median_growth_ratio']:+.2%} (medians)"
            )
        )
    ok = sum(1 for v in (r.get("collector_success") or {}).values() if v == 1.0)
    lines.append(f"  collectors with success 1: {ok}/{len(r.get('collector_success') or {})}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--scrape-hz", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=None, help="default: max(5 s, 25%%)")
    ap.add_argument("--max-rss-growth", type=float, default=0.05)
    ap.add_argument(
        "--error-every",
        type=int,
        default=ERROR_EVERY,
        help=f"one call in N has a malformed input (default {ERROR_EVERY}; 0: none)",
    )
    ap.add_argument(
        "--malloc-arena-max",
        type=int,
        default=2,
        help="MALLOC_ARENA_MAX for both processes (default 2; 0: glibc's default, 8 per core)",
    )
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return worker(a.duration, a.threads, a.error_every)
    if a.duration <= 0 or a.threads < 1 or a.scrape_hz <= 0 or a.error_every < 0:
        print("soak: --duration, --threads and --scrape-hz must be positive", file=sys.stderr)
        return 2
    r = soak(a.duration, a.threads, a.scrape_hz, a.warmup, a.error_every, a.malloc_arena_max)
    problems = verdict(r, a.max_rss_growth)
    r["problems"] = problems
    if a.json:
        a.json.write_text(json.dumps(r, indent=2, default=str))
    print(summary(r))
    for p in problems:
        print(f"  FAILED: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
