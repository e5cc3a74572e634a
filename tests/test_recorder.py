import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st_

from ortel.core import catalog as c
from ortel.core.state import NS
from ortel.core.window import SLICE_SECONDS
from ortel.instrumentation.recorder import Recorder, _add_buckets


def values(readings):
    return {(r.metric.name, r.labels): r.value for r in readings}


def test_fold_buckets_sums_and_counts_exactly():
    rec = Recorder()
    s = rec.series("m", "cpu", sla_seconds=1e-3)
    durations = [40_000, 50_000, 50_001, 2_000_000, 90_000_000_000]  # ns
    s.ok.extend(durations)
    s.items.extend([1, 4, 8])
    (st,) = rec.states()
    b = c.DEFAULT_LATENCY_BUCKETS
    assert st.ok.count == 5 and st.ok.sum_ns == sum(durations)
    # le semantics: 50 µs is in the 5e-05 bucket, 50.001 µs is not; 90 s lands in +Inf.
    assert st.ok.counts[0] == 2 and st.ok.counts[1] == 1 and st.ok.counts[-1] == 1
    assert st.ok.counts[b.index(0.00281)] == 1
    assert st.items == 13
    assert st.sla_violations == 2
    assert len(s.ok) == 0 and len(s.items) == 0  # buffers consumed in place


def test_errors_are_counted_by_type_and_in_the_error_histogram():
    rec = Recorder()
    s = rec.series("m", "cpu")
    s.error(1000, ValueError("x"))
    s.error(2000, ValueError("y"))
    s.error(3000, KeyError("z"))
    got = values(rec.readings())
    assert got[(c.INFERENCES.name, ("m", "cpu", "error"))] == 3
    assert got[(c.INFERENCE_ERRORS.name, ("m", "ValueError"))] == 2
    assert got[(c.INFERENCE_ERRORS.name, ("m", "KeyError"))] == 1
    assert got[(c.INFERENCE_DURATION.name, ("m", "cpu", "error"))].sum == pytest.approx(6e-6)


def test_counts_exact_under_eight_threads_while_folding():
    rec = Recorder()
    s = rec.series("m", "cpu")
    per_thread, threads = 20_000, 8
    stop = threading.Event()

    def folder():
        while not stop.is_set():
            rec.fold()

    def worker():
        ok, items = s.ok.append, s.items.append
        for i in range(per_thread):
            ok(1000 + i)
            items(2)

    f = threading.Thread(target=folder)
    f.start()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    stop.set()
    f.join()
    (st,) = rec.states()
    assert st.ok.count == per_thread * threads
    assert st.items == 2 * per_thread * threads
    assert st.ok.sum_ns == threads * sum(1000 + i for i in range(per_thread))


def test_window_statistics_match_numpy_and_expire():
    rec = Recorder(window_seconds=10)
    s = rec.series("m", "cpu")
    data = np.random.default_rng(3).lognormal(-8, 0.4, 10_000)
    s.ok.extend(int(v * 1e9) for v in data)
    now = 1_000_000.0
    rec.fold(now)
    got = values(rec.readings(now))
    summary = got[(c.LATENCY_QUANTILE.name, ("m", "cpu"))]
    exact_ns = np.array([int(v * 1e9) for v in data]) * NS
    for q, v in summary.quantiles:
        assert v == pytest.approx(np.percentile(exact_ns, q * 100), rel=0.01)
    assert got[(c.LATENCY_MEAN.name, ("m", "cpu"))] == pytest.approx(exact_ns.mean())
    assert got[(c.LATENCY_STDDEV.name, ("m", "cpu"))] == pytest.approx(exact_ns.std(), rel=1e-6)
    assert got[(c.LATENCY_MIN.name, ("m", "cpu"))] == pytest.approx(exact_ns.min())
    assert got[(c.LATENCY_MAX.name, ("m", "cpu"))] == pytest.approx(exact_ns.max())
    # Twelve seconds later the slice has left the 10 s window; the cumulative counts remain.
    later = values(rec.readings(now + 10 + SLICE_SECONDS))
    assert later[(c.WINDOW_INFERENCES.name, ("m", "cpu"))] == 0
    assert (c.LATENCY_MEAN.name, ("m", "cpu")) not in later
    assert later[(c.INFERENCES.name, ("m", "cpu", "ok"))] == 10_000


def test_sla_compliance_over_the_window():
    rec = Recorder()
    s = rec.series("m", "cpu", sla_seconds=0.001)
    s.ok.extend([500_000] * 9 + [5_000_000])
    got = values(rec.readings())
    assert got[(c.SLA_VIOLATIONS.name, ("m",))] == 1
    assert got[(c.SLA_COMPLIANCE.name, ("m",))] == pytest.approx(0.9)
    assert got[(c.SLA_TARGET.name, ("m",))] == 0.001


def test_custom_buckets_per_model():
    rec = Recorder()
    s = rec.series("m", "cpu", buckets=(0.1, 1.0))
    s.ok.extend([50_000_000, 500_000_000, 5_000_000_000])
    h = values(rec.readings())[(c.INFERENCE_DURATION.name, ("m", "cpu", "ok"))]
    assert h.bounds == (0.1, 1.0) and h.counts == (1, 1, 1)


def test_background_flusher_folds_and_calls_hooks():
    rec = Recorder()
    seen = []
    rec.on_flush(lambda r: seen.append(r))
    s = rec.series("m", "cpu")
    s.ok.append(1000)
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen and len(s.ok) == 0
    rec.close()


def test_a_failing_flush_hook_is_logged_not_raised(caplog):
    rec = Recorder()

    def broken(_):
        raise OSError("disk full")

    rec.on_flush(broken)
    rec.flush()
    assert "flush hook failed" in caplog.text
    rec.close()


def test_reset_forgets_counts_but_keeps_bound_appends_working():
    rec = Recorder()
    s = rec.series("m", "cpu")
    append = s.ok.append
    append(1000)
    rec.fold()
    rec.reset()
    append(2000)
    (st,) = rec.states()
    assert st.ok.count == 1 and st.ok.sum_ns == 2000


# --- label values: cleaned and capped where a series is created ---------------------------------


def test_models_beyond_the_cap_share_the_other_series_and_counts_stay_exact():
    from ortel.core.cardinality import OTHER, LabelLimiter

    rec = Recorder(limiter=LabelLimiter({"model": 2}))
    calls = {f"user-{i}": i + 1 for i in range(6)}  # six models, i + 1 calls each
    for model, n in calls.items():
        rec.series(model, "cpu").ok.extend([1000] * n)
    got = values(rec.readings())
    ok = {k[1][0]: v for k, v in got.items() if k[0] == c.INFERENCES.name}
    assert ok == {"user-0": 1, "user-1": 2, OTHER: 3 + 4 + 5 + 6}
    assert sum(ok.values()) == sum(calls.values())
    assert got[(c.LABEL_VALUES_DROPPED.name, ("model",))] == 4


def test_an_overflowing_name_finds_its_series_again_without_counting_twice():
    from ortel.core.cardinality import LabelLimiter

    rec = Recorder(limiter=LabelLimiter({"model": 1}))
    rec.series("a")
    first = rec.series("b")
    assert rec.series("b") is first and rec.series("c") is first
    assert rec.limiter.dropped()["model"] == 2


def test_error_types_beyond_the_cap_become_other():
    from ortel.core.cardinality import OTHER, LabelLimiter

    rec = Recorder(limiter=LabelLimiter({"error_type": 2}))
    s = rec.series("m", "cpu")
    kinds = [ValueError, KeyError, TypeError, OSError, TypeError]
    for k in kinds:
        s.error(1000, k("boom"))
    got = values(rec.readings())
    errs = {k[1][1]: v for k, v in got.items() if k[0] == c.INFERENCE_ERRORS.name}
    assert errs == {"ValueError": 1, "KeyError": 1, OTHER: 3}
    assert got[(c.LABEL_VALUES_DROPPED.name, ("error_type",))] == 2
    assert got[(c.INFERENCES.name, ("m", "cpu", "error"))] == len(kinds)


@pytest.mark.parametrize(
    "model",
    [
        'quote"d',
        "new\nline",
        "back\\slash",
        "tab\tand\r",
        "ünïcødé-模型",
        "",
    ],
)
def test_awkward_label_values_are_kept_as_they_are(model):
    rec = Recorder()
    rec.series(model, "cpu").ok.append(1000)
    got = values(rec.readings())
    assert got[(c.INFERENCES.name, (model, "cpu", "ok"))] == 1


def test_non_utf8_and_overlong_labels_are_cleaned_once_and_merged_not_lost():
    rec = Recorder()
    bad1, bad2 = "model-\udcff", "model-\udcfe"  # os.fsdecode of two non-UTF-8 file names
    long1, long2 = "m" * 300 + "1", "m" * 300 + "2"
    for name in (bad1, bad2, long1, long2):
        rec.series(name, "cpu").ok.append(1000)
    got = values(rec.readings())
    ok = {k[1][0]: v for k, v in got.items() if k[0] == c.INFERENCES.name}
    assert sum(ok.values()) == 4  # two cleaned pairs: merged in the recorder, never overwritten
    assert len(ok) == 2
    for name in ok:
        name.encode("utf-8")  # valid UTF-8 for every scraper
        assert len(name) <= 256
    assert rec.series(bad1, "cpu") is rec.series(bad2, "cpu")


def test_a_snapshot_carries_the_dropped_counts(tmp_path):
    from ortel.core import snapshot
    from ortel.core.cardinality import LabelLimiter
    from ortel.instrumentation.multiproc import SnapshotWriter

    rec = Recorder(limiter=LabelLimiter({"model": 1}))
    for m in ("a", "b", "c"):
        rec.series(m).ok.append(1)
    SnapshotWriter(tmp_path)(rec)
    (path,) = tmp_path.glob("ortel-*.snap")
    assert snapshot.read(path).dropped == {"model": 2}


def test_a_forked_recorder_reports_only_its_own_drops():
    from ortel.core.cardinality import LabelLimiter

    rec = Recorder(limiter=LabelLimiter({"model": 1}))
    rec.series("a")
    rec.series("b")
    rec.reset()  # what the child runs after fork
    assert rec.limiter.dropped() == {"model": 0}
    assert rec.series("a").state.model == "a"  # admissions survive


@settings(max_examples=300, deadline=None)
@given(
    st_.lists(st_.integers(0, 10**12), min_size=1, max_size=200),
    st_.lists(st_.integers(0, 10**12), min_size=1, max_size=20, unique=True),
)
def test_bucket_counts_equal_a_binary_search_per_value(values, bounds):
    # Values equal to a bound, below all of them and above all of them included.
    values = values + bounds[: len(bounds) // 2]
    arr = np.array(values, dtype=np.int64)
    b = np.array(sorted(bounds), dtype=np.int64)
    start = list(range(len(b) + 1))
    got = _add_buckets(start, arr, b, int(arr.min()), int(arr.max()))
    want = np.bincount(np.searchsorted(b, arr, side="left"), minlength=len(b) + 1)
    assert got == [s + int(w) for s, w in zip(start, want)]


def test_the_flusher_thread_blocks_process_signals(tmp_path):
    """A SIGTERM must never be delivered to ortel's thread: a program that blocks it in its main
    thread around a critical section (billiard's pool children) gets it only when it unblocks."""
    import signal
    from pathlib import Path

    rec = Recorder()
    rec.series("m", "cpu")  # starts the flusher
    flusher = rec._flusher
    assert flusher is not None and flusher.native_id is not None
    status = Path(f"/proc/self/task/{flusher.native_id}/status")
    deadline = time.monotonic() + 5
    while True:  # the thread blocks them first thing: wait until it has run that far
        line = next(ln for ln in status.read_text().splitlines() if ln.startswith("SigBlk:"))
        blocked = int(line.split()[1], 16)
        if blocked or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        assert blocked & (1 << (sig - 1)), sig.name
    rec.close()
