"""``ortel analyze`` and ``ortel hostinfo`` (registered lazily by ``ortel.exporter.cli``)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ortel.core.cli import fail

ENV = "ORTEL_ANALYZE_"


def _opt(*names: str, env: str, **kw: Any) -> Any:
    return click.option(*names, envvar=ENV + env, show_envvar=True, **kw)


@contextmanager
def _progress(enabled: bool = True) -> Iterator[Any]:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not enabled,
    ) as p:
        yield p


def _warn(msg: str) -> None:
    click.echo(f"ortel: warning: {msg}", err=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@_opt(
    "--trace",
    env="TRACE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="An ONNX Runtime profile (enable_profiling JSON) of MODEL; without it, MODEL is "
    "profiled here with generated inputs.",
)
@_opt(
    "--optimized-model",
    env="OPTIMIZED_MODEL",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --trace: the graph ONNX Runtime saved (optimized_model_filepath) for that run; "
    "else it is re-created at --opt-level.",
)
@_opt(
    "--shape",
    env="SHAPE",
    multiple=True,
    help="NAME=1x3x224x224 (an input's shape) or DIM=8 (a symbolic dimension); repeatable. "
    "Unset dynamic dimensions are 1.",
)
@_opt(
    "--peak-flops",
    env="PEAK_FLOPS",
    type=click.FloatRange(min=0, min_open=True),
    help="Host peak FLOP/s for the roofline [default: measured, see `ortel hostinfo`].",
)
@_opt(
    "--mem-bw",
    env="MEM_BW",
    type=click.FloatRange(min=0, min_open=True),
    help="Host memory bandwidth in bytes/s [default: measured].",
)
@_opt(
    "--power-w",
    env="POWER_W",
    type=click.FloatRange(min=0, min_open=True),
    help="Power in watts while the model runs [default: measured by ortel's power collectors "
    "during the profiled run, else estimated].",
)
@_opt(
    "--accel-speedup",
    env="ACCEL_SPEEDUP",
    type=click.FloatRange(min=1.0),
    default=10.0,
    show_default=True,
    help="Kernel speedup an accelerator gives an offloaded node (Amdahl's law).",
)
@_opt(
    "--offload-threshold",
    env="OFFLOAD_THRESHOLD",
    type=click.FloatRange(min=0, max=100),
    default=5.0,
    show_default=True,
    help="Percent of latency or energy a node or chain needs to be listed as a candidate.",
)
@_opt(
    "--min-intensity",
    env="MIN_INTENSITY",
    type=click.FloatRange(min=0),
    default=8.0,
    show_default=True,
    help="FLOPs per byte a node or chain needs to be worth offloading.",
)
@_opt(
    "--pj-per-flop",
    env="PJ_PER_FLOP",
    type=click.FloatRange(min=0),
    default=2.3,
    show_default=True,
    help="Energy per FLOP of the compute/data-movement model (Horowitz, ISSCC 2014, 45 nm).",
)
@_opt(
    "--pj-per-byte",
    env="PJ_PER_BYTE",
    type=click.FloatRange(min=0),
    default=160.0,
    show_default=True,
    help="Energy per byte moved from DRAM (Horowitz, ISSCC 2014, 45 nm).",
)
@_opt(
    "--out",
    env="OUT",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("ortel-analysis"),
    show_default=True,
    help="Directory for ops_profile.csv, critical_path.csv, offload.csv, summary.json, "
    "report.html (and the profile and optimized graph when profiling here).",
)
@_opt(
    "--runs", env="RUNS", type=click.IntRange(min=1), default=10, show_default=True,
    help="Measured runs when profiling here (more if --min-seconds is not reached).",
)  # fmt: skip
@_opt(
    "--warmup-runs", env="WARMUP_RUNS", type=click.IntRange(min=0), default=1, show_default=True,
    help="Runs left out at the start (here, or at the start of --trace).",
)  # fmt: skip
@_opt(
    "--min-seconds", env="MIN_SECONDS", type=click.FloatRange(min=0), default=1.0,
    show_default=True, help="Profile for at least this long (power needs a few samples).",
)  # fmt: skip
@_opt(
    "--opt-level",
    env="OPT_LEVEL",
    type=click.Choice(["all", "layout", "extended", "basic", "disable"]),
    default="all",
    show_default=True,
    help="ONNX Runtime graph optimization level.",
)
@_opt("--threads", env="THREADS", type=click.IntRange(min=1), help="intra_op_num_threads.")
@_opt(
    "--providers",
    env="PROVIDERS",
    default="CPUExecutionProvider",
    show_default=True,
    help="Comma-separated ONNX Runtime execution providers, in priority order.",
)
@_opt(
    "--hostinfo-cache",
    env="HOSTINFO_CACHE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where measured host roofs are cached [default: ~/.cache/ortel/hostinfo.json].",
)
@_opt("--top", env="TOP", type=click.IntRange(min=1), default=15, show_default=True,
      help="Rows in the terminal tables.")  # fmt: skip
@_opt("--no-html", env="NO_HTML", is_flag=True, help="Skip report.html.")
@_opt("--quiet", env="QUIET", is_flag=True, help="No terminal summary (files only).")
def analyze(model: Path, **kw: Any) -> None:
    """Profile MODEL (or read --trace) and report per node where the time and the energy go,
    MACs/FLOPs/bytes, what bounds each op, the critical path and what an accelerator buys."""
    import importlib.util

    if importlib.util.find_spec("onnx") is None:
        fail("ortel analyze needs the onnx package: pip install 'ortel[analysis]'")
    from .energy import FALLBACK_WATTS_PER_THREAD, Power
    from .graph import ModelError, load_model, parse_shape_args
    from .profile_run import ProfileError, bridge_graph, profile, save_optimized
    from .trace import TraceError, parse_trace

    if not model.is_file():
        fail(f"{model}: no such model file")
    trace_path: Path | None = kw["trace"]
    if trace_path is not None and not trace_path.is_file():
        fail(f"--trace {trace_path}: no such file")
    if kw["optimized_model"] is not None and not kw["optimized_model"].is_file():
        fail(f"--optimized-model {kw['optimized_model']}: no such file")
    providers = [p.strip() for p in kw["providers"].split(",") if p.strip()]
    out: Path = kw["out"]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"--out {out}: {e.strerror or e}")
    try:
        shapes = parse_shape_args(_split_env(kw["shape"]))
        original = load_model(model, shapes)
    except ModelError as e:
        fail(str(e))
    for w in original.warnings:
        _warn(w)
    tty = sys.stderr.isatty()
    run = None
    power: Power | None = None
    try:
        with _progress(tty) as prog:
            if trace_path is None:
                task = prog.add_task("profiling", total=kw["runs"])

                def on_run(done: int, runs: int, elapsed: float) -> None:
                    prog.update(task, completed=done, total=max(runs, done))

                run = profile(
                    model,
                    original,
                    out / "profile",
                    runs=kw["runs"],
                    warmup_runs=kw["warmup_runs"],
                    min_seconds=kw["min_seconds"],
                    opt_level=kw["opt_level"],
                    threads=kw["threads"],
                    providers=providers,
                    measure_power=kw["power_w"] is None,
                    progress=on_run,
                )
                trace_path = run.trace_path
                optimized_path, extended_path = run.optimized_path, run.extended_path
                power = run.power
            elif kw["optimized_model"] is not None:
                optimized_path = kw["optimized_model"]
                extended_path = bridge_graph(
                    model, optimized_path, out / "profile", kw["threads"], providers
                )
            else:
                optimized_path, extended_path = save_optimized(
                    model, out / "profile", kw["opt_level"], kw["threads"], providers
                )
            size = max(trace_path.stat().st_size, 1)
            ptask = prog.add_task("reading trace", total=size)
            summary = parse_trace(
                trace_path,
                warmup_runs=kw["warmup_runs"],
                progress=lambda n: prog.update(ptask, completed=min(n, size)),
            )
    except ProfileError as e:
        fail(f"{e} (pass --trace to analyse a profile recorded elsewhere)")
    except (TraceError, OSError) as e:
        fail(f"--trace {trace_path}: {e}")
    try:
        # The saved graphs have the model's inputs: give them the shapes resolved above.
        optimized = load_model(optimized_path, dict(original.input_shapes))
        extended = load_model(extended_path, dict(original.input_shapes)) if extended_path else None
    except ModelError as e:
        fail(f"optimized graph: {e}")
    from .mapping import map_models

    mapping = map_models(original.graph, optimized.graph, extended.graph if extended else None)
    roof = _roof(kw, tty)
    if kw["power_w"] is not None:
        power = Power(kw["power_w"], "given", "--power-w")
    elif power is None:
        threads = kw["threads"] or os.cpu_count() or 1
        power = Power(
            threads * FALLBACK_WATTS_PER_THREAD,
            "estimated",
            f"{threads} busy thread(s) x {FALLBACK_WATTS_PER_THREAD} W (not profiled here: "
            "pass --power-w)",
        )
    from .analyze import Options
    from .analyze import analyze as run_analysis
    from .report import print_summary, write_all

    opts = Options(
        accel_speedup=kw["accel_speedup"],
        offload_threshold=kw["offload_threshold"] / 100.0,
        min_intensity=kw["min_intensity"],
        pj_per_flop=kw["pj_per_flop"],
        pj_per_byte=kw["pj_per_byte"],
    )
    result = run_analysis(original, optimized, summary, roof, power, mapping, opts)
    result.summary["model"] = str(model)
    result.summary["input_shapes"] = {k: list(v) for k, v in original.input_shapes.items()}
    result.summary["resolved_dims"] = original.resolved_dims
    if run is not None:
        result.summary["profiled"] = {
            "runs": run.runs,
            "warmup_runs": run.warmup_runs,
            "seconds": run.seconds,
            "providers": run.providers,
            "threads": run.threads,
            "opt_level": run.opt_level,
        }
    result.summary["trace_file"] = str(trace_path)
    result.summary["optimized_model"] = str(optimized_path)
    for w in result.warnings:
        _warn(w)
    written = write_all(result, out, f"{model.name}", html_report=not kw["no_html"])
    if not kw["quiet"]:
        from rich.console import Console

        # Piped to a file, rich would wrap at 80 columns: the tables need more.
        console = Console() if sys.stdout.isatty() else Console(width=160)
        print_summary(result, console, kw["top"])
    click.echo("wrote " + ", ".join(str(p) for p in written), err=True)


def _split_env(values: tuple[str, ...]) -> list[str]:
    # From the environment, click gives one string: split it like repeated flags.
    out: list[str] = []
    for v in values:
        out.extend(v.split())
    return out


def _roof(kw: dict[str, Any], tty: bool) -> Any:
    from .hostinfo import HostInfoCache, host_info
    from .roofline import Roof

    if kw["peak_flops"] is not None and kw["mem_bw"] is not None:
        return Roof(kw["peak_flops"], kw["mem_bw"], "given")
    with _progress(tty) as prog:
        task = prog.add_task("measuring host roofs", total=2)

        def step(what: str, frac: float) -> None:
            prog.update(task, completed=(0 if what == "GEMM" else 1) + frac)

        info, how = host_info(HostInfoCache(kw["hostinfo_cache"]), progress=step)
    source = how if kw["peak_flops"] is None and kw["mem_bw"] is None else f"given+{how}"
    return Roof(kw["peak_flops"] or info.peak_flops, kw["mem_bw"] or info.mem_bw, source)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--refresh", is_flag=True, help="Measure again even if this host is cached.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--cache",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="ORTEL_HOSTINFO_CACHE",
    show_envvar=True,
    help="Cache file [default: $XDG_CACHE_HOME/ortel/hostinfo.json].",
)
def hostinfo(refresh: bool, as_json: bool, cache: Path | None) -> None:
    """Measure (once per host, then cached) the peak FLOP/s (float32 GEMM through numpy's BLAS)
    and memory bandwidth (STREAM-like triad) that `ortel analyze` uses as the roofline."""
    from .hostinfo import HostInfoCache, host_info
    from .report import si

    c = HostInfoCache(cache)
    with _progress(sys.stderr.isatty()) as prog:
        task = prog.add_task("measuring host roofs", total=2)
        info, how = host_info(
            c,
            refresh=refresh,
            progress=lambda what, f: prog.update(task, completed=(0 if what == "GEMM" else 1) + f),
        )
    if as_json:
        click.echo(json.dumps(info.to_json() | {"source": how, "cache": str(c.path)}, indent=2))
        return
    click.echo(f"host        {info.hostname} ({info.cpu_model}, {info.logical_cpus} CPUs)")
    click.echo(f"peak        {si(info.peak_flops, 'FLOP/s')} (float32 GEMM n={info.gemm_n})")
    click.echo(
        f"bandwidth   {si(info.mem_bw, 'B/s')} (triad, {info.threads} threads, "
        f"{si(info.triad_bytes, 'B')} per array)"
    )
    click.echo(f"ridge       {info.peak_flops / info.mem_bw:.3g} FLOP/byte")
    click.echo(f"source      {how} ({c.path})")
