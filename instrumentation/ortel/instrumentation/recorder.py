"""The per-process recorder: a hot path that only appends, a fold that does the arithmetic.

The inference thread takes two ``perf_counter_ns`` readings and appends the difference to an
``array('q')`` (``append`` is one C call under the GIL: atomic, no lock, no metrics library, and
8 bytes per call instead of a list slot plus an int object). Folding — bucketing, sketching, window
slices, SLA counts — happens in bulk with numpy, on the background flusher thread or when someone
collects. The fold copies a buffer's first ``n`` values, then removes them with ``del buf[:n]``;
it never replaces the buffer nor exports its memory (an export would make ``append`` raise), so an
append racing with a fold lands after ``n`` and is kept: counts are exact under any number of
threads.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import signal
import threading
import time
import weakref
from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ortel.core import catalog
from ortel.core.cardinality import LabelLimiter, clean_label
from ortel.core.multiproc_files import ENV as MULTIPROC_ENV
from ortel.core.sketch import LN_GAMMA, MIN_VALUE
from ortel.core.state import (
    DEFAULT_WINDOW_SECONDS,
    GenerationState,
    SeriesState,
    Stamped,
    dropped_readings,
    readings,
)
from ortel.core.window import slice_key

from .multiproc import SnapshotWriter

if TYPE_CHECKING:
    from ortel.core.opstate import OperatorSample

log = logging.getLogger("ortel.instrumentation")

# Seconds between background flushes: fold the buffers, then let the hooks (the snapshot writer)
# run. A process killed without warning loses at most this much plus one write (< 0.25 s).
FLUSH_INTERVAL = 0.2
FOLD_CHUNK = 4096  # durations folded per numpy pass (32 KiB arrays)
MAX_ALIASES = 10_000  # label values remembered as mapping to another series (cut, cleaned, capped)
_INV_LN_GAMMA = 1.0 / LN_GAMMA


class Series:
    """Live state of one (model, provider): hot-path buffers plus the folded totals."""

    __slots__ = (
        *("state", "ok", "items", "errors", "_sla_ns", "_bounds_ns", "_cold", "__weakref__"),
        "_limiter",
        "_recorder",
        *("ttft", "itl", "tokens"),
    )

    def __init__(
        self,
        state: SeriesState,
        limiter: LabelLimiter | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.state = state
        self._limiter = limiter
        self._recorder = recorder  # told of changes made outside a fold
        self.ok = array("q")  # durations (ns) of successful calls, appended on the hot path
        self.items = array("q")  # batch sizes, for calls whose batch is known
        self.errors: list[tuple[int, str]] = []  # (duration ns, exception type): rare, slow path
        # LLM generations (track_generation): first-token and inter-token times (ns), and
        # (generated, prompt) token counts per finished generation. Untouched by inference calls.
        self.ttft = array("q")
        self.itl = array("q")
        self.tokens: list[tuple[int, int]] = []
        self._sla_ns = None if state.sla_seconds is None else int(state.sla_seconds * 1e9)
        # Integer bounds keep searchsorted on int64 (no float conversion): for integer v,
        # v <= b*1e9  <=>  v <= floor(b*1e9).
        self._bounds_ns = np.array(
            [math.floor(b * 1e9 + 1e-6) for b in state.bounds], dtype=np.int64
        )
        self._cold = True

    def claim_cold(self) -> bool:
        """True once per series: for callers whose cold start is per (model, provider)."""
        if self._cold:
            self._cold = False
            return True
        return False

    def error(self, duration_ns: int, exc: BaseException) -> None:
        self.errors.append((duration_ns, type(exc).__name__))

    def set_load(self, seconds: float) -> None:
        self.state.load = Stamped(seconds, time.time())
        self._changed()

    def set_first_inference(self, seconds: float) -> None:
        self.state.first_inference = Stamped(seconds, time.time())
        self._changed()

    def _changed(self) -> None:
        if self._recorder is not None:
            self._recorder.changes += 1

    def fold(self, now: float) -> bool:
        """Move the buffers into the folded state; whether there was anything to move. Called
        with the recorder's lock held."""
        st = self.state
        ok = self.ok
        n = len(ok)
        moved = bool(n or self.items or self.errors or self.ttft or self.itl or self.tokens)
        # In chunks: temporaries stay under glibc's mmap threshold (128 KiB), so a busy process
        # reuses the same small heap blocks every fold instead of fragmenting its heap.
        for i in range(0, n, FOLD_CHUNK):
            arr = np.frombuffer(ok[i : min(i + FOLD_CHUNK, n)], dtype=np.int64)
            _fold_ok(st, arr, self._bounds_ns, self._sla_ns, now)
        if n:
            del ok[:n]
        n = len(self.items)
        if n:
            st.items += int(np.frombuffer(self.items[:n], dtype=np.int64).sum())
            del self.items[:n]
        n = len(self.errors)
        if n:
            errs = self.errors[:n]
            del self.errors[:n]
            arr = np.array([d for d, _ in errs], dtype=np.int64)
            st.error.counts = _add_buckets(
                st.error.counts, arr, self._bounds_ns, int(arr.min()), int(arr.max())
            )
            st.error.sum_ns += int(arr.sum())
            st.error.count += n
            admit = self._limiter.admit if self._limiter is not None else None
            for _, name in errs:
                name = clean_label(name)  # a class name can be longer than a label may be
                if admit is not None:
                    name = admit("error_type", name)
                st.error_types[name] = st.error_types.get(name, 0) + 1
        if self.ttft or self.itl or self.tokens:
            _fold_generation(self)
        return moved


def _fold_generation(s: Series) -> None:
    g = s.state.generation
    if g is None:
        g = s.state.generation = GenerationState()
    for buf, hist, bounds in ((s.ttft, g.ttft, _TTFT_NS), (s.itl, g.itl, _TPOT_NS)):
        n = len(buf)
        if n:
            arr = np.frombuffer(buf[:n], dtype=np.int64)
            del buf[:n]
            hist.counts = _add_buckets(hist.counts, arr, bounds, int(arr.min()), int(arr.max()))
            hist.sum_ns += int(arr.sum())
            hist.count += n
    n = len(s.tokens)
    if n:
        toks = s.tokens[:n]
        del s.tokens[:n]
        g.generated_tokens += sum(t for t, _ in toks)
        g.prompt_tokens += sum(p for _, p in toks)


def _bounds_ns(bounds: tuple[float, ...]) -> np.ndarray:
    return np.array([math.floor(b * 1e9 + 1e-6) for b in bounds], dtype=np.int64)


_TTFT_NS = _bounds_ns(catalog.TTFT_BUCKETS)
_TPOT_NS = _bounds_ns(catalog.TPOT_BUCKETS)


def _add_buckets(
    counts: list[int], arr: np.ndarray, bounds_ns: np.ndarray, lo: int, hi: int
) -> list[int]:
    """``counts`` plus the bucket counts of ``arr`` (whose min and max are ``lo`` and ``hi``).

    Latencies cluster: only the few bounds inside [lo, hi) need a pass over the values (a
    vectorised compare, ~1 ns a value); bounds below ``lo`` hold none of them, bounds at or above
    ``hi`` hold all. A per-value binary search (``searchsorted``) costs ~10 ns a value."""
    n = len(arr)
    # "le": a value equal to a bound belongs to that bound's bucket.
    i0 = int(np.searchsorted(bounds_ns, lo, side="left"))
    i1 = int(np.searchsorted(bounds_ns, hi, side="left"))
    le = [0] * i0 + [int(np.count_nonzero(arr <= b)) for b in bounds_ns[i0:i1]]
    le += [n] * (len(bounds_ns) - i1) + [n]  # +Inf
    prev = 0
    out = []
    for a, c in zip(counts, le):
        out.append(a + c - prev)
        prev = c
    return out


def _fold_ok(
    st: SeriesState, arr: np.ndarray, bounds_ns: np.ndarray, sla_ns: int | None, now: float
) -> None:
    lo, hi = int(arr.min()), int(arr.max())
    st.ok.counts = _add_buckets(st.ok.counts, arr, bounds_ns, lo, hi)
    total = int(arr.sum())
    st.ok.sum_ns += total
    st.ok.count += len(arr)
    seconds = arr * 1e-9
    idx = np.ceil(np.log(np.maximum(seconds, MIN_VALUE)) * _INV_LN_GAMMA).astype(np.int64)
    base = int(idx.min())
    per = np.bincount(idx - base)  # O(n), unlike np.unique's sort
    v = 0 if sla_ns is None else int(np.count_nonzero(arr > sla_ns))
    st.sla_violations += v
    st.window.add(
        slice_key(now),
        (len(arr), total, v, lo, hi),
        float(np.dot(seconds, seconds)),
        base,
        per,
    )


class Recorder:
    """All series of this process. One global instance (``RECORDER``); tests may make their own."""

    def __init__(
        self, window_seconds: float = DEFAULT_WINDOW_SECONDS, limiter: LabelLimiter | None = None
    ) -> None:
        self.window_seconds = window_seconds
        self.limiter = LabelLimiter.from_env() if limiter is None else limiter
        self._series: dict[tuple[str, str], Series] = {}
        # Label values as callers passed them -> the series they ended in, when it has other
        # labels (cut, cleaned or over the cap), so such callers also find it without the lock.
        self._aliases: dict[tuple[str, str], Series] = {}
        self._lock = threading.RLock()
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()
        self._on_flush: list[Callable[[Recorder], None]] = []
        # Bumped whenever the folded state changes, so writers can skip unchanged state.
        self.changes = 0
        self._depth = 0  # nesting of fold/flush in the thread that holds the lock
        self._owner = 0
        self._pending_signal = 0

    def series(
        self,
        model: str,
        provider: str = "unknown",
        *,
        sla_seconds: float | None = None,
        buckets: tuple[float, ...] | None = None,
        flops: float | None = None,
    ) -> Series:
        """Get or create the series; the first caller's SLA and buckets win for the process
        (``flops``, the FLOPs of one inference: the first caller that declares them).

        Label values are cleaned (valid UTF-8, cut to what exposition shows) and capped here,
        once per distinct value, off the hot path: values beyond a label's cap of distinct values
        share the ``__other__`` series."""
        raw = (model, provider)
        s = self._series.get(raw)
        if s is None:
            s = self._aliases.get(raw)
        if s is not None:
            if flops is not None and s.state.flops is None:
                s.state.flops = _flops(flops)
            return s
        with self._lock:
            s = self._aliases.get(raw)
            if s is not None:
                if flops is not None and s.state.flops is None:
                    s.state.flops = _flops(flops)
                return s
            admit = self.limiter.admit
            key = (admit("model", clean_label(model)), admit("provider", clean_label(provider)))
            s = self._series.get(key)
            if s is None:
                st = SeriesState(
                    *key, tuple(buckets or catalog.DEFAULT_LATENCY_BUCKETS), sla_seconds
                )
                s = self._series[key] = Series(st, self.limiter, self)
                self.changes += 1
                self._ensure_flusher()
            if flops is not None and s.state.flops is None:
                s.state.flops = _flops(flops)
            if key != raw and len(self._aliases) < MAX_ALIASES:
                self._aliases[raw] = s
            return s

    @property
    def has_series(self) -> bool:
        return bool(self._series)

    def fold(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            self._enter()
            try:
                for s in self._series.values():
                    if s.fold(now):
                        self.changes += 1
                    s.state.prune(now, self.window_seconds)
            finally:
                self._leave()

    # A fold is several statements: a signal handler that flushed in the middle of one, in the
    # same thread (the lock is reentrant), would fold the same calls twice. Such a handler
    # leaves its signal here instead, and the outermost fold or flush acts on it when done.
    def _enter(self) -> None:
        if not self._depth:
            self._owner = threading.get_ident()
        self._depth += 1

    def _leave(self) -> None:
        self._depth -= 1
        if not self._depth and self._pending_signal:
            signum, self._pending_signal = self._pending_signal, 0
            try:
                self.flush()
            finally:  # the signal was meant to end the process: it does, flushed or not
                _die(signum)

    def busy_here(self) -> bool:
        """Whether this thread is inside a fold or flush of this recorder."""
        return bool(self._depth) and self._owner == threading.get_ident()

    def record_operators(self, series: Series, sample: OperatorSample) -> None:
        """Fold one sampled inference's operator timings (opsampling's thread, not the hot
        path) into the series' state."""
        from ortel.core.opstate import OperatorState

        with self._lock:
            st = series.state
            if st.operators is None:
                st.operators = OperatorState()
            st.operators.add(sample)
            self.changes += 1

    def record_energy(self, series: Series, joules: dict[tuple[str, str], float]) -> None:
        """Add what an ``energy()`` block measured, by (device, source), to the series' state."""
        with self._lock:
            block = series.state.block_energy
            for k, j in joules.items():
                block[k] = block.get(k, 0.0) + j
            self.changes += 1

    def states(self, now: float | None = None) -> list[SeriesState]:
        """Fold, then return copies of every series' state (safe to keep or encode)."""
        with self._lock:
            self.fold(now)
            return [s.state.copy() for s in self._series.values()]

    def readings(self, now: float | None = None):
        now = time.time() if now is None else now
        out = list(readings(self.states(now), now, self.window_seconds))
        out.extend(dropped_readings(self.limiter.dropped()))
        return out

    def reset(self) -> None:
        """Forget everything (used after fork: the parent keeps reporting what it recorded)."""
        self._lock = threading.RLock()
        for s in self._series.values():
            del s.ok[:], s.items[:], s.errors[:]  # in place: wrappers hold bound appends
            del s.ttft[:], s.itl[:], s.tokens[:]
            st = s.state
            s.state = SeriesState(st.model, st.provider, st.bounds, st.sla_seconds, flops=st.flops)
        self.limiter.forget_dropped()  # the parent reports its own; the child starts at 0
        self._depth = self._pending_signal = 0  # the fork may have caught a flush midway
        self._flusher = None
        self._stop = threading.Event()
        if self._series or self._on_flush:  # the parent's thread did not survive the fork
            self._ensure_flusher()

    # -- background folding --------------------------------------------------------------------
    def on_flush(self, fn: Callable[[Recorder], None]) -> None:
        """Run ``fn(recorder)`` after every background fold and at exit (snapshot writers)."""
        with self._lock:
            self._on_flush.append(fn)
            self._ensure_flusher()

    def flush(self) -> None:
        with self._lock:
            self._enter()
            try:
                self.fold()
                for fn in list(self._on_flush):
                    try:
                        fn(self)
                    except Exception:  # a broken writer must never break inference
                        log.exception("ortel: flush hook failed")
            finally:
                self._leave()

    def _ensure_flusher(self) -> None:
        if self._flusher is None or not self._flusher.is_alive():
            ref = weakref.ref(self)
            stop = self._stop
            self._flusher = threading.Thread(
                target=_flush_loop, args=(ref, stop), name="ortel-flusher", daemon=True
            )
            self._flusher.start()

    def close(self) -> None:
        self._stop.set()
        self.flush()


def _flops(value: float) -> float:
    v = float(value)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"flops must be a finite non-negative number, got {value!r}")
    return v


# Process signals the flusher thread never takes: the kernel hands each to a thread that does not
# block it, so they reach the application's threads only. A program that blocks one in its main
# thread around a critical section (billiard does, with SIGTERM, while it writes under a lock
# shared by every pool child) then gets it when it unblocks, not in ortel's thread at a point
# where Python would run the handler in the middle of that section.
_BLOCKED_IN_FLUSHER = {
    getattr(signal, name)
    for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGCHLD")
    if hasattr(signal, name)
}


def _flush_loop(ref: weakref.ref[Recorder], stop: threading.Event) -> None:
    # Holds only a weak reference so a discarded test recorder is collected with its thread.
    # Folding often also keeps the buffers to a fraction of a second of calls, which bounds a
    # busy process's memory (and its heap's high-water mark).
    if hasattr(signal, "pthread_sigmask"):  # not on Windows, which has no such signals
        signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED_IN_FLUSHER)
    while not stop.wait(FLUSH_INTERVAL):
        rec = ref()
        if rec is None:
            return
        rec.flush()
        del rec


def _flush_at_multiprocessing_exit(recorder: Recorder) -> None:
    """In a multiprocessing child (any start method, pools included): flush when it ends.

    Such a child leaves through ``os._exit`` (no atexit) after running multiprocessing's
    finalizers, or dies by SIGTERM when its pool is terminated (``with Pool() as p`` does that on
    exit). A SIGTERM handler is installed only where none is: the child's own code may replace it.
    """
    from multiprocessing import util

    util.Finalize(recorder, recorder.flush, exitpriority=0)
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _flush_then_die)


def _flush_then_die(signum: int, frame: object) -> None:
    if RECORDER.busy_here():  # interrupted our own flush: it finishes, then acts on the signal
        RECORDER._pending_signal = signum
        return
    try:
        RECORDER.flush()
    finally:
        _die(signum)


def _die(signum: int) -> None:
    """End the process by ``signum`` with its default action, as if no handler had run."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def enable_multiprocess(
    directory: str | os.PathLike[str] | None = None, recorder: Recorder | None = None
) -> SnapshotWriter:
    """Start writing snapshots for the daemon (``ortel serve --multiproc-dir``).

    Done automatically at import when ORTEL_MULTIPROC_DIR is set.
    """
    from .servers import hook_servers

    recorder = RECORDER if recorder is None else recorder
    directory = directory or os.environ.get(MULTIPROC_ENV)
    if not directory:
        raise ValueError(f"no multiprocess directory: pass one or set {MULTIPROC_ENV}")
    writer = SnapshotWriter(directory)
    recorder.on_flush(writer)
    # Servers that exit by a re-raised signal: flush after their last request. Checked again on
    # every flush, for servers imported after this.
    hook_servers(recorder.flush)
    recorder.on_flush(lambda rec: hook_servers(rec.flush))
    return writer


RECORDER = Recorder(float(os.environ.get("ORTEL_WINDOW_SECONDS", DEFAULT_WINDOW_SECONDS)))
atexit.register(RECORDER.flush)
if os.environ.get(MULTIPROC_ENV):
    enable_multiprocess()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=RECORDER.reset)


def _hook_multiprocessing() -> None:
    import multiprocessing
    from multiprocessing import util

    # Runs in every fork or forkserver child bootstrapped after this import.
    util.register_after_fork(RECORDER, _flush_at_multiprocessing_exit)
    # A spawn child runs no after-fork hooks. It imports this module either while it unpickles
    # its parent's main module and its target (multiprocessing marks the process as inheriting
    # then, before bootstrapping it), or later, once it has a parent process.
    here = multiprocessing.current_process()
    if getattr(here, "_inheriting", False) or multiprocessing.parent_process() is not None:
        _flush_at_multiprocessing_exit(RECORDER)


_hook_multiprocessing()


def _hook_celery() -> None:
    """In a Celery prefork pool child: flush when it ends.

    The pool is billiard, not multiprocessing: a child ends in billiard's ``Worker._do_exit``
    with ``os._exit``, and its parent SIGTERMs it as soon as it reports its exit, so neither
    atexit nor any finalizer (multiprocessing's or billiard's) runs. What does run on every way
    out (max tasks reached, pool restart, shutdown, terminate) is Celery's public
    ``worker_process_shutdown`` signal, sent in the child just before. Connected only where Celery
    is already imported (never imported here): at import, which covers a child started fresh
    (Celery comes first there), and after every fork, which covers pool children forked from a
    main process that imported Celery after ortel.
    """
    import sys

    signals = sys.modules.get("celery.signals")
    if signals is not None:
        signals.worker_process_shutdown.connect(
            _flush_at_celery_exit, weak=False, dispatch_uid="ortel.instrumentation.flush"
        )


def _flush_at_celery_exit(**kwargs: object) -> None:
    """The last flush of a pool child, with no ortel thread left behind.

    Right after this, billiard writes the child's exit message under a lock shared with the other
    children, with SIGTERM blocked in the main thread only; on a cold shutdown SIGTERMs keep
    coming. The flusher never takes one (it blocks them, see ``_BLOCKED_IN_FLUSHER``); it is
    stopped here so the child exits with only its main thread writing, and SIGTERM is held off
    until the snapshot is written (a pending one then acts as it would have).
    """
    RECORDER._stop.set()
    flusher = RECORDER._flusher
    if flusher is not None and flusher is not threading.current_thread():
        flusher.join(timeout=5.0)
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no prefork pool there anyway
        RECORDER.flush()
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        RECORDER.flush()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


_hook_celery()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_hook_celery)
