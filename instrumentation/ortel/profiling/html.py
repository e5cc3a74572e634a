"""report.html: one self-contained page (inline CSS and SVG; nothing fetched from anywhere)."""

from __future__ import annotations

import math
from html import escape
from typing import Any

import numpy as np

from ortel.analysis.svg import (
    Chart,
    Series,
    bar_chart,
    fmt_bytes,
    fmt_seconds,
    histogram,
    seconds_unit,
)

from .providers import short_name
from .stats import PERCENTILES, Samples

CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}th{background:#f4f4f4}
td.l,th.l{text-align:left}.cards{display:flex;flex-wrap:wrap;gap:.6em}
.card{border:1px solid #ddd;border-radius:6px;padding:.5em .9em;min-width:9em}
.card b{display:block;font-size:1.25em}.warn{color:#a40}.bad{color:#b00}
.note{color:#666;font-size:.85em}svg{max-width:100%;height:auto;margin:.4em 0}
"""


def _e(v: Any) -> str:
    return escape(str(v))


def _card(title: str, value: str, note: str = "") -> str:
    n = f'<span class="note">{_e(note)}</span>' if note else ""
    return f'<div class="card">{_e(title)}<b>{_e(value)}</b>{n}</div>'


def _table(head: list[str], rows: list[list[Any]], left: int = 1) -> str:
    th = "".join(f'<th class="{"l" if i < left else ""}">{_e(h)}</th>' for i, h in enumerate(head))
    body = []
    for r in rows:
        tds = "".join(
            f'<td class="{"l" if i < left else ""}">{_e(v)}</td>' for i, v in enumerate(r)
        )
        body.append(f"<tr>{tds}</tr>")
    return f"<table><tr>{th}</tr>{''.join(body)}</table>"


def _ok(s: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in s["configurations"] if c["samples"]]


def _f(v: float | None, spec: str) -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def render_html(s: dict[str, Any], samples: Samples) -> str:
    m, h = s["model"], s["host"]
    lat = s["latency_seconds"]
    base_id = s.get("baseline")
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>ortel profile: {_e(m.get('name'))}</title><style>{CSS}</style></head><body>",
        f"<h1>ortel profile: {_e(m.get('name'))}</h1>",
        f'<p class="note">run {_e(s["run_id"])}'
        + (f" · label {_e(s['label'])}" if s.get("label") else "")
        + f" · {_e(h.get('host'))} · {_e(h.get('cpu_model'))} · {_e(h.get('cores'))} cores · "
        f"{_e(h.get('os'))} · onnxruntime {_e(h.get('onnxruntime_version'))} · model sha256 "
        f"{_e(str(m.get('sha256', ''))[:16])}…</p>",
    ]
    if s.get("interrupted"):
        parts.append(
            '<p class="bad"><b>Interrupted (Ctrl-C): the report covers what was measured '
            "before.</b></p>"
        )
    e = s.get("energy")
    base = next((c for c in s["configurations"] if c["id"] == base_id), None)
    parts.append('<div class="cards">')
    parts += [
        _card("session load", fmt_seconds(s["load_seconds"])),
        _card("first inference", fmt_seconds(s["first_inference_seconds"]), "cold"),
        _card("p50", fmt_seconds(lat["p50"])),
        _card("p99", fmt_seconds(lat["p99"])),
        _card("p99.9", fmt_seconds(lat["p999"])),
        _card("throughput", f"{_f(s['throughput_per_second'], '.1f')}/s"),
        _card("samples", str(s["samples"]), base["label"] if base else ""),
        _card(
            "energy",
            f"{e['joules_per_inference']:.3g} J/inf" if e else "no power data",
            e["source"] if e else "",
        ),
    ]
    parts.append("</div>")

    parts.append("<h2>Recommendations</h2><ul>")
    for r in s.get("recommendations", []):
        cls = ' class="warn"' if r["severity"] == "warning" else ""
        parts.append(f"<li{cls}>{_e(r['text'])}</li>")
    if not s.get("recommendations"):
        parts.append("<li>none: one configuration only (sweep to compare)</li>")
    parts.append("</ul>")

    if base is not None:
        parts.append("<h2>Latency distribution</h2>")
        parts.append(_latency_charts(s, base, samples))
        parts.append("<h2>Warm-up</h2>")
        parts.append(_warmup_chart(base, samples))
    parts.append(_scaling(s, "batch", "batch size"))
    parts.append(_scaling(s, "concurrency", "concurrent requests"))
    parts.append(_scaling(s, "seq_len", "sequence length"))
    parts.append(_providers(s))
    parts.append(_precision(s))
    parts.append(_power(s))
    parts.append(_configs_table(s))
    parts.append(_generation(s, samples))
    parts.append(_operators(s))
    parts.append(_memory_host(s))
    if s.get("notes"):
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in s["notes"]))
        parts.append("</ul>")
    parts.append("</body></html>\n")
    return "".join(parts)


def _latency_charts(s: dict[str, Any], base: dict[str, Any], samples: Samples) -> str:
    a = samples(base["id"], "latency")
    if not a.size:
        return "<p>no samples</p>"
    mult, unit = seconds_unit(float(np.percentile(a, 50)))
    lat = base["latency_seconds"]
    marks = [(lat[k] * mult, k) for k in ("p50", "p99") if lat[k] is not None]
    out = [histogram(f"Latency histogram: {base['label']}", a * mult, f"latency ({unit})", marks)]
    chart = Chart("Latency CDF", f"latency ({unit}, log)", "share of inferences", x_log=True)
    for c in _ok(s)[:8]:
        x = np.sort(samples(c["id"], "latency"))
        if x.size:
            chart.series.append(Series(c["label"], x * mult, np.arange(1, x.size + 1) / x.size))
    out.append(chart.render())
    q = ", ".join(f"{k} {fmt_seconds(lat[k])}" for k in PERCENTILES)
    out.append(
        f'<p class="note">{_e(q)}; {base["samples"]} samples over '
        f"{_f(base['measured_seconds'], '.2f')} s.</p>"
    )
    if base.get("untrusted_percentiles"):
        out.append(
            f'<p class="warn">{_e(", ".join(base["untrusted_percentiles"]))}: fewer than 10 '
            "samples beyond them, not to be trusted.</p>"
        )
    return "".join(out)


def _warmup_chart(base: dict[str, Any], samples: Samples) -> str:
    w = samples(base["id"], "warmup")
    meas = samples(base["id"], "latency")[:2000]
    info = base.get("warmup") or {}
    if not w.size and not meas.size:
        return "<p>no warm-up recorded</p>"
    mult, unit = seconds_unit(float(np.median(np.concatenate([w, meas]))))
    chart = Chart(
        "Warm-up and the start of the measured phase",
        "inference #",
        f"latency ({unit}, log)",
        y_log=True,
        y_zero=False,
    )
    chart.series.append(Series("warm-up", np.arange(w.size), w * mult, "points", "#ff7f0e"))
    chart.series.append(
        Series("measured", np.arange(w.size, w.size + meas.size), meas * mult, "points", "#1f77b4")
    )
    windows = info.get("windows") or []
    if windows:
        ends = np.cumsum([x["count"] for x in windows])
        chart.series.append(
            Series("window median", ends, [x["median"] * mult for x in windows], "line", "#222")
        )
    chart.vlines.append((float(w.size), "measured phase"))
    steady = "reached" if info.get("steady") else "NOT reached (warm-up limit)"
    note = (
        f"Warm-up: {info.get('inferences', 0)} inferences over "
        f"{_f(info.get('seconds'), '.2f')} s; steady state {steady}."
    )
    return chart.render() + f'<p class="note">{_e(note)}</p>'


def _scaling(s: dict[str, Any], axis: str, label: str) -> str:
    ok = [c for c in _ok(s) if c[axis] is not None]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    others = [k for k in ("provider", "precision", "batch", "seq_len", "concurrency") if k != axis]
    for c in ok:
        groups.setdefault(tuple(c[k] for k in others), []).append(c)
    groups = {k: v for k, v in groups.items() if len({c[axis] for c in v}) > 1}
    if not groups:
        return ""
    values = sorted({c[axis] for g in groups.values() for c in g})
    mult, unit = seconds_unit(max(c["latency_seconds"]["p99"] for g in groups.values() for c in g))
    log = axis != "seq_len" and values[-1] / values[0] >= 4
    thr = Chart(f"Throughput by {label}", label, "items per second", x_log=log, x_ticks=values)
    p99 = Chart(
        f"p99 latency by {label}", label, f"p99 latency ({unit})", x_log=log, x_ticks=values
    )
    varying = [i for i in range(len(others)) if len({k[i] for k in groups}) > 1]
    rows = []
    for key, g in groups.items():
        g = sorted(g, key=lambda c: c[axis])
        name = " ".join(_short(others[i], key[i]) for i in varying) or label
        thr.series.append(Series(name, [c[axis] for c in g], [c["items_per_second"] for c in g]))
        p99.series.append(
            Series(name, [c[axis] for c in g], [c["latency_seconds"]["p99"] * mult for c in g])
        )
        first = g[0]
        for c in g:
            speed = c["items_per_second"] / first["items_per_second"]
            eff = speed / (c[axis] / first[axis]) if axis != "seq_len" else None
            rows.append(
                [
                    name,
                    c[axis],
                    _f(c["items_per_second"], ".1f"),
                    f"{speed:.2f}×",
                    "—" if eff is None else f"{eff:.0%}",
                    fmt_seconds(c["latency_seconds"]["p50"]),
                    fmt_seconds(c["latency_seconds"]["p99"]),
                    f"{c['latency_seconds']['p99'] / first['latency_seconds']['p99'] - 1:+.0%}",
                ]
            )
    head = [
        "group",
        label,
        "items/s",
        "throughput ×",
        "scaling efficiency",
        "p50",
        "p99",
        "p99 change",
    ]
    return (
        f"<h2>{_e(label.capitalize())} sweep</h2>"
        + thr.render()
        + p99.render()
        + _table(head, rows, left=1)
    )


def _p50s(g: list[dict[str, Any]]) -> tuple[list[float | None], str]:
    vals = [c["latency_seconds"]["p50"] if c["samples"] else None for c in g]
    mult, unit = seconds_unit(max((v for v in vals if v), default=1.0))
    return [None if v is None else v * mult for v in vals], unit


def _short(key: str, value: Any) -> str:
    if key == "provider":
        return short_name(str(value))
    return {"batch": "b", "seq_len": "seq", "concurrency": "c"}.get(key, "") + str(value)


def _providers(s: dict[str, Any]) -> str:
    provs = list(dict.fromkeys(c["provider"] for c in s["configurations"]))
    if len(provs) < 2:
        return ""
    base = next((c for c in s["configurations"] if c["id"] == s.get("baseline")), None)
    if base is None:
        return ""
    same = ("precision", "batch", "seq_len", "concurrency")
    g = [c for c in s["configurations"] if all(c[k] == base[k] for k in same)]
    labels = [short_name(c["provider"]) for c in g]
    p50, unit = _p50s(g)
    cpu = next((c for c in g if c["provider"] == "CPUExecutionProvider" and c["samples"]), None)
    notes = []
    for c in g:
        if not c["samples"]:
            notes.append("failed")
        elif cpu is not None:
            notes.append(f"{cpu['latency_seconds']['p50'] / c['latency_seconds']['p50']:.2f}× CPU")
        else:
            notes.append(fmt_seconds(c["latency_seconds"]["p50"]))
    out = [
        "<h2>Providers</h2>",
        bar_chart("p50 latency by provider", labels, p50, f"p50 ({unit})", notes),
    ]
    energy = [(c.get("energy") or {}).get("joules_per_inference") for c in g]
    if any(energy):
        out.append(bar_chart("Energy per inference", labels, energy, "joules"))
    rows = [
        [
            short_name(c["provider"]),
            c["status"] + (f": {c['error']}" if c["error"] else ""),
            fmt_seconds(c["latency_seconds"]["p50"]),
            fmt_seconds(c["latency_seconds"]["p99"]),
            _f((c.get("energy") or {}).get("joules_per_inference"), ".3g"),
            _f((c.get("accuracy") or {}).get("cosine"), ".5f"),
        ]
        for c in g
    ]
    out.append(
        _table(["provider", "status", "p50", "p99", "J/inference", "cosine vs CPU"], rows, left=2)
    )
    return "".join(out)


def _precision(s: dict[str, Any]) -> str:
    precs = list(dict.fromkeys(c["precision"] for c in s["configurations"]))
    if len(precs) < 2:
        return ""
    base = next((c for c in s["configurations"] if c["id"] == s.get("baseline")), None)
    if base is None:
        return ""
    same = ("provider", "batch", "seq_len", "concurrency")
    g = [c for c in s["configurations"] if all(c[k] == base[k] for k in same)]
    ref = next((c for c in g if c["precision"] == "fp32" and c["samples"]), None)
    labels = [c["precision"] for c in g]
    p50, unit = _p50s(g)
    notes = [
        f"{ref['latency_seconds']['p50'] / c['latency_seconds']['p50']:.2f}×"
        if ref and c["samples"]
        else "failed"
        if not c["samples"]
        else ""
        for c in g
    ]
    rows = []
    for c in g:
        acc = c.get("accuracy") or {}
        speed = (
            ref["latency_seconds"]["p50"] / c["latency_seconds"]["p50"]
            if ref and c["samples"]
            else None
        )
        rows.append(
            [
                c["precision"],
                c["status"] + (f": {c['error']}" if c["error"] else ""),
                fmt_seconds(c["latency_seconds"]["p50"]),
                _f(speed, ".2f"),
                _f(acc.get("max_abs_diff"), ".3g") if c["precision"] != "fp32" else "reference",
                _f(acc.get("cosine"), ".6f") if c["precision"] != "fp32" else "reference",
                fmt_bytes((c.get("memory") or {}).get("model_weight_bytes")),
            ]
        )
    return (
        "<h2>Precision</h2>"
        + bar_chart("p50 latency by precision", labels, p50, f"p50 ({unit})", notes)
        + _table(
            ["precision", "status", "p50", "speed-up", "max abs diff", "cosine", "weights"],
            rows,
            left=2,
        )
        + '<p class="note">Accuracy: outputs on the same inputs against fp32 (CPU).</p>'
    )


def _power(s: dict[str, Any]) -> str:
    p = s.get("power") or {}
    tl = p.get("timeline") or []
    if not tl:
        why = "; ".join(p.get("unavailable") or []) or "no power collector"
        return f"<h2>Power</h2><p>No power data ({_e(why)}).</p>"
    chart = Chart(f"Power ({p.get('source')})", "seconds since start", "watts")
    chart.series.append(Series("", [x["t"] for x in tl], [x["watts"] for x in tl], "steps"))
    for c in s["configurations"]:
        if c.get("measure_started") and c.get("measured_seconds"):
            # Shade each measured phase: the energy per inference comes from these spans.
            a = c["measure_started"] - s["started"]
            chart.bands.append((a, a + c["measured_seconds"], c["label"]))
    out = ["<h2>Power</h2>", chart.render()]
    rows = []
    for c in s["configurations"]:
        e = c.get("energy")
        if e:
            rows.append(
                [
                    c["label"],
                    f"{e['average_watts']:.3g}",
                    _f(e["peak_watts"], ".3g"),
                    f"{e['joules']:.3g}",
                    f"{e['joules_per_inference']:.3g}",
                    _f(e["inferences_per_joule"], ".3g"),
                    e["source"],
                ]
            )
    if rows:
        out.append(
            _table(
                ["configuration", "avg W", "peak W", "J", "J/inference", "inferences/J", "source"],
                rows,
            )
        )
    out.append(
        '<p class="note">Host-wide power: it includes everything else the machine did '
        "meanwhile. 'estimated' is a model of CPU power from utilisation, not a "
        "measurement.</p>"
    )
    return "".join(out)


def _configs_table(s: dict[str, Any]) -> str:
    rows = []
    for c in s["configurations"]:
        lat = c["latency_seconds"]
        w = c.get("warmup") or {}
        rows.append(
            [
                c["id"],
                c["label"],
                c["status"] + (f": {c['error']}" if c["error"] else ""),
                fmt_seconds(c["load_seconds"]),
                fmt_seconds(c["first_inference_seconds"]),
                *(
                    fmt_seconds(lat[k])
                    for k in ("p50", "p90", "p95", "p99", "p999", "mean", "stddev", "min", "max")
                ),
                _f(c["throughput_per_second"], ".1f"),
                _f(c["items_per_second"], ".1f"),
                c["samples"],
                "yes" if w.get("steady") else "no" if w else "—",
                fmt_bytes((c.get("memory") or {}).get("peak_rss_bytes")),
            ]
        )
    head = [
        "#",
        "configuration",
        "status",
        "load",
        "first",
        "p50",
        "p90",
        "p95",
        "p99",
        "p99.9",
        "mean",
        "stddev",
        "min",
        "max",
        "inf/s",
        "items/s",
        "samples",
        "steady",
        "peak RSS",
    ]
    return "<h2>All configurations</h2>" + _table(head, rows, left=3)


def _generation(s: dict[str, Any], samples: Samples) -> str:
    g = s.get("generation")
    if not g:
        return ""
    t, i = g["time_to_first_token_seconds"], g["inter_token_latency_seconds"]
    out = [
        "<h2>Generation</h2>",
        '<div class="cards">',
        _card("time to first token", fmt_seconds(t["p50"]), "p50"),
        _card("inter-token latency", fmt_seconds(i["p50"]), "p50 (TPOT)"),
        _card("decode", f"{_f(g['decode_tokens_per_second'], '.1f')} tok/s"),
        _card("end to end", f"{_f(g['tokens_per_second'], '.1f')} tok/s"),
        _card(
            "KV cache",
            fmt_bytes(g["kv_cache_bytes"]),
            f"{_f(g['kv_cache_bytes_per_token'], '.0f')} B/token",
        ),
        _card(
            "energy",
            f"{g['joules_per_token']:.3g} J/token"
            if g.get("joules_per_token")
            else "no power data",
        ),
        "</div>",
    ]
    itl = samples(None, "itl")
    steps = g["new_tokens"] - 1
    if itl.size and steps > 0 and g["runs"]:
        per = itl[: g["runs"] * steps].reshape(-1, steps)
        mult, unit = seconds_unit(float(np.median(per)))
        chart = Chart(
            "Decode step latency by position",
            "token position after the prompt",
            f"latency ({unit})",
        )
        xs = np.arange(2, steps + 2)
        chart.series.append(Series("median over runs", xs, np.median(per, axis=0) * mult))
        chart.series.append(Series("max over runs", xs, per.max(axis=0) * mult))
        out.append(chart.render())
    out.append(
        _table(
            ["", "p50", "p90", "p99", "mean", "max"],
            [
                [
                    "time to first token",
                    *(fmt_seconds(t[k]) for k in ("p50", "p90", "p99", "mean", "max")),
                ],
                [
                    "inter-token latency",
                    *(fmt_seconds(i[k]) for k in ("p50", "p90", "p99", "mean", "max")),
                ],
            ],
        )
    )
    out.append(
        f'<p class="note">{g["runs"]} runs, {g["prompt_tokens"]} prompt tokens, '
        f"{g['new_tokens']} new tokens, batch {g['batch']}; prefill "
        f"{_e(fmt_seconds(g['prefill_seconds']))}, decode "
        f"{_e(fmt_seconds(g['decode_seconds']))} per run; cold first token "
        f"{_e(fmt_seconds(g['cold_time_to_first_token_seconds']))}.</p>"
    )
    return "".join(out)


def _operators(s: dict[str, Any]) -> str:
    ops = s.get("operators")
    if not ops:
        return "<h2>Operators</h2><p>No operator profile in this run.</p>"
    types = ops["by_type"][:12]
    out = [
        "<h2>Operators</h2>",
        bar_chart(
            "Time per run by operator type",
            [t["op_type"] for t in types],
            [t["seconds_per_run"] * 1e6 for t in types],
            "µs per run",
            [f"{t['share']:.0%}" for t in types],
        ),
    ]
    rows = [
        [
            n["node"],
            n["op_type"],
            short_name(n["provider"]),
            n["calls"],
            fmt_seconds(n["median_seconds"]),
            f"{n['share']:.1%}",
            fmt_bytes(n["output_bytes"]),
            fmt_bytes(n["parameter_bytes"]),
        ]
        for n in ops["nodes"][:25]
    ]
    out.append(
        _table(
            ["node", "op type", "provider", "calls", "median", "share", "output", "parameters"],
            rows,
            left=3,
        )
    )
    out.append(
        f'<p class="note">onnxruntime profiler, {ops["runs"]} runs after warm-up; '
        f"model_run mean {_e(fmt_seconds(ops['run_seconds_mean']))} (profiling adds "
        "overhead: compare shares, not absolute times, with the latency above).</p>"
    )
    analysis = ops.get("analysis")
    if isinstance(analysis, dict) and analysis.get("html"):
        out.append("<h3>Analysis (ortel analyze)</h3>" + str(analysis["html"]))
    elif isinstance(analysis, dict) and analysis.get("error"):
        out.append(f'<p class="warn">ortel analyze failed: {_e(analysis["error"])}</p>')
    return "".join(out)


def _memory_host(s: dict[str, Any]) -> str:
    mem, h, st = s.get("memory") or {}, s["host"], s.get("settings") or {}
    rows = [
        ["model weights", fmt_bytes(mem.get("model_weight_bytes"))],
        ["peak RSS (largest configuration)", fmt_bytes(mem.get("peak_rss_bytes"))],
        ["onnxruntime arena held", fmt_bytes(mem.get("arena_held_bytes"))],
        ["onnxruntime arena peak in use", fmt_bytes(mem.get("arena_peak_in_use_bytes"))],
    ]
    out = ["<h2>Memory</h2>", _table(["", "bytes"], rows)]
    out.append("<h2>Host and settings</h2>")
    out.append(_table(["", "value"], [[k, v] for k, v in {**h, **st}.items()]))
    inputs = s["model"].get("inputs") or []
    if inputs:
        out.append(
            _table(
                ["input", "type", "shape"],
                [[i["name"], i["type"], i["shape"]] for i in inputs],
                left=3,
            )
        )
    return "".join(out)
