"""Counts are exact in real deployments: every way Python programs start, recycle and stop
processes, each process handing its counts to the daemon through ``ORTEL_MULTIPROC_DIR``.

Real processes throughout (tests/apps/): ``multiprocessing`` with each start method, process pools,
raw ``os.fork()``, gunicorn (sync and uvicorn workers, with and without ``--preload``, through HUP,
TERM and ``--max-requests``), ``uvicorn --workers``, and a process killed with SIGKILL. The test
reads the directory the way ``ortel serve`` does (``MultiprocReader``) and compares with what the
processes did: calls they made, or requests answered 200 (each runs exactly one inference).
Nothing waits a fixed time: every wait polls a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from harness import LOOPBACK, free_port

from ortel.collectors.multiproc_reader import MergeResult, MultiprocReader

APPS = Path(__file__).resolve().parent / "apps"
START_METHODS = ["fork", "forkserver", "spawn"]
# Seconds the merged count may take to reach its final value once every process has exited (all
# they wrote is on disk by then, so one read should do; the margin is for slow disks).
SETTLE = 3.0


# -- reading counts the way the daemon does -----------------------------------------------------


def ok_count(res: MergeResult, model: str) -> int:
    """Successful calls of ``model`` (any provider) in a merge."""
    return sum(st.ok.count for (m, _), st in res.series.items() if m == model)


def error_count(res: MergeResult, model: str) -> int:
    return sum(st.error.count for (m, _), st in res.series.items() if m == model)


class Counts:
    """The merged count of one model, read by one long-lived reader (as the daemon keeps one);
    remembers every value it read so a test can assert the counter never went backwards."""

    def __init__(self, directory: Path, model: str) -> None:
        self.directory = directory
        self.model = model
        self.reader = MultiprocReader(directory)
        self.seen: list[int] = []
        self.last: MergeResult | None = None

    def read(self) -> int:
        self.last = self.reader.read()
        n = ok_count(self.last, self.model)
        self.seen.append(n)
        return n

    def settle(self, expected: int, timeout: float = SETTLE) -> int:
        """Read until the count is ``expected`` or the deadline passes; the last count read."""
        deadline = time.monotonic() + timeout
        while (n := self.read()) != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        return n

    def describe(self) -> str:
        res = self.last
        files = sorted(p.name for p in self.directory.iterdir()) if self.directory.exists() else []
        if res is None:
            return f"no read yet; files: {files}"
        return (
            f"live={res.live} archived={res.archived} errors={error_count(res, self.model)} "
            f"bad_files={res.bad_files} series={sorted(res.series)}; files: {files}"
        )

    def assert_monotonic(self) -> None:
        drops = [(i, a, b) for i, (a, b) in enumerate(zip(self.seen, self.seen[1:])) if b < a]
        assert not drops, (
            f"the merged count went backwards (read #, before, after): {drops[:10]}; "
            f"{len(self.seen)} reads, last {self.seen[-5:]}"
        )


class Sampler:
    """Reads ``counts`` every ``interval`` seconds on a thread while the body runs; the only
    reader while it runs (the reader compacts the directory, like the daemon)."""

    def __init__(self, counts: Counts, interval: float = 0.1) -> None:
        self.counts = counts
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="count-sampler", daemon=True)
        self.error: BaseException | None = None

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self.counts.read()
                self._stop.wait(self.interval)
        except BaseException as e:  # raised again by __exit__
            self.error = e

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the count sampler is stuck"
        if self.error is not None and exc[0] is None:
            raise self.error


# -- processes ---------------------------------------------------------------------------------


def deploy_env(mdir: Path, **extra: str) -> dict[str, str]:
    """This environment without ORTEL_* settings, plus the directory and tests/apps on the path
    (prepended, so a PYTHONPATH pointing at another ortel checkout still applies)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORTEL_")}
    env["ORTEL_MULTIPROC_DIR"] = str(mdir)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(APPS), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def wait_until(cond: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def children_of(pid: int) -> set[int]:
    """Pids whose parent is ``pid`` (zombies excluded: they have exited)."""
    out = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != b"Z":
            out.add(int(entry.name))
    return out


class Proc:
    """A process in its own session, output to files; stopping kills what is left of its group."""

    def __init__(self, argv: list[str], env: dict[str, str], workdir: Path, name: str) -> None:
        self.argv = argv
        workdir.mkdir(parents=True, exist_ok=True)
        self.out_path = workdir / f"{name}.out"
        self.err_path = workdir / f"{name}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self.pid = self.proc.pid

    def output(self, limit: int = 3000) -> str:
        def tail(p: Path) -> str:
            text = p.read_text(errors="replace") if p.exists() else ""
            return text[-limit:] or "<empty>"

        return (
            f"command: {' '.join(self.argv)}\n--- stderr ---\n{tail(self.err_path)}\n"
            f"--- stdout ---\n{tail(self.out_path)}"
        )

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.argv[2:4]} still running after {timeout:.0f}s\n{self.output()}"
            ) from None

    def wait_group_gone(self, timeout: float) -> None:
        """Until every process of its session (workers included) has exited."""

        def gone() -> bool:
            try:
                os.killpg(self.pid, 0)
            except ProcessLookupError:
                return True
            return False

        wait_until(gone, timeout, f"the processes of {self.argv[2:4]} to exit")

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


@contextlib.contextmanager
def started(argv: list[str], env: dict[str, str], workdir: Path, name: str) -> Iterator[Proc]:
    p = Proc(argv, env, workdir, name)
    try:
        yield p
    finally:
        p.kill_group()


# -- multiprocessing, process pools, raw fork ----------------------------------------------------

CALLS = 300  # per child or task
TASKS = 4


def run_children(
    tmp_path: Path, scenario: str, method: str, parent_calls: int, workers: int = 2
) -> Counts:
    mdir = tmp_path / "mp"
    mdir.mkdir()
    argv = [sys.executable, str(APPS / "mp_children.py"), scenario, method]
    argv += ["--parent-calls", str(parent_calls), "--tasks", str(TASKS), "--calls", str(CALLS)]
    argv += ["--workers", str(workers)]
    done = subprocess.run(argv, env=deploy_env(mdir), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{argv} exited {done.returncode}\n{done.stderr[-3000:]}"
    print(done.stdout.strip())  # which processes did the work, for a failure's report
    return Counts(mdir, "mp")


def assert_exact(counts: Counts, expected: int, what: str) -> None:
    got = counts.settle(expected)
    assert got == expected, f"{what}: merged {got} calls, expected exactly {expected}; " + (
        counts.describe()
    )
    counts.assert_monotonic()


@pytest.mark.slow
@pytest.mark.parametrize("parent_calls", [0, 100])
@pytest.mark.parametrize("method", START_METHODS)
def test_process_objects(tmp_path: Path, method: str, parent_calls: int) -> None:
    """4 Process objects x 300 calls after the parent made ``parent_calls`` (counted once)."""
    counts = run_children(tmp_path, "process", method, parent_calls)
    assert_exact(counts, parent_calls + TASKS * CALLS, f"{method} Process objects")


@pytest.mark.slow
@pytest.mark.parametrize("method", START_METHODS)
def test_pool_map_in_with_block(tmp_path: Path, method: str) -> None:
    """``with Pool(2) as p: p.map(...)``: leaving the block SIGTERMs the workers right after the
    last result came back; their calls must already be handed over."""
    counts = run_children(tmp_path, "pool", method, parent_calls=100)
    assert_exact(counts, 100 + TASKS * CALLS, f"{method} Pool.map in a with block")


@pytest.mark.slow
@pytest.mark.parametrize("method", START_METHODS)
def test_process_pool_executor(tmp_path: Path, method: str) -> None:
    counts = run_children(tmp_path, "executor", method, parent_calls=100)
    assert_exact(counts, 100 + TASKS * CALLS, f"{method} ProcessPoolExecutor")


@pytest.mark.parametrize("parent_calls", [0, 100])
def test_raw_fork_children_exiting_normally(tmp_path: Path, parent_calls: int) -> None:
    """os.fork() children that end through sys.exit or by returning (atexit runs); the parent's
    calls from before the fork count once, not once more per child."""
    counts = run_children(tmp_path, "rawfork", "fork", parent_calls)
    assert_exact(counts, parent_calls + TASKS * CALLS, "raw os.fork() children")


# -- SIGKILL -------------------------------------------------------------------------------------

KILL_LOSS = 0.25  # seconds of calls a SIGKILLed process may lose
BATCH, TICK = 10, 0.005  # steady.py records BATCH calls every TICK seconds (2000 calls/s)


def read_log(path: Path) -> list[tuple[float, int]]:
    """(monotonic time, calls made by then) per complete line of a steady.py log."""
    text = path.read_text() if path.exists() else ""
    lines = text.split("\n")[:-1]  # the last piece is empty or a line still being written
    return [(float(t), int(n)) for t, n in (line.split() for line in lines)]


def made_by(log: list[tuple[float, int]], t: float) -> int:
    return max((n for when, n in log if when <= t), default=0)


@pytest.mark.slow
def test_sigkill_loses_at_most_the_last_quarter_second(tmp_path: Path) -> None:
    """Three processes record calls steadily; each is SIGKILLed at another moment of its life
    (so at another phase of any periodic flush). Each may lose only what it recorded in its last
    0.25 s: made_by(kill - 0.25 s) <= merged <= made (the log line of the last batch may be
    missing: up to one batch more than logged may have been recorded)."""
    mdir = tmp_path / "mp"
    mdir.mkdir()
    env = deploy_env(mdir)
    ages = [1.3, 1.55, 1.8]  # seconds each runs before its kill; 0.25 s apart
    results = []
    for i, age in enumerate(ages):
        model, log_path = f"steady{i}", tmp_path / f"steady{i}.log"
        argv = [
            sys.executable,
            str(APPS / "steady.py"),
            model,
            str(log_path),
            str(BATCH),
            str(TICK),
        ]
        with started(argv, env, tmp_path, model) as p:
            wait_until(lambda lp=log_path: bool(read_log(lp)), 30, f"{model} to start recording")
            first = read_log(log_path)[0][0]
            wait_until(lambda f=first, a=age: time.monotonic() >= f + a, 10, "its kill time")
            killed_at = time.monotonic()
            p.signal(signal.SIGKILL)
            assert p.wait(10) == -signal.SIGKILL
        log = read_log(log_path)
        counts = Counts(mdir, model)
        merged = counts.read()
        lower, logged = made_by(log, killed_at - KILL_LOSS), log[-1][1]
        results.append((model, age, lower, merged, logged))
    report = "; ".join(
        f"{m} killed {a:.2f}s after its first call: needed >= {lo}, merged {n}, made {hi} "
        f"(+{BATCH} unlogged at most)"
        for m, a, lo, n, hi in results
    )
    for _, _, lower, merged, logged in results:
        assert lower <= merged <= logged + BATCH, report


# -- prefork servers -----------------------------------------------------------------------------

MAX_REQUESTS = 50
WORKERS = 2
STOP_TIMEOUT = 30.0
PHASE_LIMIT = 600  # requests a phase may send before what it waits for must have happened


@dataclass
class Client:
    """Sends GET /infer from a few threads; counts the 200s (each ran exactly one inference).

    Connections refused or reset while workers turn over never reached a handler (servers
    finish the requests they started before a worker exits), so they ran no inference."""

    url: str
    threads: int = 4
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    pids: set[int] = field(default_factory=set)  # the workers that answered
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def one(self) -> None:
        try:
            with urllib.request.urlopen(f"{self.url}/infer", timeout=30) as resp:
                body = resp.read().decode()
                status = resp.status
        except urllib.error.HTTPError as e:
            status = e.code
        except OSError as e:
            with self._lock:
                self.failed.append(repr(e))
            time.sleep(0.01)  # no server to answer right now: don't spin
            return
        with self._lock:
            if status == 200:
                self.ok += 1
                self.pids.add(int(body.split()[0]))
            else:
                self.failed.append(f"HTTP {status}")

    def run(self, n: int | None, stop: threading.Event | None = None) -> None:
        """Send ``n`` requests (None: until ``stop`` is set) over ``threads`` threads."""
        left = [n]

        def loop() -> None:
            while not (stop is not None and stop.is_set()):
                with self._lock:
                    if left[0] is not None:
                        if left[0] == 0:
                            return
                        left[0] -= 1
                self.one()

        ts = [threading.Thread(target=loop) for _ in range(self.threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    def trickle_until(self, cond: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        """One request at a time, a short pause between, until ``cond()`` holds: every worker
        then waits in accept, so a freshly started one gets requests too, and no worker runs
        into its request limit on the way (under full load one busy worker can keep recycling
        while its new sibling is still booting)."""
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what}: not seen after {timeout:.0f}s ({self.ok} answered 200 by "
                    f"{sorted(self.pids)}, {len(self.failed)} failed: {self.failed[-3:]})"
                )
            self.one()
            time.sleep(0.02)

    def run_until(self, cond: Callable[[], bool], what: str) -> None:
        """Send rounds of requests until ``cond()`` holds."""
        sent = 0
        while not cond():
            if sent >= PHASE_LIMIT:
                raise AssertionError(
                    f"{what}: not seen after {sent} requests ({self.ok} answered 200 by "
                    f"{sorted(self.pids)}, {len(self.failed)} failed: {self.failed[-3:]})"
                )
            self.run(self.threads)
            sent += self.threads

    @contextlib.contextmanager
    def loading(self) -> Iterator[None]:
        """Requests keep going in the background while the body runs."""
        stop = threading.Event()
        t = threading.Thread(target=self.run, args=(None, stop), name="client")
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join()


def wait_ready(url: str, server: Proc, workers: int, timeout: float = 60.0) -> None:
    def answers() -> bool:
        if server.proc.poll() is not None:
            raise AssertionError(f"server exited with {server.proc.returncode}\n{server.output()}")
        try:
            with urllib.request.urlopen(f"{url}/pid", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    wait_until(answers, timeout, f"{url} to answer", interval=0.1)
    wait_until(lambda: len(worker_pids(server.pid)) == workers, timeout, f"{workers} workers")


def worker_pids(master: int) -> set[int]:
    """The master's children that are workers (not multiprocessing's helper processes)."""
    out = set()
    for pid in children_of(master):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" not in cmd and b"forkserver" not in cmd:
            out.add(pid)
    return out


def recycle(client: Client, server: Proc, workers: int) -> None:
    """Load until one of the current workers has exited after MAX_REQUESTS and a worker that
    replaced it has answered; then until the master runs ``workers`` workers again."""
    generation = worker_pids(server.pid)
    answered_before = set(client.pids)
    client.run_until(
        lambda: bool(client.pids - generation - answered_before),
        f"a worker of {sorted(generation)} recycled after {MAX_REQUESTS} requests",
    )
    wait_until(lambda: len(worker_pids(server.pid)) == workers, 60, f"{workers} workers again")


def reload(client: Client, server: Proc, workers: int) -> None:
    """SIGHUP the master under load; wait until every worker it had is gone and ``workers`` new
    ones run."""
    old = worker_pids(server.pid)
    with client.loading():
        before = client.ok
        wait_until(lambda: client.ok >= before + 20, 60, "load to get going")
        server.signal(signal.SIGHUP)

        def replaced() -> bool:
            now = worker_pids(server.pid)
            return not (now & old) and len(now) == workers

        wait_until(replaced, 60, f"HUP to replace workers {sorted(old)}", interval=0.1)


def shut_down(client: Client, server: Proc, workers: int) -> None:
    """Load until every running worker has answered (so each holds fresh calls), then SIGTERM the
    master with no request in flight, so every worker is stopped by the TERM (none can exit at
    MAX_REQUESTS first); wait until it and every worker have exited."""

    def all_answered() -> bool:
        now = worker_pids(server.pid)
        return len(now) == workers and now <= client.pids

    client.trickle_until(all_answered, "every running worker to answer")
    server.signal(signal.SIGTERM)
    rc = server.wait(STOP_TIMEOUT)
    server.wait_group_gone(STOP_TIMEOUT)
    assert rc == 0, f"server exited {rc} on SIGTERM\n{server.output()}"


def exercise(server: Proc, url: str, counts: Counts, workers: int) -> Client:
    """The life every server test puts its server through, the merged count sampled all along:
    recycling after MAX_REQUESTS, a graceful reload (HUP) under load, recycling of the reloaded
    workers, then shutdown (TERM)."""
    wait_ready(url, server, workers)
    client = Client(url)
    with Sampler(counts):
        recycle(client, server, workers)
        reload(client, server, workers)
        recycle(client, server, workers)
        shut_down(client, server, workers)
    return client


def assert_served_exactly(counts: Counts, client: Client, server: Proc) -> None:
    served, workers, failed = client.ok, len(client.pids), client.failed
    got = counts.settle(served)
    print(f"{served} answered 200 by {workers} workers, {len(failed)} failed; merged {got}")
    assert got == served, (
        f"merged {got} inferences, but {served} requests were answered 200 by {workers} "
        f"workers ({len(failed)} failed: {failed[:3]}); {counts.describe()}\n{server.output(1500)}"
    )
    counts.assert_monotonic()


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    from ortel.instrumentation.models import add_model

    path = tmp_path / "adder.onnx"
    path.write_bytes(add_model())
    return path


def gunicorn_argv(app: str, worker_class: str, port: int, preload: bool) -> list[str]:
    argv = [sys.executable, "-m", "gunicorn", app, "--bind", f"{LOOPBACK}:{port}"]
    argv += ["--workers", str(WORKERS), "--worker-class", worker_class]
    argv += ["--max-requests", str(MAX_REQUESTS), "--max-requests-jitter", "0"]
    argv += ["--graceful-timeout", "20", "--log-level", "info"]
    return argv + (["--preload"] if preload else [])


@pytest.mark.slow
@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
def test_gunicorn_sync_workers(tmp_path: Path, preload: bool) -> None:
    mdir = tmp_path / "mp"
    port = free_port()
    argv = gunicorn_argv("wsgi_app:app", "sync", port, preload)
    counts = Counts(mdir, "wsgi")
    with started(argv, deploy_env(mdir), tmp_path, "gunicorn") as server:
        client = exercise(server, f"http://{LOOPBACK}:{port}", counts, WORKERS)
    assert_served_exactly(counts, client, server)


@pytest.mark.slow
@pytest.mark.parametrize("preload", [False, True], ids=["no-preload", "preload"])
def test_gunicorn_uvicorn_workers(tmp_path: Path, model_file: Path, preload: bool) -> None:
    mdir = tmp_path / "mp"
    port = free_port()
    argv = gunicorn_argv("fastapi_app:app", "uvicorn.workers.UvicornWorker", port, preload)
    env = deploy_env(mdir, DEPLOY_MODEL_PATH=str(model_file))
    counts = Counts(mdir, model_file.stem)
    with started(argv, env, tmp_path, "gunicorn") as server:
        client = exercise(server, f"http://{LOOPBACK}:{port}", counts, WORKERS)
    assert_served_exactly(counts, client, server)


@pytest.mark.slow
def test_uvicorn_workers(tmp_path: Path, model_file: Path) -> None:
    """``uvicorn --workers``: spawned workers, HUP restarts them, --limit-max-requests recycles."""
    mdir = tmp_path / "mp"
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--host", LOOPBACK]
    argv += ["--port", str(port), "--workers", str(WORKERS)]
    argv += ["--limit-max-requests", str(MAX_REQUESTS), "--no-access-log"]
    env = deploy_env(mdir, DEPLOY_MODEL_PATH=str(model_file))
    counts = Counts(mdir, model_file.stem)
    with started(argv, env, tmp_path, "uvicorn") as server:
        client = exercise(server, f"http://{LOOPBACK}:{port}", counts, WORKERS)
    assert_served_exactly(counts, client, server)
