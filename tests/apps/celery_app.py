"""A Celery app whose task runs one ``@profiled`` inference (model ``celery``).

    ORTEL_MULTIPROC_DIR=... CELERY_APP_DIR=DIR celery -A celery_app worker --pool=prefork ...

The broker is kombu's ``filesystem://`` transport under DIR (no network service), so the worker
and the test that sends the tasks share it through the directory. That transport writes a message
file in place, and a consumer polling the folder may read it half written: a producer in another
process (the test) writes into an outbox (``make_app(root, outbox=...)``) and ``deliver`` renames
each finished file into the queue folder.

Each task, after its inference, appends its pid to DIR/done.log: a line there means that call was
recorded, and the pids tell which pool children ran the tasks (recycling shows as new pids). A
task sent with ``hold=S`` then sleeps S seconds before it returns.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from celery import Celery

from ortel.instrumentation import profiled

MODEL = "celery"


@profiled(model=MODEL, provider="cpu")
def infer(x: int) -> int:
    return x + 1


def make_app(root: Path, outbox: Path | None = None) -> Celery:
    folders = {name: root / name for name in ("queue", "processed", "control")}
    folders["out"] = outbox or folders["queue"]
    for path in folders.values():
        path.mkdir(parents=True, exist_ok=True)
    app = Celery("celery_app", broker="filesystem://")
    app.conf.update(
        broker_transport_options={
            "data_folder_in": str(folders["queue"]),
            "data_folder_out": str(folders["out"]),
            "processed_folder": str(folders["processed"]),
            "control_folder": str(folders["control"]),
            "polling_interval": 0.02,  # seconds between looks at the queue folder (default 1)
        },
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_pool_restarts=True,  # the pool_restart remote control command
    )

    @app.task(name="celery_app.work")
    def work(x: int, hold: float = 0.0) -> int:
        y = infer(x)
        log_pid(root / "done.log")
        time.sleep(hold)  # still running, its call recorded, when the worker is told to stop
        return y

    return app


def log_pid(path: Path) -> None:
    # One short O_APPEND write: lines from several children never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)


def deliver(root: Path, outbox: Path) -> int:
    """Move the messages written to ``outbox`` into the queue folder (rename: atomic); how many."""
    names = sorted(p.name for p in outbox.glob("*.msg"))
    for name in names:
        os.rename(outbox / name, root / "queue" / name)
    return len(names)


if "CELERY_APP_DIR" in os.environ:
    app = make_app(Path(os.environ["CELERY_APP_DIR"]))
