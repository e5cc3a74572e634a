"""Live operator timings: every N seconds, one inference's operators are profiled.

Off by default. ``ORTEL_OP_SAMPLE_SECONDS=N`` (or ``instrument_session(...,
op_sample_seconds=N)``) turns it on for instrumented sessions.

Mechanism, the cheapest onnxruntime 1.32's Python API allows: per-run profiling exists in its C
API (``RunOptionsEnableProfiling``) but not in the Python binding, and session-level profiling,
once ended, cannot be restarted and slows every run while on. So every N seconds a timer marks
the next inference: its inputs are copied (outside the timed span) and handed to a background
thread, which builds a separate profiling session with the same model, options and providers,
runs the copied inputs twice (a warm-up run, then the measured one), parses the profile and
folds it into the recorder. The user's session and its hot path never run with the profiler on;
between samples the only cost is one list lookup per call, and a sample costs one session
creation and two runs on a background thread (``benchmarks/op_sampling.py`` measures it).

What is recorded: every node execution's kernel time into
``ortel_operator_duration_seconds{model, op_type, provider}`` (so _sum and _count give total time
and executions per op type), the per-op-type share of operator time, nodes per provider and
memcpy nodes (provider transitions) of the latest sample.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ortel.core.opstate import OperatorSample

if TYPE_CHECKING:
    from .recorder import Recorder, Series

log = logging.getLogger("ortel.instrumentation")

ENV = "ORTEL_OP_SAMPLE_SECONDS"
MEMCPY_OPS = frozenset({"MemcpyFromHost", "MemcpyToHost"})
_COPIED_OPTIONS = (
    "intra_op_num_threads", "inter_op_num_threads", "execution_mode", "graph_optimization_level",
    "enable_cpu_mem_arena", "enable_mem_pattern", "enable_mem_reuse", "use_deterministic_compute",
)  # fmt: skip


def interval_from_env() -> float | None:
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    try:
        v = float(raw)
    except ValueError:
        log.warning("ortel: ignoring %s=%r: not a number of seconds", ENV, raw)
        return None
    return v if v > 0 else None


def attach(
    session: Any, series: Series, recorder: Recorder, interval: float | None
) -> OperatorSampler | None:
    """A sampler for ``session`` when sampling is on (``interval`` or the environment)."""
    interval = interval if interval is not None else interval_from_env()
    if not interval or interval <= 0:
        return None
    try:
        sampler = OperatorSampler(session, series, recorder, interval)
    except ValueError as e:
        log.warning("ortel: operator sampling off for this session: %s", e)
        return None
    session._ortel_op_sampler = sampler
    weakref.finalize(session, sampler.close)
    return sampler


class OperatorSampler:
    def __init__(
        self,
        session: Any,
        series: Series,
        recorder: Recorder,
        interval: float,
        workdir: Path | None = None,
    ) -> None:
        path = getattr(session, "_model_path", None)
        self._source: str | bytes | None = path or getattr(session, "_model_bytes", None)
        if not self._source:
            raise ValueError("the session's model (path or bytes) is not known")
        self._providers = session.get_providers()
        by_name = session.get_provider_options() or {}  # {provider: {option: value}}
        self._provider_options = [dict(by_name.get(p, {})) for p in self._providers]
        user = session.get_session_options()
        self._options = {k: getattr(user, k) for k in _COPIED_OPTIONS if hasattr(user, k)}
        self.interval = interval
        self.series = series
        self.recorder = recorder
        self.due = [False]  # read on the hot path; set by the timer thread
        self.samples = 0
        self.errors = 0
        self.cpu_seconds = 0.0  # the sampler thread's CPU time spent on samples
        self.last_error: str | None = None
        self._feeds: dict[str, Any] | None = None
        self._have_feeds = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stop = threading.Event()
        self._own_dir = workdir is None
        self._dir = Path(workdir or tempfile.mkdtemp(prefix="ortel-ops-"))
        self._thread = threading.Thread(target=self._loop, name="ortel-op-sampler", daemon=True)
        self._thread.start()

    # -- the inference thread --------------------------------------------------------------------
    def wrap(self, steady: dict[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
        """Wrappers around the steady-state run methods that hand over a marked call's inputs."""
        out = dict(steady)
        due = self.due
        if "run" in steady:
            inner = steady["run"]

            def run(output_names: Any, input_feed: Any, run_options: Any = None) -> Any:
                if due[0]:
                    self.take(input_feed, ort_values=False)
                return inner(output_names, input_feed, run_options)

            out["run"] = run
        if "run_with_ort_values" in steady:
            inner_ov = steady["run_with_ort_values"]

            def run_with_ort_values(output_names: Any, feed: Any, run_options: Any = None) -> Any:
                if due[0]:
                    self.take(feed, ort_values=True)
                return inner_ov(output_names, feed, run_options)

            out["run_with_ort_values"] = run_with_ort_values
        return out

    def take(self, feed: Any, ort_values: bool) -> None:
        """Copy one call's inputs for the sampler (the caller may reuse its buffers)."""
        import numpy as np

        self.due[0] = False
        try:
            if ort_values:
                feeds = {k: np.array(v.numpy(), copy=True) for k, v in feed.items()}
            else:
                feeds = {k: np.array(v, copy=True) for k, v in feed.items()}
        except Exception as e:  # inputs on a device, odd types: skip this sample, keep serving
            self._fail(f"cannot copy the inputs: {type(e).__name__}: {e}")
            return
        self._feeds = feeds
        self._idle.clear()  # busy from now until the sample is folded (waiting is not busy)
        self._have_feeds.set()

    # -- the sampler thread ----------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.due[0] = True
            while not self._have_feeds.wait(0.5):  # until the application runs an inference
                if self._stop.is_set():
                    return
            self._have_feeds.clear()
            feeds, self._feeds = self._feeds, None
            cpu0 = time.thread_time()
            try:
                if feeds is not None:
                    sample = self.profile_once(feeds)
                    self.recorder.record_operators(self.series, sample)
                    self.samples += 1
            except Exception as e:  # a sample that fails must never disturb inference
                self._fail(f"{type(e).__name__}: {e}")
            finally:
                # ORT's own threads (intra-op pool of the profiling session) are not counted
                self.cpu_seconds += time.thread_time() - cpu0
                self._idle.set()

    def profile_once(self, feeds: dict[str, Any]) -> OperatorSample:
        import onnxruntime as ort

        so = ort.SessionOptions()
        for k, v in self._options.items():
            with contextlib.suppress(AttributeError, TypeError):
                setattr(so, k, v)
        so.enable_profiling = True
        so.profile_file_prefix = str(self._dir / f"sample-{os.getpid()}")
        so.log_severity_level = 3
        sess = ort.InferenceSession(
            self._source, so, providers=self._providers, provider_options=self._provider_options
        )
        sess.run(None, feeds)  # the first run of a session allocates and prepacks: not measured
        sess.run(None, feeds)
        path = Path(sess.end_profiling())
        try:
            return sample_from_profile(path)
        finally:
            with contextlib.suppress(OSError):
                path.unlink()

    def _fail(self, why: str) -> None:
        self.errors += 1
        if self.last_error is None:  # once, not every interval
            log.warning("ortel: operator sampling failed (will retry): %s", why)
        self.last_error = why

    # -- lifecycle -------------------------------------------------------------------------------
    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no sample is in progress (tests and benchmarks)."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        self._stop.set()
        self._have_feeds.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)


def sample_from_profile(path: Path) -> OperatorSample:
    """The last complete run of an ONNX Runtime profile: one (op type, provider, ns) per node
    execution (subgraph nodes included, once per iteration), nodes per provider, memcpy nodes."""
    from ortel.core.ort_trace import KERNEL_SUFFIX, iter_events

    pending: list[tuple[str, str, str, int]] = []
    last: list[tuple[str, str, str, int]] = []
    for ev in iter_events(path):
        name = ev.get("name")
        if ev.get("cat") == "Node" and isinstance(name, str) and name.endswith(KERNEL_SUFFIX):
            args = ev.get("args")
            args = args if isinstance(args, dict) else {}
            op = str(args.get("op_name", "unknown"))
            provider = str(args.get("provider", "unknown"))
            try:
                ns = int(float(ev.get("dur", 0)) * 1000)
            except (TypeError, ValueError):
                continue
            pending.append((name, op, provider, ns))
        elif ev.get("cat") == "Session" and name == "model_run":
            last, pending = pending, []
    run = last or pending
    nodes: dict[str, set[str]] = {}
    for name, _, provider, _ in run:
        nodes.setdefault(provider, set()).add(name)
    memcpy = len({name for name, op, _, _ in run if op in MEMCPY_OPS})
    return OperatorSample(
        [(op, provider, ns) for _, op, provider, ns in run],
        {p: len(n) for p, n in nodes.items()},
        memcpy,
        time.time(),
    )
