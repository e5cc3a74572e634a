"""Child processes that record calls, started the ways real programs start them.

    python mp_children.py SCENARIO START_METHOD --parent-calls P --tasks T --calls N [--workers W]

The parent first records P calls itself, then runs T units of N calls each in children:

- ``process``: T ``multiprocessing.Process`` objects, joined;
- ``pool``: ``with Pool(W) as p: p.map(...)``; leaving the block SIGTERMs the workers;
- ``executor``: ``concurrent.futures.ProcessPoolExecutor(W)``, shut down by its ``with`` block;
- ``rawfork``: T ``os.fork()`` children (START_METHOD ignored); even ones ``sys.exit(0)``, odd ones
  return from ``main`` and end like a script does. Both run atexit.

Every call is one inference of model ``mp``, provider ``cpu``. The series is created at import
(``@profiled``), so even a parent with P = 0 has it, and its writer, before forking. Prints the
pids of the processes that ran the work as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor

from ortel.instrumentation import profiled, track

MODEL = "mp"
PROVIDER = "cpu"


@profiled(model=MODEL, provider=PROVIDER)
def infer() -> None:
    pass


def work(calls: int) -> int:
    for _ in range(calls):
        infer()
    return os.getpid()


def run_process(ctx: multiprocessing.context.BaseContext, tasks: int, calls: int) -> list[int]:
    procs = [ctx.Process(target=work, args=(calls,)) for _ in range(tasks)]  # type: ignore[attr-defined]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise SystemExit(f"children exited with {bad}")
    return [p.pid for p in procs]


def run_pool(
    ctx: multiprocessing.context.BaseContext, workers: int, tasks: int, calls: int
) -> list[int]:
    with ctx.Pool(workers) as pool:  # type: ignore[attr-defined]
        return pool.map(work, [calls] * tasks, chunksize=1)


def run_executor(
    ctx: multiprocessing.context.BaseContext, workers: int, tasks: int, calls: int
) -> list[int]:
    with ProcessPoolExecutor(workers, mp_context=ctx) as ex:
        return list(ex.map(work, [calls] * tasks))


def run_rawfork(tasks: int, calls: int) -> list[int] | None:
    """The children's pids in the parent; None in an odd child (it returns, like a script ends)."""
    pids = []
    for i in range(tasks):
        pid = os.fork()
        if pid == 0:
            work(calls)
            if i % 2 == 0:
                sys.exit(0)
            return None
        pids.append(pid)
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"child {pid} exited with status {status}")
    return pids


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["process", "pool", "executor", "rawfork"])
    ap.add_argument("method", choices=["fork", "forkserver", "spawn"])
    ap.add_argument("--parent-calls", type=int, default=0)
    ap.add_argument("--tasks", type=int, default=4)
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    for _ in range(args.parent_calls):
        with track(MODEL, provider=PROVIDER):
            pass

    ctx = multiprocessing.get_context(args.method)
    if args.scenario == "process":
        pids = run_process(ctx, args.tasks, args.calls)
    elif args.scenario == "pool":
        pids = run_pool(ctx, args.workers, args.tasks, args.calls)
    elif args.scenario == "executor":
        pids = run_executor(ctx, args.workers, args.tasks, args.calls)
    else:
        pids = run_rawfork(args.tasks, args.calls)
        if pids is None:
            return 0  # an odd raw-fork child: end like a script, through atexit
    print(json.dumps({"parent": os.getpid(), "workers": sorted(set(pids))}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
