"""One ``ortel profile`` run: every configuration of the sweep, the operator pass, generation,
power, and the summary that reports, the store and ``ortel compare`` read.

Configurations are the cross product provider × precision × sequence length × batch ×
concurrency, in that nesting; one session per (provider, precision), so its load time and cold
first inference are measured once and shared by its configurations. A provider or precision that
cannot load, or a batch the model cannot take, is a failed configuration with its reason; the run
goes on. Ctrl-C stops measuring and keeps everything measured so far.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ortel.collectors.power import PowerMonitor, collector_sampler

from . import inputs as inp
from . import precision as prec
from .hostinfo import host_info
from .memory import PeakRss
from .providers import CPU, ProviderError, make_session, select, short_name
from .runner import PhaseResult, Policy, run, time_once
from .stats import latency_stats, untrusted_percentiles

SCHEMA = "ortel-profile/1"


@dataclass
class Options:
    model: Path
    providers: str = "cpu"
    precisions: str = "fp32"
    batch_sizes: Sequence[int] | None = None
    seq_lens: Sequence[int] | None = None
    concurrency: Sequence[int] = (1,)
    shapes: Sequence[str] = ()
    inputs: Sequence[str] = ()
    preprocess: str | None = None
    policy: Policy = field(default_factory=Policy)
    op_profile: bool = True
    op_profile_runs: int = 20
    analyze: bool = True  # hand the operator trace to ortel analyze (where installed)
    generate: int | None = None
    prompt_len: int = 32
    generate_runs: int = 5
    power: bool = True
    power_interval: float = 0.2
    sysfs: Path = Path("/sys")
    procfs: Path = Path("/proc")
    threads: int | None = None
    seed: int = 0
    sla: float | None = None
    min_cosine: float = 0.99
    label: str | None = None


class ProgressReporter(Protocol):
    """What ``profile`` reports progress to: ``Reporter`` (silent), the CLI's rich progress bars,
    or any object with these methods."""

    def start(self, total: int) -> None: ...

    def config(self, index: int, label: str) -> None: ...

    def phase(self, phase: str, fraction: float, samples: int) -> None: ...

    def message(self, text: str) -> None: ...

    def stop(self) -> None: ...


class Reporter:
    """Progress callbacks that do nothing: the default, and a base for tests and libraries that
    want only some of them."""

    def start(self, total: int) -> None: ...

    def config(self, index: int, label: str) -> None: ...

    def phase(self, phase: str, fraction: float, samples: int) -> None: ...

    def message(self, text: str) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Config:
    id: int
    provider: str
    precision: str
    batch: int | None
    seq_len: int | None
    concurrency: int

    @property
    def label(self) -> str:
        parts = [short_name(self.provider), self.precision]
        if self.batch is not None:
            parts.append(f"batch {self.batch}")
        if self.seq_len is not None:
            parts.append(f"seq {self.seq_len}")
        parts.append(f"concurrency {self.concurrency}")
        return ", ".join(parts)


@dataclass
class ConfigResult:
    config: Config
    status: str = "pending"  # ok, failed, interrupted, skipped
    error: str | None = None
    load_seconds: float | None = None
    first_inference_seconds: float | None = None
    phase: PhaseResult | None = None
    items: int = 1  # batch items per inference
    shapes: dict[str, list[int]] = field(default_factory=dict)
    accuracy: dict[str, Any] | None = None
    peak_rss_bytes: int | None = None
    peak_rss_since_reset: bool = False
    weight_bytes: int | None = None
    energy: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        c = self.config
        ph = self.phase
        n = len(ph.samples) if ph is not None else 0
        thr = ph.throughput if ph is not None else None
        out: dict[str, Any] = {
            "id": c.id,
            "provider": c.provider,
            "precision": c.precision,
            "batch": c.batch,
            "seq_len": c.seq_len,
            "concurrency": c.concurrency,
            "label": c.label,
            "status": self.status,
            "error": self.error,
            "load_seconds": self.load_seconds,
            "first_inference_seconds": self.first_inference_seconds,
            "latency_seconds": latency_stats(ph.samples if ph is not None else []),
            "throughput_per_second": thr,
            "items_per_second": thr * self.items if thr is not None else None,
            "items_per_inference": self.items,
            "samples": n,
            "measured_seconds": ph.measured_seconds if ph is not None else None,
            "measure_started": ph.measure_started or None if ph is not None else None,
            "untrusted_percentiles": untrusted_percentiles(n) if n else [],
            "warmup": None
            if ph is None
            else {
                "seconds": ph.warmup_seconds,
                "inferences": len(ph.warmup_latencies),
                "steady": ph.steady,
                "windows": [w.__dict__ for w in ph.windows],
            },
            "shapes": self.shapes,
            "accuracy": self.accuracy,
            "memory": {
                "peak_rss_bytes": self.peak_rss_bytes,
                "peak_since_reset": self.peak_rss_since_reset,
                "model_weight_bytes": self.weight_bytes,
            },
            "energy": self.energy,
        }
        return out


@dataclass
class ProfileResult:
    run_id: str
    options: Options
    started: float
    finished: float = 0.0
    host: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    configs: list[ConfigResult] = field(default_factory=list)
    operators: Any = None  # operators.OperatorProfile
    generation: Any = None  # generate.GenerationResult
    power_source: str = "none"
    power_unavailable: list[str] = field(default_factory=list)
    power_timeline: list[tuple[float, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def baseline(self) -> ConfigResult | None:
        ok = [c for c in self.configs if c.status in ("ok", "interrupted") and c.phase]
        if self.configs and self.configs[0] in ok:
            return self.configs[0]
        return ok[0] if ok else None

    def summary(self) -> dict[str, Any]:
        from .recommend import recommendations

        o = self.options
        configs = [c.to_json() for c in self.configs]
        base = self.baseline
        b = base.to_json() if base is not None else None
        out: dict[str, Any] = {
            "schema": SCHEMA,
            "run_id": self.run_id,
            "label": o.label,
            "started": self.started,
            "finished": self.finished,
            "interrupted": self.interrupted,
            "model": self.model,
            "host": self.host,
            "settings": {
                "providers": sorted({c.config.provider for c in self.configs}),
                "precisions": list(dict.fromkeys(c.config.precision for c in self.configs)),
                "batch_sizes": list(o.batch_sizes) if o.batch_sizes else None,
                "seq_lens": list(o.seq_lens) if o.seq_lens else None,
                "concurrency": list(o.concurrency),
                "min_duration_seconds": o.policy.min_duration,
                "min_samples": o.policy.min_samples,
                "warmup_window_seconds": o.policy.warmup_window,
                "warmup_tolerance": o.policy.tolerance,
                "warmup_max_seconds": o.policy.warmup_max,
                "threads": o.threads,
                "inputs": "files" if o.inputs else "generated",
                "seed": o.seed,
                "sla_seconds": o.sla,
            },
            "baseline": None if b is None else b["id"],
            "load_seconds": None if b is None else b["load_seconds"],
            "first_inference_seconds": None if b is None else b["first_inference_seconds"],
            "latency_seconds": latency_stats([]) if b is None else b["latency_seconds"],
            "throughput_per_second": None if b is None else b["throughput_per_second"],
            "items_per_second": None if b is None else b["items_per_second"],
            "samples": 0 if b is None else b["samples"],
            "warmup": None if b is None else b["warmup"],
            "energy": None if b is None else b["energy"],
            "configurations": configs,
            "memory": {
                "model_weight_bytes": self.model.get("weight_bytes"),
                "peak_rss_bytes": max(
                    (c.peak_rss_bytes for c in self.configs if c.peak_rss_bytes), default=None
                ),
                "arena_held_bytes": getattr(self.operators, "arena_held_bytes", None),
                "arena_peak_in_use_bytes": getattr(self.operators, "arena_peak_in_use_bytes", None),
            },
            "operators": None if self.operators is None else self.operators.to_json(),
            "generation": None if self.generation is None else self.generation.summary(),
            "power": {
                "source": self.power_source,
                "unavailable": self.power_unavailable,
                "timeline": [{"t": t - self.started, "watts": w} for t, w in self.power_timeline],
            },
            "notes": self.notes,
        }
        out["recommendations"] = recommendations(out, min_cosine=o.min_cosine, sla=o.sla)
        return out


def _parse_model(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    return {
        "path": str(path),
        "name": path.stem,
        "sha256": hashlib.sha256(data).hexdigest(),
        "file_bytes": len(data),
    }


def plan(opts: Options, providers: list[str], precisions: list[str]) -> list[Config]:
    batches: list[int | None] = list(opts.batch_sizes) if opts.batch_sizes else [None]
    seqs: list[int | None] = list(opts.seq_lens) if opts.seq_lens else [None]
    out = []
    for i, (p, q, s, b, c) in enumerate(
        itertools.product(providers, precisions, seqs, batches, opts.concurrency)
    ):
        out.append(Config(i, p, q, b, s, c))
    return out


class _Feeds:
    """Feeds per (batch, seq_len), identical for every provider and precision."""

    def __init__(self, opts: Options, specs: list[inp.InputSpec], model: Path) -> None:
        self.opts = opts
        self.specs = specs
        self.overrides = inp.parse_shapes(opts.shapes)
        self.pool = inp.load_inputs(opts.inputs, specs, opts.preprocess) if opts.inputs else None
        self.int_high = inp.index_ranges(model) if not self.pool else {}
        self._cache: dict[tuple[int | None, int | None], list[dict[str, np.ndarray]]] = {}

    def get(self, batch: int | None, seq: int | None) -> list[dict[str, np.ndarray]]:
        key = (batch, seq)
        if key not in self._cache:
            if self.pool is not None:
                self._cache[key] = inp.rebatch(self.pool, batch)
            else:
                rng = np.random.default_rng([self.opts.seed, batch or 0, seq or 0])
                feed = {}
                for s in self.specs:
                    shape = inp.resolve_shape(s, self.overrides, batch, seq)
                    feed[s.name] = inp.generate(s, shape, rng, self.int_high.get(s.name))
                self._cache[key] = [feed]
        return self._cache[key]


def _items(feed: dict[str, np.ndarray]) -> int:
    first = next(iter(feed.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim else 1


def profile(
    opts: Options, workdir: Path, reporter: ProgressReporter | None = None
) -> ProfileResult:
    """Run everything ``opts`` asks for. Raises InputError / ValueError for bad input before
    anything is measured; afterwards failures are recorded in the result, not raised."""
    rep: ProgressReporter = reporter or Reporter()
    model = Path(opts.model)
    if not model.is_file():
        raise inp.InputError(f"{model}: no such model file")
    selection = select(opts.providers)
    precisions = prec.parse(opts.precisions)
    if any(c < 1 for c in opts.concurrency) or any(b < 1 for b in opts.batch_sizes or ()):
        raise ValueError("--concurrency and --batch-sizes must be >= 1")
    res = ProfileResult(uuid.uuid4().hex, opts, time.time())
    res.host = host_info(opts.procfs)
    res.model = _parse_model(model)
    for p, why in selection.skipped:
        res.notes.append(f"{short_name(p)} skipped: {why}")

    # Model inputs, read through a CPU session (the reference), before any timing.
    ref_session, _ = _reference_session(model, opts.threads)
    specs = [inp.InputSpec.of(a) for a in ref_session.get_inputs()]
    res.model["inputs"] = [{"name": s.name, "type": s.type, "shape": list(s.shape)} for s in specs]
    res.model["outputs"] = [o.name for o in ref_session.get_outputs()]
    meta = ref_session.get_modelmeta()
    res.model["producer"] = meta.producer_name
    res.model["weight_bytes"] = prec.weight_bytes(model)
    if opts.seq_lens and not inp.has_seq_dim(specs) and not inp.parse_shapes(opts.shapes).dims:
        raise inp.InputError("--seq-lens: the model has no dynamic sequence-length dimension")
    if opts.batch_sizes and not inp.has_dynamic_batch(specs):
        res.notes.append("the model's batch dimension is fixed: other batch sizes will fail")
    layout = None
    if opts.generate:
        from .generate import detect

        layout = detect(specs, res.model["outputs"])  # not a decoder: say so before measuring
    feeds = _Feeds(opts, specs, model)
    feeds.get(None if not opts.batch_sizes else opts.batch_sizes[0], None)  # bad input fails now

    monitor = None
    if opts.power:
        sampler, unavailable = collector_sampler(opts.sysfs, opts.procfs, opts.power_interval)
        res.power_unavailable = unavailable
        if sampler is not None:
            monitor = PowerMonitor(sampler, opts.power_interval).start()
    else:
        res.power_unavailable = ["disabled (--no-power)"]
    configs = plan(opts, selection.providers, precisions)
    res.configs = [ConfigResult(c) for c in configs]
    rep.start(len(configs))
    rss = PeakRss(opts.procfs)
    ref_outputs: dict[tuple[int | None, int | None], list[np.ndarray]] = {}
    try:
        _run_configs(opts, model, workdir, res, feeds, ref_session, ref_outputs, rss, monitor, rep)
        if not res.interrupted and opts.op_profile:
            _operators(opts, model, workdir, res, feeds, rep, monitor)
        if not res.interrupted and layout is not None:
            _generation(opts, model, res, layout, feeds, rep)
    except KeyboardInterrupt:
        res.interrupted = True
    finally:
        if monitor is not None:
            monitor.stop()
            res.power_source = monitor.source()
            res.power_timeline = monitor.timeline()
            _energy(res, monitor)
        res.finished = time.time()
        rep.stop()
    for c in res.configs:
        if c.status == "pending":
            c.status = "skipped"
            c.error = "not run: interrupted"
    return res


def _reference_session(model: Path, threads: int | None) -> tuple[Any, float]:
    try:
        return make_session(model, CPU, threads=threads)
    except ProviderError as e:
        raise inp.InputError(f"{model}: onnxruntime cannot load it: {e}") from None


def _run_configs(opts, model, workdir, res, feeds, ref_session, ref_outputs, rss, monitor, rep):
    by_pair: dict[tuple[str, str], list[ConfigResult]] = {}
    for c in res.configs:
        by_pair.setdefault((c.config.provider, c.config.precision), []).append(c)
    index = 0
    for (provider, precision), group in by_pair.items():
        rep.message(f"loading {short_name(provider)} {precision}")
        try:
            path = prec.convert(model, precision, workdir)
            weights = prec.weight_bytes(path)
            session, load = make_session(path, provider, threads=opts.threads)
        except (ProviderError, prec.PrecisionError) as e:
            for c in group:
                c.status, c.error = "failed", str(e)
            index += len(group)
            continue
        first: float | None = None
        accuracy_done: dict[tuple[int | None, int | None], dict[str, Any] | None] = {}
        for c in group:
            cfg = c.config
            rep.config(index, cfg.label)
            index += 1
            c.load_seconds, c.weight_bytes = load, weights
            shape_key = (cfg.batch, cfg.seq_len)
            try:
                fl = feeds.get(cfg.batch, cfg.seq_len)
            except inp.InputError as e:
                c.status, c.error = "failed", str(e)
                continue
            c.shapes = {k: list(v.shape) for k, v in fl[0].items()}
            c.items = _items(fl[0])
            run_fn = session.run
            try:
                if first is None:
                    first = time_once(functools.partial(run_fn, None, fl[0]))
                if shape_key not in accuracy_done:
                    accuracy_done[shape_key] = _accuracy(
                        provider, precision, session, ref_session, fl[0], ref_outputs, shape_key
                    )
            except KeyboardInterrupt:
                raise
            except Exception as e:  # the provider cannot run this shape: this config fails
                c.status, c.error = "failed", _why(e)
                continue
            c.first_inference_seconds = first
            c.accuracy = accuracy_done[shape_key]
            if len(fl) == 1:
                feed = fl[0]
                fn = lambda run_fn=run_fn, feed=feed: run_fn(None, feed)  # noqa: E731
            else:
                cyc = itertools.cycle(fl)
                fn = lambda run_fn=run_fn, cyc=cyc: run_fn(None, next(cyc))  # noqa: E731
            rss.reset()
            try:
                ph = run(fn, opts.policy, cfg.concurrency, rep.phase)
            except Exception as e:
                c.status, c.error = "failed", _why(e)
                continue
            peak = rss.peak()
            c.peak_rss_bytes, c.peak_rss_since_reset = peak.bytes, peak.since_reset
            c.phase = ph
            c.status = "interrupted" if ph.interrupted else "ok"
            if ph.interrupted:
                res.interrupted = True
                return
        del session


def _why(e: BaseException) -> str:
    return (str(e).strip() or type(e).__name__).splitlines()[0][:500]


def _accuracy(provider, precision, session, ref_session, feed, ref_outputs, key):
    if provider == CPU and precision == "fp32":
        return None  # the reference itself
    if key not in ref_outputs:
        ref_outputs[key] = ref_session.run(None, feed)
    return prec.accuracy(ref_outputs[key], session.run(None, feed))


def _energy(res: ProfileResult, monitor: PowerMonitor) -> None:
    for c in res.configs:
        ph = c.phase
        if ph is None or not len(ph.samples):
            continue
        e = monitor.energy(ph.measure_started, ph.measure_ended)
        if e is None:
            continue
        d = e.to_json()
        n = len(ph.samples)
        d["joules_per_inference"] = e.joules / n
        d["inferences_per_joule"] = n / e.joules if e.joules > 0 else None
        d["joules_per_item"] = e.joules / (n * c.items)
        c.energy = d
    g = res.generation
    if g is not None and g.runs:
        e = monitor.energy(g.started, g.ended)
        g.energy = None if e is None else e.to_json()


OP_WARMUP = 5  # profiled runs left out of the operator rows (first-run allocations)


def _operators(opts, model, workdir, res, feeds, rep, monitor) -> None:
    from .operators import analyze, profile_operators

    base = res.baseline
    if base is None:
        return
    cfg = base.config
    rep.message("operator profile")
    path = model if cfg.precision == "fp32" else workdir / f"{model.stem}.{cfg.precision}.onnx"
    try:
        prof = profile_operators(
            lambda prefix: make_session(
                path, cfg.provider, threads=opts.threads, profile_prefix=prefix
            )[0],
            feeds.get(cfg.batch, cfg.seq_len)[0],
            workdir,
            warmup=OP_WARMUP,
            runs=opts.op_profile_runs,
        )
    except KeyboardInterrupt:
        raise
    except Exception as e:
        res.notes.append(f"operator profile failed: {_why(e)}")
        return
    res.operators = prof
    if opts.analyze:
        rep.message("ortel analyze")
        watts = source = None
        ph = base.phase
        if monitor is not None and ph is not None:  # power while this configuration ran
            measured = monitor.energy(ph.measure_started, ph.measure_ended)
            if measured is not None:
                watts, source = measured.average_watts, measured.source
        prof.analysis = analyze(
            path,
            prof,
            workdir,
            shapes=base.shapes,
            watts=watts,
            power_source=source,
            threads=opts.threads,
            provider=cfg.provider,
            warmup_runs=OP_WARMUP,
        )
        if isinstance(prof.analysis, dict) and prof.analysis.get("error"):
            res.notes.append(f"ortel analyze: {prof.analysis['error']}")  # shown, not buried


def _generation(opts, model, res, layout, feeds, rep) -> None:
    from .generate import run_generation

    base = res.baseline
    provider = base.config.provider if base else CPU
    try:
        session, _ = make_session(model, provider, threads=opts.threads)
    except ProviderError as e:
        res.notes.append(f"generation not run: {e}")
        return
    rep.message(f"generation: {opts.generate} tokens × {opts.generate_runs} runs")
    rep.start(opts.generate_runs)
    high = feeds.int_high.get(layout.input_ids, inp.DEFAULT_INT_HIGH)
    try:
        res.generation = run_generation(
            session,
            layout,
            prompt_tokens=opts.prompt_len,
            new_tokens=opts.generate,
            runs=opts.generate_runs,
            batch=(opts.batch_sizes or [1])[0],
            overrides=feeds.overrides,
            vocab_high=high,
            seed=opts.seed,
            progress=lambda i, n: rep.phase("generate", i / n, i),
        )
    except inp.InputError as e:
        res.notes.append(f"generation not run: {e}")
        return
    except Exception as e:  # onnxruntime rejected a step: the rest of the run stands
        res.notes.append(f"generation failed: {_why(e)}")
        return
    if res.generation.interrupted:
        res.interrupted = True
