"""Overhead of the ortel instrumentation shim on ``InferenceSession.run``.

Run it from the repository root (ortel installed, onnx available for the model builders)::

    python benchmarks/overhead.py                        # add + cnn, ~10 s
    python benchmarks/overhead.py --rounds 100 --json overhead.json
    python benchmarks/overhead.py --check                # exit 1 if the target is missed

Target: the instrumented 1-node Add model (a ~10 µs raw run, so the worst case for relative
overhead) costs at most 1.05x the raw ``session.run``.

Method: per model there are separate ``InferenceSession`` objects (single-threaded, so timings
are stable) for each variant, so instrumenting one never touches another:

* ``raw``           the baseline, plain ``session.run``;
* ``raw-2 (null)``  a second raw session: its ratio to ``raw`` shows the noise floor (~1.00);
* ``instrumented``  ``instrument_session(session, model=...)``;
* ``decorated``     a function calling ``session.run`` wrapped in ``@profiled(model=...)``;
* ``traced``        instrumented with OTel spans on (the ``otel`` extra): an SDK TracerProvider
                    with its default sampler (parent-based, always on) and ortel's span queue to
                    an exporter that discards; no span around the calls, so root spans are
                    limited to the default 100/s. Target: at most 1.15x raw on the Add model;
* ``traced (in span)`` the same inside a sampled parent span (attached per call): every call is
                    a sampled child span, the cost a request trace pays per inference;
* ``floor``         a raw session timed by the least any Python-level timing can do: one frame,
                    two ``perf_counter_ns`` reads and one array append, nothing else (no batch
                    size, no error path). What the shim adds beyond it is what ortel could save;
* ``prometheus_client`` a raw session timed by hand into a labelled
                    ``prometheus_client.Histogram`` (``observe``), the peer a user would reach for;
* ``otel histogram`` the same into an OTel SDK histogram (``record``), with the ``otel`` extra.

``--threads N`` runs every block on N threads at once (the same session per variant; ONNX Runtime
sessions are thread-safe), per-call time = the block's wall time / its calls. After the table,
"added vs prometheus_client" is the median over rounds of (variant - raw) / (prometheus_client -
raw): the share of a hand-written prometheus_client timing that the shim costs.

After a warm-up, every round runs one block of N calls per variant, rotating the order each round
so drift (thermal, frequency, noisy neighbours) hits all variants alike. Each round gives a
per-call time per variant and a ratio to the same round's ``raw`` block; the table reports the
median per-call time and the median (and interquartile range) of the ratios.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ortel.instrumentation import models

TARGET_MODEL = "add"
TARGET_VARIANT = "instrumented"
TARGET_RATIO = 1.05
TRACED_TARGET_RATIO = 1.15  # spans on, default sampling (issue 7)
BLOCK_SECONDS = 0.02  # auto-sized blocks: long enough to swamp timer and scheduler jitter

Infer = Callable[[dict[str, np.ndarray]], Any]
Shim = tuple[Callable[..., Any], Callable[..., Any]]  # (instrument_session, profiled)


@dataclass
class VariantResult:
    median_per_call_s: float
    median_ratio: float
    ratio_p25: float
    ratio_p75: float


def _feeds(name: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    shapes = {
        "add": {"x": (1, 16), "y": (1, 16)},
        "mlp": {"input": (1, 64)},
        "cnn": {"image": (1, 3, 64, 64)},
    }[name]
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def _model_bytes(name: str) -> bytes:
    return {"add": models.add_model, "mlp": models.mlp_model, "cnn": models.cnn_model}[name]()


def _session(model: bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # one thread: no pool wake-up jitter in the timings
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def _caller(session: ort.InferenceSession) -> Infer:
    # Every variant goes through one Python frame like this, so the harness cost cancels out.
    def infer(feeds: dict[str, np.ndarray]) -> Any:
        return session.run(None, feeds)

    return infer


def load_shim() -> Shim | str:
    """``(instrument_session, profiled)``, or why they cannot be imported."""
    try:
        from ortel.instrumentation import instrument_session, profiled
    except ImportError as exc:
        return f"{type(exc).__name__}: {exc}"
    return instrument_session, profiled


def build_variants(name: str, shim: Shim | None) -> dict[str, Infer]:
    model = _model_bytes(name)
    raw_run = ort.InferenceSession.run  # to detect a shim that patches the class, not the object
    variants: dict[str, Infer] = {
        "raw": _caller(_session(model)),
        "raw-2 (null)": _caller(_session(model)),
    }
    if shim is not None:
        instrument_session, profiled = shim
        variants["instrumented"] = _caller(instrument_session(_session(model), model=name))
        variants["decorated"] = profiled(model=name)(_caller(_session(model)))
        variants.update(traced_variants(name, model, instrument_session))
        variants.update(peer_variants(name, model))
        if ort.InferenceSession.run is not raw_run:
            print("warning: the shim patched InferenceSession.run; raw baselines are instrumented")
    return variants


def traced_variants(name: str, model: bytes, instrument_session: Callable[..., Any]) -> dict:
    """The span-emitting variants, or none without the otel extra."""
    try:
        from opentelemetry import context, trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

        from ortel.instrumentation.otlp import BoundedSpanProcessor
        from ortel.instrumentation.tracing import InferenceSpans
    except ImportError as exc:
        print(f"no traced variants ({exc}): pip install 'ortel[otel]'")
        return {}

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BoundedSpanProcessor(Discard()))
    spans = InferenceSpans(provider)
    traced = _caller(instrument_session(_session(model), model=name, spans=spans))
    in_span = instrument_session(_session(model), model=name, spans=spans).run
    parent = trace.set_span_in_context(provider.get_tracer("bench").start_span("request"))
    attach, detach = context.attach, context.detach

    def infer_in_span(feeds: dict[str, np.ndarray]) -> Any:
        token = attach(parent)
        try:
            return in_span(None, feeds)
        finally:
            detach(token)

    return {"traced": traced, "traced (in span)": infer_in_span}


def peer_variants(name: str, model: bytes) -> dict[str, Infer]:
    """A raw session timed into prometheus_client's and (with the otel extra) the OTel SDK's
    histogram: what the same measurement costs with the libraries people use."""
    from prometheus_client import CollectorRegistry, Histogram

    hist = Histogram(
        "bench_inference_seconds", "bench", ["model"], registry=CollectorRegistry()
    ).labels(name)
    prom_run = _session(model).run
    clock = time.perf_counter

    def prom(feeds: dict[str, np.ndarray]) -> Any:
        t0 = clock()
        out = prom_run(None, feeds)
        hist.observe(clock() - t0)
        return out

    floor_run, durations = _session(model).run, array("q")
    clock_ns, keep = time.perf_counter_ns, durations.append

    def floor(feeds: dict[str, np.ndarray]) -> Any:
        t0 = clock_ns()
        result = floor_run(None, feeds)
        keep(clock_ns() - t0)
        if len(durations) > 100_000:  # bounded, like the shim's folded buffers
            del durations[:]
        return result

    out: dict[str, Infer] = {"floor": floor, "prometheus_client": prom}
    try:
        from opentelemetry.sdk.metrics import MeterProvider
    except ImportError:
        return out
    record = MeterProvider().get_meter("bench").create_histogram("bench.inference").record
    otel_run = _session(model).run
    attrs = {"model": name}

    def otel(feeds: dict[str, np.ndarray]) -> Any:
        t0 = clock()
        result = otel_run(None, feeds)
        record(clock() - t0, attrs)
        return result

    out["otel histogram"] = otel
    return out


THREADS = 1  # set from --threads


def time_block(infer: Infer, feeds: dict[str, np.ndarray], calls: int) -> float:
    """Seconds per call over ``calls`` calls, back to back on ``THREADS`` threads at once."""
    if THREADS == 1:
        start = time.perf_counter_ns()
        for _ in range(calls):
            infer(feeds)
        return (time.perf_counter_ns() - start) / calls / 1e9
    import threading

    per = max(1, calls // THREADS)
    go = threading.Barrier(THREADS + 1)

    def work() -> None:
        go.wait()
        for _ in range(per):
            infer(feeds)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for th in threads:
        th.start()
    go.wait()
    start = time.perf_counter_ns()
    for th in threads:
        th.join()
    return (time.perf_counter_ns() - start) / (per * THREADS) / 1e9


def auto_calls(variants: dict[str, Infer], feeds: dict[str, np.ndarray]) -> int:
    time_block(variants["raw"], feeds, 10)  # the first calls of a fresh session are slow
    per_call = time_block(variants["raw"], feeds, 50)
    return max(5, int(BLOCK_SECONDS / per_call))


def warm_up(variants: dict[str, Infer], feeds: dict[str, np.ndarray], calls: int) -> None:
    # Allocator arenas, caches and lazy init in the shim settle before anything is measured.
    for infer in variants.values():
        time_block(infer, feeds, calls)


def run_interleaved(
    variants: dict[str, Infer], feeds: dict[str, np.ndarray], rounds: int, calls: int
) -> dict[str, list[float]]:
    """Per-call seconds of each variant in each round, order rotated round to round."""
    names = list(variants)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        gc.collect()  # collect between blocks, not inside one
        k = r % len(names)
        for n in names[k:] + names[:k]:
            samples[n].append(time_block(variants[n], feeds, calls))
    return samples


def added_vs_peer(samples: dict[str, list[float]], peer: str = "prometheus_client") -> dict:
    """Per variant, the median over rounds of (variant - raw) / (peer - raw)."""
    raw, ref = samples["raw"], samples.get(peer)
    if ref is None:
        return {}
    out = {}
    for name, times in samples.items():
        if name in ("raw", "raw-2 (null)", peer):
            continue
        shares = [(t - b) / (p - b) for t, b, p in zip(times, raw, ref) if p > b]
        if shares:
            out[name] = statistics.median(shares)
    return out


def summarize(samples: dict[str, list[float]]) -> dict[str, VariantResult]:
    raw = samples["raw"]
    out: dict[str, VariantResult] = {}
    for name, times in samples.items():
        ratios = [t / b for t, b in zip(times, raw, strict=True)]
        q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        out[name] = VariantResult(statistics.median(times), statistics.median(ratios), q1, q3)
    return out


def _fmt_time(seconds: float) -> str:
    return f"{seconds * 1e6:9.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:9.3f} ms"


def print_table(results: dict[str, dict[str, Any]]) -> None:
    print(f"{'model':<6} {'variant':<16} {'calls/blk':>9} {'per call':>12} {'ratio':>7}  IQR")
    for model, res in results.items():
        for name, v in res["variants"].items():
            print(
                f"{model:<6} {name:<16} {res['calls_per_round']:>9} "
                f"{_fmt_time(v.median_per_call_s):>12} {v.median_ratio:7.3f}  "
                f"[{v.ratio_p25:.3f}, {v.ratio_p75:.3f}]"
            )


def check_target(
    results: dict[str, dict[str, Any]], variant: str = TARGET_VARIANT, ratio: float = TARGET_RATIO
) -> bool | None:
    """Whether the target ratio holds; ``None`` when it was not measured."""
    variants = results.get(TARGET_MODEL, {}).get("variants", {})
    if variant not in variants:
        return None
    return variants[variant].median_ratio <= ratio


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="add,cnn", help="comma-separated: add, mlp, cnn")
    p.add_argument("--rounds", type=int, default=50, help="interleaved rounds per model")
    p.add_argument(
        "--calls-per-round",
        type=int,
        default=0,
        help=f"calls per block; 0 sizes blocks to ~{BLOCK_SECONDS * 1e3:.0f} ms each",
    )
    p.add_argument("--raw-only", action="store_true", help="skip the shim: null check only")
    p.add_argument("--threads", type=int, default=1, help="threads calling each variant at once")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write results here")
    p.add_argument("--check", action="store_true", help=f"exit 1 if ratio > {TARGET_RATIO}")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    global THREADS
    THREADS = max(1, args.threads)
    shim = None if args.raw_only else load_shim()
    if isinstance(shim, str):
        print(f"ortel shim not importable ({shim}); measuring raw sessions only")
    real_shim = shim if isinstance(shim, tuple) else None

    results: dict[str, dict[str, Any]] = {}
    for name in args.models.split(","):
        feeds = _feeds(name)
        variants = build_variants(name, real_shim)
        calls = args.calls_per_round or auto_calls(variants, feeds)
        warm_up(variants, feeds, calls)
        samples = run_interleaved(variants, feeds, args.rounds, calls)
        results[name] = {
            "calls_per_round": calls,
            "variants": summarize(samples),
            "added_vs_prometheus_client": added_vs_peer(samples),
        }

    print(f"threads: {THREADS}")
    print_table(results)
    for model, res in results.items():
        shares = res["added_vs_prometheus_client"]
        if shares:
            text = ", ".join(f"{v} {s:.2f}" for v, s in shares.items())
            print(f"{model}: added cost vs prometheus_client's observe: {text}")
    ok = check_target(results)
    if ok is not None:
        verdict = "PASS" if ok else "FAIL"
        print(f"target: {TARGET_MODEL}/{TARGET_VARIANT} <= {TARGET_RATIO:.2f}x raw: {verdict}")
    traced_ok = check_target(results, "traced", TRACED_TARGET_RATIO)
    if traced_ok is not None:
        verdict = "PASS" if traced_ok else "FAIL"
        print(f"target: {TARGET_MODEL}/traced <= {TRACED_TARGET_RATIO:.2f}x raw: {verdict}")
        ok = ok and traced_ok

    if args.json:
        doc = {
            "shim": "real" if real_shim else ("skipped" if args.raw_only else f"missing: {shim}"),
            "rounds": args.rounds,
            "target": {"model": TARGET_MODEL, "variant": TARGET_VARIANT, "ratio": TARGET_RATIO},
            "target_met": ok,
            "machine": {
                "python": sys.version.split()[0],
                "onnxruntime": ort.__version__,
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
            },
            "models": {
                m: {
                    "calls_per_round": r["calls_per_round"],
                    "added_vs_prometheus_client": r["added_vs_prometheus_client"],
                    "variants": {v: asdict(x) for v, x in r["variants"].items()},
                }
                for m, r in results.items()
            },
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 1 if args.check and ok is False else 0


if __name__ == "__main__":
    raise SystemExit(main())
