"""Reports of a run (``--out DIR``): summary.json, CSV tables, summary.md and report.html.

Everything is rendered from the summary plus the raw samples, through one ``samples(config_id,
kind)`` accessor, so a live run and a stored one (``ortel runs show RUN --out DIR``) give the
same files. Files are written whole to a temporary name and renamed, so an interrupted write
never leaves a half report next to a good one.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ortel.analysis.svg import fmt_bytes, fmt_seconds

from .stats import STAT_KEYS, Samples


def result_samples(result: Any) -> Samples:
    """The accessor over a live profiler.ProfileResult."""
    by_id = {c.config.id: c for c in result.configs}

    def get(config_id: int | None, kind: str) -> np.ndarray:
        if config_id is None:
            g = result.generation
            if g is None:
                return np.empty(0)
            if kind == "ttft":
                return np.array([r.ttft for r in g.runs])
            if kind == "itl":
                return np.array([s for r in g.runs for s in r.steps])
            return np.empty(0)
        c = by_id.get(config_id)
        if c is None or c.phase is None:
            return np.empty(0)
        if kind == "latency":
            return c.phase.samples
        if kind == "warmup":
            return c.phase.warmup_latencies
        if kind == "warmup_ends":
            return c.phase.warmup_ends
        return np.empty(0)

    return get


def store_samples(store: Any, run_id: str) -> Samples:
    return lambda config_id, kind: store.samples(run_id, config_id, kind)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_reports(
    summary: dict[str, Any], samples: Samples, out: Path, trace: Path | None = None
) -> list[Path]:
    """Write every report file into ``out``; returns their paths."""
    from .html import render_html

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def put(name: str, text: str) -> None:
        p = out / name
        _write(p, text)
        written.append(p)

    put("summary.json", json.dumps(summary, indent=2, default=_json_default) + "\n")
    put("configurations.csv", configurations_csv(summary))
    put("samples.csv", samples_csv(summary, samples))
    if summary.get("operators"):
        put("operators.csv", operators_csv(summary))
    if (summary.get("power") or {}).get("timeline"):
        put("power.csv", power_csv(summary))
    put("summary.md", markdown(summary))
    put("report.html", render_html(summary, samples))
    if trace is not None and trace.is_file():
        put("onnxruntime_profile.json", trace.read_text())
    return written


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _csv(rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerows(rows)
    return buf.getvalue()


CONFIG_COLUMNS = (
    ["id", "label", "provider", "precision", "batch", "seq_len", "concurrency", "status", "error"]
    + ["load_seconds", "first_inference_seconds", "samples"]
    + [f"{k}_seconds" for k in STAT_KEYS]
    + ["throughput_per_second", "items_per_second", "warmup_seconds", "steady"]
    + ["peak_rss_bytes", "max_abs_diff", "cosine"]
    + [
        "joules_per_inference",
        "inferences_per_joule",
        "average_watts",
        "peak_watts",
        "power_source",
    ]
)


def configurations_csv(summary: dict[str, Any]) -> str:
    rows: list[list[Any]] = [list(CONFIG_COLUMNS)]
    for c in summary["configurations"]:
        lat, w = c["latency_seconds"], c.get("warmup") or {}
        acc, e = c.get("accuracy") or {}, c.get("energy") or {}
        rows.append(
            [c[k] for k in CONFIG_COLUMNS[:9]]
            + [c["load_seconds"], c["first_inference_seconds"], c["samples"]]
            + [lat[k] for k in STAT_KEYS]
            + [c["throughput_per_second"], c["items_per_second"], w.get("seconds"), w.get("steady")]
            + [(c.get("memory") or {}).get("peak_rss_bytes"), acc.get("max_abs_diff")]
            + [acc.get("cosine"), e.get("joules_per_inference"), e.get("inferences_per_joule")]
            + [e.get("average_watts"), e.get("peak_watts"), e.get("source")]
        )
    return _csv(rows)


def samples_csv(summary: dict[str, Any], samples: Samples) -> str:
    """Every raw sample: measured latency and warm-up per configuration, TTFT and inter-token
    latency of generation (config_id empty)."""
    buf = io.StringIO()
    buf.write("config_id,kind,seq,seconds\n")
    keys: list[tuple[int | None, str]] = []
    for c in summary["configurations"]:
        keys += [(c["id"], "warmup"), (c["id"], "latency")]
    if summary.get("generation"):
        keys += [(None, "ttft"), (None, "itl")]
    for cid, kind in keys:
        a = samples(cid, kind)
        prefix = f"{'' if cid is None else cid},{kind},"
        buf.writelines(f"{prefix}{i},{v!r}\n" for i, v in enumerate(a.tolist()))
    return buf.getvalue()


def operators_csv(summary: dict[str, Any]) -> str:
    nodes = summary["operators"]["nodes"]
    cols = [
        "node",
        "op_type",
        "provider",
        "calls",
        "total_seconds",
        "mean_seconds",
        "median_seconds",
        "share",
        "output_bytes",
        "activation_bytes",
        "parameter_bytes",
    ]
    return _csv([cols] + [[n[k] for k in cols] for n in nodes])


def power_csv(summary: dict[str, Any]) -> str:
    p = summary["power"]
    return _csv(
        [["t_seconds", "watts", "source"]]
        + [[x["t"], x["watts"], p["source"]] for x in p["timeline"]]
    )


def _num(v: float | None, fmt: str = "{:.3g}") -> str:
    return "—" if v is None else fmt.format(v)


def markdown(s: dict[str, Any]) -> str:
    m, h = s["model"], s["host"]
    lat = s["latency_seconds"]
    lines = [
        f"# ortel profile: {m.get('name')}",
        "",
        f"Run `{s['run_id']}`{' (label ' + s['label'] + ')' if s.get('label') else ''} on "
        f"{h.get('host')} ({h.get('cpu_model')}, {h.get('cores')} cores, "
        f"onnxruntime {h.get('onnxruntime_version')}); model sha256 `{m.get('sha256', '')[:16]}…`.",
        "",
    ]
    if s.get("interrupted"):
        lines += ["**Interrupted (Ctrl-C): the numbers cover what was measured before.**", ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| session load | {fmt_seconds(s['load_seconds'])} |",
        f"| first (cold) inference | {fmt_seconds(s['first_inference_seconds'])} |",
        f"| p50 / p90 / p99 / p99.9 | {fmt_seconds(lat['p50'])} / {fmt_seconds(lat['p90'])} / "
        f"{fmt_seconds(lat['p99'])} / {fmt_seconds(lat['p999'])} |",
        f"| mean ± stddev | {fmt_seconds(lat['mean'])} ± {fmt_seconds(lat['stddev'])} |",
        f"| min / max | {fmt_seconds(lat['min'])} / {fmt_seconds(lat['max'])} |",
        f"| throughput | {_num(s['throughput_per_second'], '{:.1f}')} inferences/s |",
        f"| samples | {s['samples']} |",
    ]
    e = s.get("energy")
    if e:
        lines.append(
            f"| energy | {e['joules_per_inference']:.3g} J/inference, {e['average_watts']:.3g} W "
            f"average ({e['source']}) |"
        )
    else:
        lines.append("| energy | no power data |")
    lines += ["", "## Recommendations", ""]
    for r in s.get("recommendations", []):
        mark = "⚠ " if r["severity"] == "warning" else ""
        lines.append(f"- {mark}{r['text']}")
    if not s.get("recommendations"):
        lines.append("- none (a single configuration: sweep batch sizes, precisions or providers)")
    lines += [
        "",
        "## Configurations",
        "",
        "| # | configuration | status | p50 | p99 | items/s | samples | steady | cosine | J/inf |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in s["configurations"]:
        cl = c["latency_seconds"]
        w = c.get("warmup") or {}
        acc = c.get("accuracy") or {}
        en = c.get("energy") or {}
        status = c["status"] if not c["error"] else f"{c['status']}: {c['error']}"
        lines.append(
            f"| {c['id']} | {c['label']} | {status} | {fmt_seconds(cl['p50'])} | "
            f"{fmt_seconds(cl['p99'])} | {_num(c['items_per_second'], '{:.1f}')} | {c['samples']} "
            f"| {'yes' if w.get('steady') else 'no' if w else '—'} | "
            f"{_num(acc.get('cosine'), '{:.5f}')} | {_num(en.get('joules_per_inference'))} |"
        )
    g = s.get("generation")
    if g:
        t, i = g["time_to_first_token_seconds"], g["inter_token_latency_seconds"]
        lines += [
            "",
            "## Generation",
            "",
            f"{g['runs']} runs of {g['prompt_tokens']} prompt tokens + {g['new_tokens']} new "
            f"tokens (batch {g['batch']}).",
            "",
            f"- time to first token: p50 {fmt_seconds(t['p50'])}, p99 {fmt_seconds(t['p99'])} "
            f"(cold {fmt_seconds(g['cold_time_to_first_token_seconds'])})",
            f"- inter-token latency: p50 {fmt_seconds(i['p50'])}, p99 {fmt_seconds(i['p99'])}",
            f"- {_num(g['decode_tokens_per_second'], '{:.1f}')} tokens/s decoding, "
            f"{_num(g['tokens_per_second'], '{:.1f}')} tokens/s end to end; prefill "
            f"{fmt_seconds(g['prefill_seconds'])}, decode {fmt_seconds(g['decode_seconds'])}",
            f"- KV cache: {fmt_bytes(g['kv_cache_bytes'])}; energy "
            + (f"{g['joules_per_token']:.3g} J/token" if g.get("joules_per_token") else "unknown"),
        ]
    ops = s.get("operators")
    if ops:
        lines += [
            "",
            "## Operators",
            "",
            f"{ops['runs']} profiled runs. Top operator types:",
            "",
            "| op type | provider | nodes | time/run | share |",
            "|---|---|---|---|---|",
        ]
        for t in ops["by_type"][:10]:
            lines.append(
                f"| {t['op_type']} | {t['provider']} | {t['nodes']} | "
                f"{fmt_seconds(t['seconds_per_run'])} | {t['share']:.1%} |"
            )
    mem = s.get("memory") or {}
    lines += [
        "",
        "## Memory",
        "",
        f"- model weights: {fmt_bytes(mem.get('model_weight_bytes'))}",
        f"- peak RSS: {fmt_bytes(mem.get('peak_rss_bytes'))}",
        f"- onnxruntime arena: {fmt_bytes(mem.get('arena_held_bytes'))} held, "
        f"{fmt_bytes(mem.get('arena_peak_in_use_bytes'))} peak in use",
    ]
    if s.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in s["notes"]]
    return "\n".join(lines) + "\n"
