"""``ortel profile``, ``ortel runs`` and ``ortel compare`` (loaded lazily by ortel.exporter.cli).

Exit codes: 0 done; 1 ``compare`` found a regression beyond ``--fail-on-regression``; 2 bad input
(one line on stderr); 130 interrupted (``profile`` still writes and stores what it measured).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from ortel.core.cli import fail


def _ints(name: str):
    def parse(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[int] | None:
        if value is None or not value.strip():
            return None
        try:
            out = [int(v) for v in value.split(",") if v.strip()]
        except ValueError:
            msg = f"{value!r}: expected integers like 1,2,4"
            raise click.BadParameter(msg, param_hint=name) from None
        if not out or any(v < 1 for v in out):
            raise click.BadParameter(f"{value!r}: values must be >= 1", param_hint=name)
        return list(dict.fromkeys(out))

    return parse


def _env(name: str) -> str:
    return "ORTEL_PROFILE_" + name.upper().replace("-", "_")


def _opt(*decls: str, **kw: Any):
    """click.option with the ORTEL_PROFILE_* environment variable shown in --help."""
    long = next(d for d in decls if d.startswith("--")).split("/")[0]
    kw.setdefault("envvar", _env(long[2:]))
    kw.setdefault("show_envvar", True)
    if "default" in kw and not kw.get("is_flag"):
        kw.setdefault("show_default", True)
    return click.option(*decls, **kw)


def _db_option(fn):
    return click.option(
        "--db",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="ORTEL_DB",
        show_envvar=True,
        help="Results store (DuckDB file). Default: runs.duckdb in the user data directory.",
    )(fn)


def _stdout():
    """Results on stdout: wide enough for the tables when piped to a CI log or a file."""
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


# --- rich progress -------------------------------------------------------------------------------


class RichReporter:
    """Progress bars on stderr: one for the configurations, one for the current phase."""

    def __init__(self, quiet: bool = False) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(stderr=True, quiet=quiet)
        # 4 refreshes a second: the display thread competes for the GIL with the measurement.
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=self.console,
            refresh_per_second=4,
        )
        self._overall: Any = None
        self._phase: Any = None
        self._total = 0

    def start(self, total: int) -> None:
        if not self.progress.live.is_started:
            self.progress.start()
        if self._overall is not None:
            self.progress.remove_task(self._overall)
        self._total = total
        self._overall = self.progress.add_task("configurations", total=total, info="")
        if self._phase is None:
            self._phase = self.progress.add_task("", total=1.0, info="")

    def config(self, index: int, label: str) -> None:
        self.progress.update(self._overall, completed=index, info=label)
        self.progress.update(self._phase, completed=0, description="  warm-up", info="")

    def phase(self, phase: str, fraction: float, samples: int) -> None:
        name = {"warmup": "  warm-up", "measure": "  measuring", "generate": "  generating"}
        info = f"{samples} samples" if phase == "measure" else ""
        if phase == "generate":
            info = f"{samples} runs"
            self.progress.update(self._overall, completed=samples)
        self.progress.update(
            self._phase, completed=fraction, description=name.get(phase, phase), info=info
        )

    def message(self, text: str) -> None:
        if self._phase is not None:
            self.progress.update(self._phase, description=f"  {text}", completed=0, info="")

    def stop(self) -> None:
        if self._overall is not None:
            self.progress.update(self._overall, completed=self._total)
        self.progress.stop()


# --- ortel profile -------------------------------------------------------------------------------


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@_opt(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write summary.json, CSV tables, summary.md and report.html here.",
)
@_db_option
@_opt("--store/--no-store", default=True, help="Keep the run in the results store.")
@_opt("--label", help="A name for the run (ortel compare label:NAME latest).")
@_opt(
    "--providers",
    default="cpu",
    help="Execution providers: all, or a comma list (cpu, cuda, tensorrt, openvino, …).",
)
@_opt(
    "--precision",
    "precisions",
    default="fp32",
    help="Comma list of fp32, fp16 (converted), int8 (dynamic quantization).",
)
@_opt("--batch-sizes", callback=_ints("--batch-sizes"), help="Batch sweep, e.g. 1,2,4,8,16,32.")
@_opt(
    "--concurrency",
    callback=_ints("--concurrency"),
    default="1",
    help="Concurrent requests sweep, e.g. 1,2,4.",
)
@_opt(
    "--seq-lens",
    callback=_ints("--seq-lens"),
    help="Sequence-length sweep for text models, e.g. 32,128,512.",
)
@_opt(
    "--shape",
    "shapes",
    multiple=True,
    help="Dynamic dimensions: NAME:1x3x224x224 for an input, or DIM=8 for a symbolic dim.",
)
@_opt(
    "--inputs",
    "inputs",
    multiple=True,
    help="Real inputs: .npy (NAME=file.npy), .npz, .pb (TensorProto) or images.",
)
@_opt(
    "--preprocess",
    type=click.Choice(["imagenet"]),
    help="Image preprocessing: imagenet (resize 256, centre-crop 224, normalise, CHW).",
)
@_opt(
    "--min-duration",
    type=float,
    default=5.0,
    help="Measured phase lasts at least this many seconds…",
)
@_opt("--min-samples", type=int, default=1000, help="…and at least this many inferences.")
@_opt("--max-duration", type=float, help="Stop a measured phase after this many seconds anyway.")
@_opt("--warmup-window", type=float, default=0.5, help="Seconds per warm-up window.")
@_opt(
    "--warmup-tolerance",
    type=float,
    default=0.10,
    help="Steady when the last 3 windows' median and throughput agree within this share.",
)
@_opt("--warmup-max", type=float, default=30.0, help="Give up on steady state after this long.")
@_opt("--generate", type=int, help="LLM decoders with a KV cache: generate N new tokens.")
@_opt("--prompt-len", type=int, default=32, help="Prompt tokens for --generate.")
@_opt("--generate-runs", type=int, default=5, help="Timed generations for --generate.")
@_opt(
    "--op-profile/--no-op-profile",
    default=True,
    help="One profiled pass for per-operator times and memory.",
)
@_opt(
    "--analyze/--no-analyze",
    default=True,
    help="Run ortel analyze on the operator profile (FLOPs, roofline, critical path) into the "
    "same report; the host's roofline is measured once and cached.",
)
@_opt("--power/--no-power", default=True, help="Sample power and energy during the run.")
@_opt("--power-interval", type=float, default=0.2, help="Seconds between power samples.")
@_opt("--threads", type=int, help="onnxruntime intra-op threads (default: its own choice).")
@_opt("--sla", type=float, help="p99 target in seconds: the recommended batch must meet it.")
@_opt(
    "--min-cosine",
    type=float,
    default=0.99,
    help="Precisions whose outputs fall below this cosine similarity are not recommended.",
)
@_opt("--seed", type=int, default=0, help="Seed of the generated inputs.")
@_opt(
    "--sysfs",
    type=click.Path(file_okay=False, path_type=Path),
    default="/sys",
    help="sysfs root for the power collectors.",
)
@_opt(
    "--procfs",
    type=click.Path(file_okay=False, path_type=Path),
    default="/proc",
    help="procfs root (memory, host info, power estimate).",
)
@_opt("--quiet", "-q", is_flag=True, help="No progress bars.")
def profile(**o: Any) -> None:
    """Benchmark MODEL: load, cold start, warm-up to steady state, measured percentiles, sweeps,
    providers, precision, generation, power; stored for `ortel compare`."""
    from .inputs import InputError
    from .profiler import Options
    from .profiler import profile as run_profile
    from .providers import ProviderError
    from .runner import Policy
    from .store import Store, StoreError, default_path

    try:
        policy = Policy(
            min_duration=o["min_duration"],
            min_samples=o["min_samples"],
            warmup_window=o["warmup_window"],
            tolerance=o["warmup_tolerance"],
            warmup_max=o["warmup_max"],
            max_duration=o["max_duration"],
        )
    except ValueError as e:
        fail(str(e))
    for name in ("generate", "prompt_len", "generate_runs", "threads"):
        if o[name] is not None and o[name] < 1:
            fail(f"--{name.replace('_', '-')} must be >= 1")
    if o["power_interval"] <= 0:
        fail("--power-interval must be > 0")
    opts = Options(
        model=o["model"],
        providers=o["providers"],
        precisions=o["precisions"],
        batch_sizes=o["batch_sizes"],
        seq_lens=o["seq_lens"],
        concurrency=o["concurrency"] or [1],
        shapes=o["shapes"],
        inputs=o["inputs"],
        preprocess=o["preprocess"],
        policy=policy,
        op_profile=o["op_profile"],
        analyze=o["analyze"],
        generate=o["generate"],
        prompt_len=o["prompt_len"],
        generate_runs=o["generate_runs"],
        power=o["power"],
        power_interval=o["power_interval"],
        sysfs=o["sysfs"],
        procfs=o["procfs"],
        threads=o["threads"],
        seed=o["seed"],
        sla=o["sla"],
        min_cosine=o["min_cosine"],
        label=o["label"],
    )
    store = None
    if o["store"]:
        try:  # open it first: an unusable store is bad input, found before measuring
            store = Store(o["db"] or default_path())
        except StoreError as e:
            fail(str(e))
    reporter = RichReporter(quiet=o["quiet"])
    with tempfile.TemporaryDirectory(prefix="ortel-profile-") as tmp:
        try:
            result = run_profile(opts, Path(tmp), reporter)
        except (InputError, ValueError, ProviderError) as e:
            reporter.stop()
            fail(str(e))
        summary = result.summary()

        out = _stdout()  # results on stdout; -q silences only the progress
        _print_summary(out, summary)
        if store is not None:
            with store:
                store.save(result, summary)
            out.print(f"stored as run {result.run_id} in {store.path}")
        if o["out"] is not None:
            from .report import result_samples, write_reports

            trace = None
            if result.operators is not None and result.operators.trace_path:
                trace = Path(result.operators.trace_path)
            try:
                write_reports(summary, result_samples(result), o["out"], trace)
            except OSError as e:
                fail(f"cannot write reports to {o['out']}: {e.strerror or e}")
            out.print(f"reports in {o['out']} (report.html, summary.json, …)")
    if result.interrupted:
        sys.exit(130)


def _print_summary(console: Any, s: dict[str, Any]) -> None:
    from rich.table import Table

    from ortel.analysis.svg import fmt_seconds

    t = Table(title=f"ortel profile: {s['model'].get('name')}", title_justify="left")
    for col in ("#", "configuration", "status", "p50", "p99", "items/s", "samples", "steady"):
        t.add_column(col, justify="left" if col in ("configuration", "status") else "right")
    for c in s["configurations"]:
        lat = c["latency_seconds"]
        w = c.get("warmup") or {}
        status = c["status"] + (f": {c['error'][:60]}" if c["error"] else "")
        ips = c["items_per_second"]
        t.add_row(
            str(c["id"]),
            c["label"],
            status,
            fmt_seconds(lat["p50"]),
            fmt_seconds(lat["p99"]),
            "—" if ips is None else f"{ips:.1f}",
            str(c["samples"]),
            "yes" if w.get("steady") else "no" if w else "—",
        )
    console.print(t)
    console.print(
        f"load {fmt_seconds(s['load_seconds'])}, first inference "
        f"{fmt_seconds(s['first_inference_seconds'])}"
        + (
            f", energy {s['energy']['joules_per_inference']:.3g} J/inference "
            f"({s['energy']['source']})"
            if s.get("energy")
            else ", no power data"
        )
    )
    for r in s["recommendations"]:
        console.print(
            ("[yellow]! " if r["severity"] == "warning" else "• ") + r["text"],
            markup=r["severity"] == "warning",
            highlight=False,
        )
    for n in s.get("notes") or []:  # what did not run, and why
        console.print("note: " + n, markup=False, highlight=False)


# --- ortel runs ----------------------------------------------------------------------------------


def _open_store(db: Path | None, read_only: bool = True):
    from .store import Store, StoreError, default_path

    try:
        return Store(db or default_path(), read_only=read_only)
    except StoreError as e:
        fail(str(e))


def _resolve(store: Any, ref: str) -> str:
    from .store import StoreError

    try:
        return store.resolve(ref)
    except StoreError as e:
        fail(str(e))


@click.group()
def runs() -> None:
    """The results store: list, show, export and import profile runs."""


@runs.command("list")
@_db_option
@click.option("--limit", type=int, default=20, show_default=True, help="Newest N runs (0: all).")
@click.option("--model", help="Only runs of this model (file stem).")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
def runs_list(db: Path | None, limit: int, model: str | None, as_json: bool) -> None:
    """Stored runs, newest first."""
    from ortel.analysis.svg import fmt_seconds

    with _open_store(db) as store:
        rows = store.list(limit or None, model)
    if as_json:
        for r in rows:
            click.echo(json.dumps(r, default=str))
        return
    from rich.table import Table

    t = Table()
    for col in (
        "run",
        "started (UTC)",
        "label",
        "model",
        "providers",
        "p50",
        "p99",
        "inf/s",
        "configs",
    ):
        t.add_column(col)
    for r in rows:
        thr = r["throughput_per_second"]
        t.add_row(
            r["run_id"][:12] + (" (interrupted)" if r["interrupted"] else ""),
            str(r["started"])[:19],
            r["label"] or "",
            r["model_name"] or "",
            ",".join(
                p.removesuffix("ExecutionProvider") for p in (r["providers"] or "").split(",")
            ),
            fmt_seconds(r["p50"]),
            fmt_seconds(r["p99"]),
            "—" if thr is None else f"{thr:.1f}",
            str(r["configs"]),
        )
    _stdout().print(t)


@runs.command("show")
@click.argument("run")
@_db_option
@click.option("--json", "as_json", is_flag=True, help="The run's summary.json.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Regenerate the run's reports (report.html, CSVs, …) here.",
)
def runs_show(run: str, db: Path | None, as_json: bool, out: Path | None) -> None:
    """One run: its summary (RUN: id, prefix, latest, latest~N or label:NAME)."""
    from .report import markdown, store_samples, write_reports

    with _open_store(db) as store:
        run_id = _resolve(store, run)
        summary = store.summary(run_id)
        if out is not None:
            try:
                write_reports(summary, store_samples(store, run_id), out)
            except OSError as e:
                fail(f"cannot write reports to {out}: {e.strerror or e}")
            click.echo(f"reports in {out}", err=True)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    elif out is None:
        click.echo(markdown(summary), nl=False)


@runs.command("export")
@click.argument("run", nargs=-1)
@_db_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json", "parquet"]),
    default="json",
    show_default=True,
    help="json: one re-importable file; csv/parquet: one per table.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="File (json) or directory (csv, parquet) to write.",
)
def runs_export(run: tuple[str, ...], db: Path | None, fmt: str, out: Path) -> None:
    """Export runs (all when none is named) for another host or another tool."""
    from .store import StoreError

    with _open_store(db) as store:
        ids = [_resolve(store, r) for r in run] or [r["run_id"] for r in store.list()]
        if not ids:
            fail("the store has no runs to export")
        try:
            paths = store.export(ids, fmt, out)
        except (StoreError, OSError) as e:
            fail(f"cannot export to {out}: {e}")
    click.echo(
        f"exported {len(ids)} run(s) to {', '.join(str(p) for p in paths[:1])}"
        + (f" (+{len(paths) - 1} files)" if len(paths) > 1 else ""),
        err=True,
    )


@runs.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@_db_option
def runs_import(files: tuple[Path, ...], db: Path | None) -> None:
    """Merge runs from other hosts: JSON exports, Parquet export directories or .duckdb stores."""
    from .store import StoreError

    with _open_store(db, read_only=False) as store:
        try:
            imported, skipped = store.import_files(list(files))
        except StoreError as e:
            fail(str(e))
    click.echo(f"imported {imported} run(s), {skipped} already present", err=True)


# --- ortel compare -------------------------------------------------------------------------------


@click.command()
@click.argument("run_a")
@click.argument("run_b")
@_db_option
@click.option(
    "--statistic",
    type=click.Choice(["p50", "p90", "p95", "p99", "p999", "mean"]),
    default="p50",
    show_default=True,
    envvar="ORTEL_COMPARE_STATISTIC",
    show_envvar=True,
    help="Latency statistic to judge.",
)
@click.option(
    "--fail-on-regression",
    "threshold",
    envvar="ORTEL_COMPARE_FAIL_ON_REGRESSION",
    show_envvar=True,
    help="Exit 1 when RUN_B is significantly slower than RUN_A by more than this (5%).",
)
@click.option(
    "--alpha",
    type=float,
    default=0.01,
    show_default=True,
    envvar="ORTEL_COMPARE_ALPHA",
    show_envvar=True,
    help="Significance level of the Mann–Whitney test.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result on stdout.")
def compare(
    run_a: str,
    run_b: str,
    db: Path | None,
    statistic: str,
    threshold: str | None,
    alpha: float,
    as_json: bool,
) -> None:
    """Compare RUN_B against RUN_A (the baseline) with a statistical test on the raw samples."""
    from .compare import compare_runs, parse_threshold

    thr = None
    if threshold is not None:
        try:
            thr = parse_threshold(threshold)
        except ValueError as e:
            fail(str(e))
    if not 0 < alpha < 1:
        fail("--alpha must be between 0 and 1")
    with _open_store(db) as store:
        a, b = _resolve(store, run_a), _resolve(store, run_b)
        cmp = compare_runs(store, a, b, statistic, thr, alpha)
    if not cmp.pairs:
        fail(f"runs {a[:12]} and {b[:12]} have no configuration in common")
    if as_json:
        click.echo(json.dumps(cmp.to_json(), indent=2))
    else:
        _print_comparison(cmp)
    if cmp.failed:
        sys.exit(1)


def _print_comparison(cmp: Any) -> None:
    from rich.table import Table

    from ortel.analysis.svg import fmt_seconds

    console = _stdout()
    t = Table(
        title=f"{cmp.run_b[:12]} against {cmp.run_a[:12]} ({cmp.statistic})", title_justify="left"
    )
    for col in ("configuration", "A", "B", "change", "95% CI", "MWU p", "verdict"):
        t.add_column(col, justify="left" if col in ("configuration", "verdict") else "right")
    for p in cmp.pairs:
        v = p.verdict
        if v is None:
            t.add_row(p.label, "", "", "", "", "", "too few samples")
            continue
        style = "bold red" if v.regression else "green" if v.improvement else ""
        t.add_row(
            p.label,
            fmt_seconds(v.a),
            fmt_seconds(v.b),
            f"{v.change.point:+.1%}",
            f"[{v.change.low:+.1%}, {v.change.high:+.1%}]",
            f"{v.mwu.p_value:.2g}",
            f"[{style}]{v.word}[/]" if style else v.word,
        )
    console.print(t)
    for n in cmp.notes:
        console.print(f"note: {n}", highlight=False)
    for label in cmp.only_a:
        console.print(f"only in A: {label}", highlight=False)
    for label in cmp.only_b:
        console.print(f"only in B: {label}", highlight=False)
    if cmp.threshold is not None:
        if cmp.failed:
            console.print(
                f"[bold red]FAIL[/]: {len(cmp.regressions)} configuration(s) significantly "
                f"slower by more than {cmp.threshold:.1%}"
            )
        else:
            console.print(f"PASS: no significant slow-down beyond {cmp.threshold:.1%}")
