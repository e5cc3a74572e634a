"""Concurrent scrapes of ``ortel serve`` side by side with node_exporter, and what 50 scrapers of
the shim's in-process server (``start_http_server``) cost the inference thread beside it.

Run it from the repository root (ortel installed; node_exporter from Debian's
``prometheus-node-exporter``, else its rows are left out)::

    python benchmarks/scrape_concurrency.py
    python benchmarks/scrape_concurrency.py --clients 10,50,200 --scrapes 20 --json out.json

Method: both daemons run with their defaults (ortel's default collectors, --web-max-requests 40;
node_exporter's default collectors, --web.max-requests 40). For each concurrency N, N clients
start together and each scrapes /metrics ``--scrapes`` times back to back, a new connection per
scrape (as curl in a loop does), with ``Accept-Encoding: gzip`` (as Prometheus sends), 5 s timeout.
The clients are one asyncio process, so the client side costs both daemons alike. Per run: latency
p50 and max over every scrape, status codes, and the daemon's CPU time (utime + stime from /proc)
per answered scrape, less its idle CPU rate measured beforehand (ortel samples in the background);
the 1-client run does at least 100 scrapes, as /proc counts CPU time in 10 ms ticks.
Then: 1,000 idle connections (half with an unfinished request) held open while 20 scrapes are
timed, and what an oversized header (100 KB) gets.

In-process server: a child process runs the CNN from ``ortel.instrumentation.models``
(instrumented, one intra-op thread) back to back on one thread and serves ``start_http_server``.
Each round has three phases of ``--seconds``: no scrapers; 50 scrapers each scraping once a second
a trivial server in another process that answers with the same gzip body (the control: on a small
machine the clients' own CPU competes with the inference thread too); the same 50 scrapers
scraping the child; the same again with the child collecting for every scrape (``max_age`` 0,
no reuse of a young collection). Ratios are inferences per second, median over rounds: scraped /
unscraped (everything, clients included) and scraped / control (what serving adds inside the
inference process). Phases rotate between rounds, so a drift in the machine's speed favours none;
on a machine shared with other jobs single rounds still spread widely.

    python benchmarks/scrape_concurrency.py --inprocess-only --rounds 12 --seconds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from ortel.instrumentation.recorder import FLUSH_INTERVAL

TIMEOUT = 5.0
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def _get(port: int, extra: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip\r\n"
        + extra
        + b"Connection: close\r\n\r\n"
    )
    try:
        return await reader.read()
    finally:
        writer.close()


async def scrape(port: int, extra: bytes = b"") -> tuple[int, float]:
    """(status, seconds); status 0: timed out, -1: connection error."""
    t0 = time.perf_counter()
    try:
        data = await asyncio.wait_for(_get(port, extra), TIMEOUT)
        status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else -1
    except asyncio.TimeoutError:
        status = 0
    except OSError:
        status = -1
    return status, time.perf_counter() - t0


async def clients(port: int, n: int, scrapes: int) -> list[tuple[int, float]]:
    async def one() -> list[tuple[int, float]]:
        return [await scrape(port) for _ in range(scrapes)]

    runs = await asyncio.gather(*(one() for _ in range(n)))
    return [r for run in runs for r in run]


def run_load(pid: int, port: int, n: int, scrapes: int, idle_rate: float) -> dict[str, Any]:
    c0, t0 = cpu_seconds(pid), time.perf_counter()
    results = asyncio.run(clients(port, n, scrapes))
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(pid) - c0 - idle_rate * wall
    lat = sorted(s for _, s in results)
    codes: dict[str, int] = {}
    for code, _ in results:
        codes[str(code)] = codes.get(str(code), 0) + 1
    ok = codes.get("200", 0)
    return {
        "p50_ms": 1e3 * statistics.median(lat),
        "max_ms": 1e3 * lat[-1],
        "codes": codes,
        "cpu_ms_per_scrape": 1e3 * max(cpu, 0.0) / ok if ok else float("nan"),
    }


def idle_connections(port: int, n: int = 1000) -> dict[str, Any]:
    held = []
    try:
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if i % 2:
                s.sendall(b"GET /metrics HTTP/1.1\r\n")
            held.append(s)
        time.sleep(0.5)
        results = [asyncio.run(scrape(port)) for _ in range(20)]
    finally:
        for s in held:
            s.close()
    lat = sorted(t for _, t in results)
    codes = sorted({c for c, _ in results})
    return {"p50_ms": 1e3 * statistics.median(lat), "max_ms": 1e3 * lat[-1], "codes": codes}


def oversized_header(port: int) -> int:
    return asyncio.run(scrape(port, b"X-Big: " + b"a" * 100_000 + b"\r\n"))[0]


def wait_up(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[0]} exited with {proc.returncode}")
        if asyncio.run(scrape(port))[0] == 200:
            return
        time.sleep(0.2)
    raise SystemExit(f"{proc.args[0]} did not answer on port {port}")


def idle_rate(pid: int, seconds: float = 3.0) -> float:
    c0 = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - c0) / seconds


CHILD = textwrap.dedent(
    """
    import sys, threading, time
    import numpy as np, onnxruntime as ort
    from ortel.instrumentation import models
    from ortel.instrumentation.recorder import Recorder
    from ortel.instrumentation.server import start_http_server
    from ortel.instrumentation.session import instrument_session

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    rec = Recorder()
    sess = instrument_session(
        ort.InferenceSession(models.cnn_model(), so, providers=["CPUExecutionProvider"]),
        "cnn", recorder=rec)
    feeds = {"image": np.random.default_rng(0).standard_normal((1, 3, 64, 64), np.float32)}
    server, _ = start_http_server(int(sys.argv[1]), recorder=rec)
    count = 0

    def infer():
        global count
        while True:
            sess.run(None, feeds)
            count += 1

    threading.Thread(target=infer, daemon=True).start()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip():  # the reuse window of the next phase (0: a collection per scrape)
            server.scrapes.max_age = float(line)
        print(count, time.perf_counter(), flush=True)
    """
)

# The control: answers any request with a fixed body, as little work per scrape as a server can do.
CONTROL = textwrap.dedent(
    """
    import asyncio, sys
    body = open(sys.argv[2], "rb").read()
    head = (
        "HTTP/1.1 200 OK\\r\\nContent-Type: text/plain; version=0.0.4; charset=utf-8\\r\\n"
        f"Content-Encoding: gzip\\r\\nContent-Length: {len(body)}\\r\\n"
        "Connection: close\\r\\n\\r\\n"
    ).encode()

    async def answer(reader, writer):
        try:
            await reader.readuntil(b"\\r\\n\\r\\n")
            writer.write(head + body)
            await writer.drain()
        finally:
            writer.close()

    async def serve():
        server = await asyncio.start_server(answer, "127.0.0.1", int(sys.argv[1]), backlog=4096)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())
    """
)


async def _gzip_body(port: int) -> bytes:
    data = await _get(port, b"")
    return data.split(b"\r\n\r\n", 1)[1]


def inprocess(rounds: int, seconds: float, scrapers: int) -> dict[str, Any]:
    port, control_port = free_port(), free_port()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    control: subprocess.Popen[str] | None = None
    tmp = tempfile.TemporaryDirectory()
    assert child.stdin is not None and child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(2.0)  # warm-up
        body = Path(tmp.name) / "body"
        body.write_bytes(asyncio.run(_gzip_body(port)))
        control = subprocess.Popen(
            [sys.executable, "-c", CONTROL, str(control_port), str(body)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert control.stdout is not None and control.stdout.readline().strip() == "ready"

        def mark(max_age: float | None = None) -> tuple[int, float, float]:
            line = "" if max_age is None else repr(max_age)
            child.stdin.write(line + "\n")  # type: ignore[union-attr]
            child.stdin.flush()  # type: ignore[union-attr]
            n, t = child.stdout.readline().split()  # type: ignore[union-attr]
            return int(n), float(t), cpu_seconds(child.pid)

        async def paced(target: int) -> list[tuple[int, float]]:
            async def one(offset: float) -> list[tuple[int, float]]:
                await asyncio.sleep(offset)
                out, due = [], time.monotonic()
                end = due + seconds - offset
                while due < end:  # no sleep after the last scrape: the phase ends with it
                    out.append(await scrape(target))
                    due += 1.0
                    await asyncio.sleep(max(0.0, due - time.monotonic()) if due < end else 0.0)
                return out

            runs = await asyncio.gather(*(one(i / scrapers) for i in range(scrapers)))
            return [r for run in runs for r in run]

        # "fresh": the server collecting for every scrape (max_age 0), as ortel did before it
        # reused collections younger than FLUSH_INTERVAL; kept to show what the reuse buys.
        phases = ["unscraped", "control", "scraped", "fresh"]
        rates: dict[str, list[float]] = {k: [] for k in phases}
        cpu: dict[str, list[float]] = {k: [] for k in phases}
        results: list[tuple[int, float]] = []
        for i in range(rounds):
            k = i % len(phases)
            for phase in phases[k:] + phases[:k]:
                n0, t0, c0 = mark(0.0 if phase == "fresh" else FLUSH_INTERVAL)
                if phase == "unscraped":
                    time.sleep(seconds)
                else:
                    got = asyncio.run(paced(control_port if phase == "control" else port))
                    if phase == "scraped":
                        results += got
                n1, t1, c1 = mark()
                rates[phase].append((n1 - n0) / (t1 - t0))
                cpu[phase].append((c1 - c0) / (t1 - t0))

        def ratios(a: str, b: str) -> list[float]:
            return [x / y for x, y in zip(rates[a], rates[b])]

        vs_unscraped, vs_control = ratios("scraped", "unscraped"), ratios("scraped", "control")
        control_vs = ratios("control", "unscraped")
        fresh_vs_control = ratios("fresh", "control")
        lat = sorted(t for _, t in results)
        return {
            "ratio_median": statistics.median(vs_unscraped),
            "ratios": vs_unscraped,
            "ratio_vs_control_median": statistics.median(vs_control),
            "ratios_vs_control": vs_control,
            "control_vs_unscraped_median": statistics.median(control_vs),
            "fresh_vs_unscraped_median": statistics.median(ratios("fresh", "unscraped")),
            "fresh_vs_control_median": statistics.median(fresh_vs_control),
            "ratios_fresh_vs_control": fresh_vs_control,
            "inferences_per_s": {k: statistics.median(v) for k, v in rates.items()},
            "child_cpu_per_s": {k: statistics.median(v) for k, v in cpu.items()},
            "scrapes": len(results),
            "codes": sorted({c for c, _ in results}),
            "p50_ms": 1e3 * statistics.median(lat),
            "max_ms": 1e3 * lat[-1],
        }
    finally:
        for proc in (child, control):
            if proc is not None:
                proc.kill()
                proc.wait()
        tmp.cleanup()


def daemons(args: argparse.Namespace, out: dict[str, Any]) -> None:
    levels = [int(x) for x in args.clients.split(",")]

    targets: dict[str, list[str]] = {}
    ortel_port, ne_port = free_port(), free_port()
    targets["ortel"] = [sys.executable, "-m", "ortel.exporter", "serve"]
    targets["ortel"] += ["--listen", f"127.0.0.1:{ortel_port}", "--log-level", "warning"]
    ne = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if ne:
        targets["node_exporter"] = [ne, f"--web.listen-address=127.0.0.1:{ne_port}"]
    else:
        print("node_exporter not found (apt-get install prometheus-node-exporter): ortel only")
    ports = {"ortel": ortel_port, "node_exporter": ne_port}
    procs = {
        name: subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for name, cmd in targets.items()
    }
    try:
        for name, proc in procs.items():
            wait_up(ports[name], proc)
        rates = {name: idle_rate(proc.pid) for name, proc in procs.items()}
        print(f"{os.cpu_count()} CPUs; {args.scrapes} scrapes per client, new connection each")
        head = f"{'clients':>7}  {'server':<13} {'p50 ms':>7} {'max ms':>7} {'CPU ms/scrape':>13}"
        print(head + "  codes")
        for n in levels:
            for name, proc in procs.items():
                per = max(args.scrapes, 100) if n == 1 else args.scrapes  # CPU ticks: 10 ms
                r = run_load(proc.pid, ports[name], n, per, rates[name])
                out["load"].setdefault(str(n), {})[name] = r
                codes = " ".join(f"{k}:{v}" for k, v in sorted(r["codes"].items()))
                print(
                    f"{n:>7}  {name:<13} {r['p50_ms']:>7.1f} {r['max_ms']:>7.1f} "
                    f"{r['cpu_ms_per_scrape']:>13.2f}  {codes}"
                )
        if "1" in out["load"] and "50" in out["load"]:
            for name in procs:
                one, fifty = out["load"]["1"][name], out["load"]["50"][name]
                ratio = fifty["cpu_ms_per_scrape"] / one["cpu_ms_per_scrape"]
                print(f"CPU per scrape, 50 clients / 1 client, {name}: {ratio:.2f}x")
        for name in procs:
            r = out["idle"][name] = idle_connections(ports[name])
            print(
                f"1,000 idle connections open, 20 scrapes of {name}: p50 {r['p50_ms']:.1f} ms, "
                f"max {r['max_ms']:.1f} ms, codes {r['codes']}"
            )
        for name in procs:
            code = out["431"][name] = oversized_header(ports[name])
            print(f"100 KB header to {name}: {code}")
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(10)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", default="1,10,50,200", help="concurrencies to run")
    p.add_argument("--scrapes", type=int, default=20, help="scrapes per client")
    p.add_argument("--rounds", type=int, default=12, help="in-process: rounds")
    p.add_argument("--seconds", type=float, default=2.0, help="in-process: seconds per phase")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument(
        "--inprocess-only", action="store_true", help="only the in-process server's cost"
    )
    args = p.parse_args(argv)
    out: dict[str, Any] = {"cpus": os.cpu_count(), "load": {}, "idle": {}, "431": {}}
    if not args.inprocess_only:
        daemons(args, out)
    r = out["inprocess"] = inprocess(args.rounds, args.seconds, 50)
    print(
        f"in-process server, 50 scrapers at 1/s each ({r['scrapes']} scrapes, codes "
        f"{r['codes']}, p50 {r['p50_ms']:.1f} ms, max {r['max_ms']:.1f} ms), inference "
        f"throughput, median of {args.rounds} rounds:\n"
        f"  scraped / unscraped: {r['ratio_median']:.3f}x (rounds: "
        + ", ".join(f"{x:.3f}" for x in r["ratios"])
        + ")\n"
        f"  scraped / control (the same clients scraping another process): "
        f"{r['ratio_vs_control_median']:.3f}x (rounds: "
        + ", ".join(f"{x:.3f}" for x in r["ratios_vs_control"])
        + ")\n  collecting for every scrape (no reuse): scraped / unscraped "
        f"{r['fresh_vs_unscraped_median']:.3f}x, scraped / control "
        f"{r['fresh_vs_control_median']:.3f}x (rounds: "
        + ", ".join(f"{x:.3f}" for x in r["ratios_fresh_vs_control"])
        + f")\n  control / unscraped: {r['control_vs_unscraped_median']:.3f}x; inferences/s "
        + ", ".join(f"{k} {v:.0f}" for k, v in r["inferences_per_s"].items())
        + "; inference process CPU (cores) "
        + ", ".join(f"{k} {v:.2f}" for k, v in r["child_cpu_per_s"].items())
    )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
