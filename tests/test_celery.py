"""Counts are exact from a real Celery worker with the prefork pool (billiard), through every way
its pool children end: recycling after ``--max-tasks-per-child``, a ``pool_restart`` remote
control command, a warm shutdown (TERM to the main process while tasks run) and a cold one (QUIT:
the children are SIGTERMed in the middle of their tasks).

A pool child ends with ``os._exit``, SIGTERMed by its parent as soon as it reports its exit, so no
exit hook of Python's runs. Recycling, ``pool_restart`` and a cold shutdown end it milliseconds
after its last call, inside the 0.2 s between background flushes: only ortel's flush from Celery's
``worker_process_shutdown`` signal gets those calls to the daemon.

The broker is kombu's ``filesystem://`` transport in a temporary directory (tests/apps/
celery_app.py), so no broker service runs. Each task runs one inference, then logs its pid; the
test waits on that log, never a fixed time, and reads the directory the way ``ortel serve`` does.
"""

from __future__ import annotations

import contextlib
import importlib.util
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from celery import Celery
from test_deployments import (
    APPS,
    STOP_TIMEOUT,
    Counts,
    Proc,
    Sampler,
    children_of,
    deploy_env,
    started,
    wait_until,
)

CONCURRENCY = 2
MAX_TASKS = 10  # per pool child, then it is recycled
# Tasks before the pool restart (30 take at least three children: two recycled) and after it.
BEFORE_RESTART, AFTER_RESTART = 30, 25
RESTART_LIMIT = 100  # tasks sent while waiting for pool_restart to replace every child
# Seconds the tasks running at shutdown take: a warm shutdown waits for them; a cold one must not
# (longer than STOP_TIMEOUT: a cold shutdown that waited fails the test).
HOLD, COLD_HOLD = 1.0, 60.0


def load_app_module() -> ModuleType:
    """tests/apps/celery_app.py, imported here only to build a client app (it sends tasks)."""
    spec = importlib.util.spec_from_file_location("celery_app_client", APPS / "celery_app.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def done_pids(root: Path) -> list[int]:
    """The pid of the pool child that made each call (complete lines only)."""
    path = root / "done.log"
    text = path.read_text() if path.exists() else ""
    return [int(line) for line in text.split("\n")[:-1]]


def pool(worker: Proc) -> set[int]:
    """The worker's pool children (its only children); fails once the worker has exited."""
    if worker.proc.poll() is not None:
        raise AssertionError(f"worker exited with {worker.proc.returncode}\n{worker.output()}")
    return children_of(worker.pid)


class Sender:
    """A client app that writes messages into ``outbox``; ``deliver`` hands them to the worker
    (see tests/apps/celery_app.py: the transport's files are written in place)."""

    def __init__(self, app_module: ModuleType, root: Path, outbox: Path) -> None:
        self.app_module, self.root, self.outbox = app_module, root, outbox
        self.client: Celery = app_module.make_app(root, outbox=outbox)

    def deliver(self) -> None:
        self.app_module.deliver(self.root, self.outbox)


def run_tasks(sender: Sender, n: int, worker: Proc) -> list[int]:
    """Send ``n`` tasks; wait until all have finished; the pids that ran them."""
    root = sender.root
    before = len(done_pids(root))
    for i in range(n):
        sender.client.send_task("celery_app.work", args=(i,))
    sender.deliver()

    def finished() -> bool:
        pool(worker)
        return len(done_pids(root)) >= before + n

    wait_until(finished, 60, f"{n} tasks to finish")
    pids = done_pids(root)[before:]
    assert len(pids) == n, f"{len(pids)} tasks finished, {n} sent\n{worker.output()}"
    return pids


@contextlib.contextmanager
def celery_worker(tmp_path: Path, *options: str) -> Iterator[tuple[Proc, Sender, Counts]]:
    """A prefork worker with CONCURRENCY children, its pool started; the merged count sampled
    while the body runs (stop the worker in the body, assert after)."""
    mdir, root = tmp_path / "mp", tmp_path / "celery"
    app_module = load_app_module()
    sender = Sender(app_module, root, tmp_path / "outbox")
    argv = [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "--pool=prefork"]
    argv += [f"--concurrency={CONCURRENCY}", *options, "--loglevel=info"]
    argv += ["--without-heartbeat", "--without-gossip", "--without-mingle"]
    env = deploy_env(mdir, CELERY_APP_DIR=str(root))
    counts = Counts(mdir, app_module.MODEL)
    try:
        with started(argv, env, tmp_path, "celery") as worker, Sampler(counts):
            wait_until(lambda: len(pool(worker)) == CONCURRENCY, 60, "the pool to start")
            yield worker, sender, counts
    finally:
        sender.client.close()


def hold_every_child(sender: Sender, worker: Proc, hold: float) -> None:
    """Start a task that takes ``hold`` seconds in each child; wait until each made its call."""
    before = len(done_pids(sender.root))
    for i in range(CONCURRENCY):
        sender.client.send_task("celery_app.work", args=(i,), kwargs={"hold": hold})
    sender.deliver()

    def all_called() -> bool:
        pool(worker)
        return len(done_pids(sender.root)) == before + CONCURRENCY

    wait_until(all_called, 60, f"{CONCURRENCY} long tasks to make their calls")


def stop(worker: Proc, sig: signal.Signals) -> int:
    """Signal the main process; wait until it and every pool child have exited; its status."""
    t = time.monotonic()
    worker.signal(sig)
    rc = worker.wait(STOP_TIMEOUT)
    worker.wait_group_gone(STOP_TIMEOUT)
    print(f"{sig.name}: the worker exited {rc} after {time.monotonic() - t:.1f}s")
    return rc


def assert_exact(counts: Counts, root: Path, worker: Proc) -> None:
    """The merged count equals the calls the tasks made (lines in done.log)."""
    pids = done_pids(root)
    expected = len(pids)
    got = counts.settle(expected)
    print(f"{expected} calls by {len(set(pids))} pool children; merged {got}")
    assert got == expected, (
        f"merged {got} calls, expected exactly {expected} (made by pool children "
        f"{sorted(set(pids))}); {counts.describe()}\n{worker.output(1500)}"
    )
    counts.assert_monotonic()


@pytest.mark.slow
def test_recycling_pool_restart_and_warm_shutdown(tmp_path: Path) -> None:
    with celery_worker(tmp_path, f"--max-tasks-per-child={MAX_TASKS}") as (worker, sender, counts):
        # Recycling: at most MAX_TASKS per child, so 30 tasks take at least 3 children.
        first = run_tasks(sender, BEFORE_RESTART, worker)
        assert len(set(first)) > CONCURRENCY, f"no child was recycled: {sorted(set(first))}"

        # pool_restart: each child leaves once it has taken one more job (the restart's own
        # no-op task, or one of ours), right after running it; new children replace them.
        old = pool(worker)
        sender.client.control.pool_restart()
        sender.deliver()
        during: list[int] = []
        while pool(worker) & old or len(pool(worker)) != CONCURRENCY:
            assert len(during) < RESTART_LIMIT, (
                f"pool_restart: children {sorted(pool(worker) & old)} still run after "
                f"{len(during)} more tasks\n{worker.output()}"
            )
            during += run_tasks(sender, CONCURRENCY, worker)
        second = run_tasks(sender, AFTER_RESTART, worker)
        assert not set(second) & old, "a child from before the pool restart ran tasks"

        # Warm shutdown (TERM) while every child runs a task: the worker waits for them.
        hold_every_child(sender, worker, HOLD)
        assert stop(worker, signal.SIGTERM) == 0, worker.output()
    assert_exact(counts, sender.root, worker)


@pytest.mark.slow
def test_cold_shutdown(tmp_path: Path) -> None:
    """QUIT: the worker SIGTERMs its children in the middle of their tasks (several times over),
    each right after its call; the tasks never finish. Also: the pool must not hang there."""
    with celery_worker(tmp_path) as (worker, sender, counts):
        run_tasks(sender, 10, worker)
        hold_every_child(sender, worker, COLD_HOLD)
        stop(worker, signal.SIGQUIT)
    assert_exact(counts, sender.root, worker)
