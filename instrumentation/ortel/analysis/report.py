"""Outputs of ``ortel analyze``: CSV tables, ``summary.json``, a self-contained ``report.html``
(inline SVG, no script, no CDN: it opens offline and can be attached to a ticket) and the
terminal summary.

Unknown values are empty CSV cells and ``null`` in JSON, never 0; the ``status`` column says why
(``unknown_op``: no formula for the op type; ``unknown_shape``: shapes not known).
"""

from __future__ import annotations

import csv
import html
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .analyze import Analysis, Row
from .svg import hbar_chart

OPS_COLUMNS = [
    "node", "op_type", "domain", "provider", "parent", "fused_from", "calls_per_run", "time_us",
    "self_time_us", "mean_us", "p50_us", "p90_us", "share_of_latency", "macs", "flops",
    "activation_bytes_read", "weight_bytes_read", "bytes_written", "params",
    "arithmetic_intensity", "attainable_flops", "achieved_flops", "pct_of_roof", "bound",
    "energy_j", "energy_compute_j", "energy_data_j", "on_critical_path", "status", "note", "shapes",
]  # fmt: skip
STATIC_COLUMNS = [
    "node", "op_type", "domain", "parent", "macs", "flops", "activation_bytes_read",
    "weight_bytes_read", "bytes_written", "params", "status", "note", "shapes",
]  # fmt: skip


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isinf(v):
            return "inf"
        return int(v) if v.is_integer() and abs(v) < 1e18 else float(f"{v:.6g}")
    if isinstance(v, list):
        return "; ".join(str(x) for x in v)
    return v


def _row_dict(r: Row, columns: Sequence[str]) -> dict[str, Any]:
    d = {c: getattr(r, c, None) for c in columns}
    d["node"] = r.key
    return {k: _cell(v) for k, v in d.items()}


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_safe(x) for x in v]
    return v


def write_all(a: Analysis, out: Path, title: str, html_report: bool = True) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    p = out / "ops_profile.csv"
    write_csv(p, OPS_COLUMNS, (_row_dict(r, OPS_COLUMNS) for r in a.rows))
    written.append(p)
    p = out / "original_ops.csv"
    write_csv(p, STATIC_COLUMNS, (_row_dict(r, STATIC_COLUMNS) for r in a.original_rows))
    written.append(p)
    p = out / "critical_path.csv"
    by_key = {r.key: r for r in a.rows}
    cols = ["order", "node", "op_type", "start_us", "time_us", "end_us", "measured_start_us"]
    cp_rows = []
    for i, k in enumerate(a.path.path):
        r = by_key.get(k)
        start = a.path.earliest_start_us.get(k, 0.0)
        t = (r.time_us or 0.0) if r else 0.0
        cp_rows.append(
            {
                "order": i,
                "node": k,
                "op_type": r.op_type if r else "",
                "start_us": _cell(start),
                "time_us": _cell(t),
                "end_us": _cell(start + t),
                "measured_start_us": _cell(r.start_us if r else None),
            }
        )
    write_csv(p, cols, cp_rows)
    written.append(p)
    p = out / "offload.csv"
    write_csv(p, OFFLOAD_COLUMNS, offload_rows(a))
    written.append(p)
    p = out / "summary.json"
    p.write_text(json.dumps(_json_safe(a.summary), indent=2) + "\n")
    written.append(p)
    if html_report:
        p = out / "report.html"
        p.write_text(render_html(a, title))
        written.append(p)
    return written


OFFLOAD_COLUMNS = [
    "kind", "name", "nodes", "op_types", "time_us", "share_of_latency", "energy_j",
    "share_of_energy", "flops", "bytes_moved", "arithmetic_intensity", "speedup_latency",
    "speedup_energy",
]  # fmt: skip


def offload_rows(a: Analysis) -> list[dict[str, Any]]:
    o = a.offload
    rows = []
    for c in o.candidates:
        rows.append(
            {
                "kind": "candidate",
                "name": c.name,
                "nodes": _cell(c.nodes),
                "op_types": _cell(c.op_types),
                "time_us": _cell(c.time_us),
                "share_of_latency": _cell(c.share_time),
                "energy_j": _cell(c.energy_j),
                "share_of_energy": _cell(c.share_energy),
                "flops": _cell(c.flops),
                "bytes_moved": _cell(c.bytes_moved),
                "arithmetic_intensity": _cell(c.arithmetic_intensity),
                "speedup_latency": _cell(c.speedup_latency),
                "speedup_energy": _cell(c.speedup_energy),
            }
        )
    for g in o.groups:
        rows.append(
            {
                "kind": "op_type",
                "name": g.op_type,
                "nodes": g.chains,
                "op_types": g.op_type,
                "time_us": _cell(g.time_us),
                "share_of_latency": _cell(g.share_time),
                "share_of_energy": _cell(g.share_energy),
                "arithmetic_intensity": _cell(g.arithmetic_intensity),
                "speedup_latency": _cell(g.speedup_latency),
                "speedup_energy": _cell(g.speedup_energy),
            }
        )
    rows.append(
        {
            "kind": "set",
            "name": f"all {o.eligible} eligible chain(s)",
            "nodes": o.eligible,
            "share_of_latency": _cell(o.set_share_time),
            "share_of_energy": _cell(o.set_share_energy),
            "speedup_latency": _cell(o.set_speedup_latency),
            "speedup_energy": _cell(o.set_speedup_energy),
        }
    )
    return rows


# --- formatting helpers ---------------------------------------------------------------------------
def si(v: float | None, unit: str = "") -> str:
    if v is None:
        return "unknown"
    if v == 0:
        return f"0 {unit}".strip()
    for k, p in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= p:
            return f"{v / p:.3g} {k}{unit}"
    if abs(v) < 1:
        for k, p in (("m", 1e-3), ("µ", 1e-6), ("n", 1e-9), ("p", 1e-12)):
            if abs(v) >= p:
                return f"{v / p:.3g} {k}{unit}"
    return f"{v:.3g} {unit}".strip()


def us(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v / 1000:.3g} ms" if v >= 1000 else f"{v:.3g} µs"


def pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _cost_cells(r: Row) -> list[str]:
    """Self time, share, MACs, intensity, bound, % of roof, energy: one node's row in the terminal
    table and in report.html alike."""
    return [
        us(r.self_time_us),
        pct(r.share_of_latency),
        "unknown" if r.macs is None else si(r.macs),
        "—" if r.arithmetic_intensity is None else f"{r.arithmetic_intensity:.3g}",
        r.bound,
        "—" if r.pct_of_roof is None else f"{r.pct_of_roof:.0f}%",
        si(r.energy_j, "J"),
    ]


# --- terminal -------------------------------------------------------------------------------------
def print_summary(a: Analysis, console: Any, top: int = 15) -> None:
    from rich.table import Table

    s = a.summary
    t = Table(title="Where the time goes (top nodes by self time)", show_lines=False)
    for c in ("node", "op", "time", "share", "MACs", "AI", "bound", "% roof", "energy", "crit"):
        t.add_column(c, overflow="fold")
    rows = sorted(a.rows, key=lambda r: -(r.self_time_us or 0.0))[:top]
    for r in rows:
        t.add_row(
            r.key[:48],
            r.op_type,
            *_cost_cells(r),
            "●" if r.on_critical_path else "",
        )
    console.print(t)
    ot = Table(title="By operator type")
    for c in ("op type", "nodes", "time", "share", "MACs", "FLOPs", "energy"):
        ot.add_column(c)
    for g in a.by_op_type[:top]:
        ot.add_row(
            g["op_type"],
            str(g["nodes"]),
            us(g["time_us"]),
            pct(g["share_of_latency"]),
            "unknown" if g["unknown"] else si(g["macs"]),
            "unknown" if g["unknown"] else si(g["flops"]),
            si(g["energy_j"], "J"),
        )
    console.print(ot)
    power = a.power
    lines = [
        f"MACs {si(s['total_macs'])} · FLOPs {si(s['total_flops'])}"
        + (" (partial: some nodes unknown)" if s["totals_partial"] else "")
        + f" · params {si(s.get('total_params'))}",
        f"run {us(s['run_wall_us'])} · serial sum of nodes {us(s['serial_sum_us'])} · "
        f"critical path {us(s['critical_path_us'])} ({len(s['critical_path'])} nodes, "
        f"parallelism {s['parallelism']:.2f})",
        f"roof: {si(a.roof.peak_flops, 'FLOP/s')}, {si(a.roof.mem_bw, 'B/s')} "
        f"(ridge {a.roof.ridge:.3g} FLOP/byte, {a.roof.source})",
    ]
    if power is not None:
        lines.append(
            f"energy/inference {si(s['energy_per_inference_j'], 'J')} at "
            f"{power.watts:.3g} W ({power.source}: {power.detail})"
        )
    em = s["energy_model"]
    lines.append(
        f"energy model: compute {si(em['compute_j'], 'J')} vs data movement "
        f"{si(em['data_movement_j'], 'J')} ({em['pj_per_flop']} pJ/FLOP, "
        f"{em['pj_per_byte']} pJ/byte)"
    )
    o = a.offload
    lines.append(
        f"offload: {o.eligible} eligible chain(s), {pct(o.set_share_time)} of latency; at "
        f"{o.accel_speedup:g}x → end-to-end {o.set_speedup_latency:.2f}x latency"
        + ("" if o.set_speedup_energy is None else f", {o.set_speedup_energy:.2f}x energy")
    )
    for cand in o.candidates[:5]:
        lines.append(
            f"  {cand.name} ({'+'.join(cand.op_types)}): {pct(cand.share_time)} → "
            f"{cand.speedup_latency:.2f}x alone"
        )
    unknown = s["unknown_ops"]
    lines.append("unknown ops: " + (", ".join(unknown) if unknown else "none"))
    if s["unresolved_nodes"]:
        lines.append(f"nodes with unknown shapes: {len(s['unresolved_nodes'])}")
    for line in lines:
        console.print(line, highlight=False, markup=False)


# --- HTML -----------------------------------------------------------------------------------------
COLORS = {"compute": "#2b7bba", "memory": "#e07b39", "unknown": "#999999",
          "control_flow": "#7a5195"}  # fmt: skip


def _esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _log_ticks(lo: float, hi: float) -> list[float]:
    return [10.0**e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]


def _roofline_svg(a: Analysis, width: int = 640, height: int = 400) -> str:
    pts: list[tuple[Row, float, float]] = []  # (row, arithmetic intensity, achieved FLOP/s)
    for r in a.rows:
        ai, flops = r.arithmetic_intensity, r.achieved_flops
        if ai is not None and flops and ai > 0 and not math.isinf(ai):
            pts.append((r, ai, flops))
    roof = a.roof
    if not pts:
        return "<p>no node with both FLOPs and bytes known and a measured time</p>"
    ais = [ai for _, ai, _ in pts] + [roof.ridge]
    x_lo, x_hi = min(ais) / 4, max(ais) * 4
    ys = [flops for _, _, flops in pts] + [roof.peak_flops]
    y_lo, y_hi = min(ys) / 4, roof.peak_flops * 4
    ml, mr, mt, mb = 70, 20, 20, 50
    pw, ph = width - ml - mr, height - mt - mb

    def x(v: float) -> float:
        return ml + pw * (math.log10(v) - math.log10(x_lo)) / (math.log10(x_hi) - math.log10(x_lo))

    def y(v: float) -> float:
        return mt + ph * (
            1 - (math.log10(v) - math.log10(y_lo)) / (math.log10(y_hi) - math.log10(y_lo))
        )

    out = [f'<svg width="{width}" height="{height}" role="img">']
    for t in _log_ticks(x_lo, x_hi):
        if x_lo <= t <= x_hi:
            out.append(
                f'<line x1="{x(t):.1f}" y1="{mt}" x2="{x(t):.1f}" y2="{mt + ph}" class="g"/>'
                f'<text x="{x(t):.1f}" y="{mt + ph + 16}" text-anchor="middle" class="l">'
                f"{t:g}</text>"
            )
    for t in _log_ticks(y_lo, y_hi):
        if y_lo <= t <= y_hi:
            out.append(
                f'<line x1="{ml}" y1="{y(t):.1f}" x2="{ml + pw}" y2="{y(t):.1f}" class="g"/>'
                f'<text x="{ml - 6}" y="{y(t) + 4:.1f}" text-anchor="end" class="l">'
                f"{_esc(si(t))}</text>"
            )
    # The roof: bandwidth slope up to the ridge, then flat at peak.
    x0, xr = x_lo, roof.ridge
    out.append(
        f'<polyline fill="none" stroke="#333" stroke-width="2" points="'
        f"{x(x0):.1f},{y(max(x0 * roof.mem_bw, y_lo)):.1f} {x(xr):.1f},{y(roof.peak_flops):.1f} "
        f'{x(x_hi):.1f},{y(roof.peak_flops):.1f}"/>'
    )
    for r, ai, flops in pts:
        c = COLORS.get(r.bound, "#999")
        tip = (
            f"{r.key} ({r.op_type}): {si(flops, 'FLOP/s')}, AI "
            f"{ai:.3g} FLOP/B, {r.pct_of_roof or 0:.0f}% of roof, {r.bound}"
        )
        out.append(
            f'<circle cx="{x(ai):.1f}" cy="{y(flops):.1f}" r="4" '
            f'fill="{c}" fill-opacity="0.75"><title>{_esc(tip)}</title></circle>'
        )
    out.append(
        f'<text x="{ml + pw / 2}" y="{height - 8}" text-anchor="middle" class="l">'
        "arithmetic intensity (FLOP/byte)</text>"
        f'<text x="14" y="{mt + ph / 2}" transform="rotate(-90 14 {mt + ph / 2})" '
        'text-anchor="middle" class="l">achieved FLOP/s</text></svg>'
    )
    return "".join(out)


def _gantt_svg(a: Analysis, width: int = 900) -> str:
    by_key = {r.key: r for r in a.rows}
    keys = [k for k in a.path.path if k in by_key]
    if not keys:
        return "<p>no critical path</p>"
    total = max(a.path.critical_path_us, 1e-9)
    h, label_w = 18, 260
    pw = width - label_w - 20
    out = [f'<svg width="{width}" height="{h * len(keys) + 30}" role="img">']
    for i, k in enumerate(keys):
        r = by_key[k]
        start = a.path.earliest_start_us.get(k, 0.0)
        t = r.time_us or 0.0
        x0 = label_w + pw * start / total
        w = max(pw * t / total, 1.0)
        y = i * h + 4
        tip = f"{k} ({r.op_type}): starts {us(start)}, takes {us(t)}"
        out.append(
            f'<g><title>{_esc(tip)}</title><text x="{label_w - 6}" y="{y + 12}" '
            f'text-anchor="end" class="l">{_esc(k[:40])}</text><rect x="{x0:.1f}" y="{y + 2}" '
            f'width="{w:.1f}" height="{h - 5}" fill="{COLORS.get(r.bound, "#999")}"/></g>'
        )
    y = h * len(keys) + 20
    out.append(
        f'<text x="{label_w}" y="{y}" class="l">0</text><text x="{label_w + pw}" y="{y}" '
        f'text-anchor="end" class="l">{_esc(us(total))}</text></svg>'
    )
    return "".join(out)


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:3px 6px;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.l{font-size:11px;fill:#333}.g{stroke:#eee}.warn{color:#a33}.key{display:inline-block;
width:10px;height:10px;margin:0 4px 0 12px}
"""


def render_html(a: Analysis, title: str) -> str:
    s = a.summary
    em = s["energy_model"]
    facts = [
        ("MACs per inference", si(s["total_macs"]) + (" (partial)" if s["totals_partial"] else "")),
        ("FLOPs per inference (2 × MACs + element-wise)", si(s["total_flops"])),
        ("parameters", si(s.get("total_params"))),
        ("measured run (mean)", us(s["run_wall_us"])),
        ("serial sum of node times", us(s["serial_sum_us"])),
        ("critical path", us(s["critical_path_us"])),
        ("parallelism slack", us(s["parallelism_slack_us"])),
        (
            "roof",
            f"{si(a.roof.peak_flops, 'FLOP/s')}, {si(a.roof.mem_bw, 'B/s')} ({a.roof.source})",
        ),
        (
            "power",
            "—"
            if a.power is None
            else f"{a.power.watts:.3g} W ({a.power.source}: {a.power.detail})",
        ),
        ("energy per inference", si(s["energy_per_inference_j"], "J")),
        (
            "energy model (compute / data movement)",
            f"{si(em['compute_j'], 'J')} / {si(em['data_movement_j'], 'J')}",
        ),
        ("unknown ops", ", ".join(s["unknown_ops"]) or "none"),
    ]
    by_type = a.by_op_type
    time_bars = hbar_chart(
        [(g["op_type"], g["time_us"], f"{g['nodes']} nodes") for g in by_type if g["time_us"]],
        us,
        color=COLORS["compute"],
    )
    energy_bars = hbar_chart(
        [(g["op_type"], g["energy_j"], f"{g['nodes']} nodes") for g in by_type if g["energy_j"]],
        lambda v: si(v, "J"),
        color=COLORS["compute"],
    )
    o = a.offload
    off_rows = [
        [
            c.name,
            " + ".join(c.op_types),
            us(c.time_us),
            pct(c.share_time),
            pct(c.share_energy),
            f"{c.arithmetic_intensity:.3g}",
            f"{c.speedup_latency:.2f}x",
            "—" if c.speedup_energy is None else f"{c.speedup_energy:.2f}x",
        ]
        for c in o.candidates
    ]
    group_rows = [
        [
            g.op_type,
            g.chains,
            us(g.time_us),
            pct(g.share_time),
            pct(g.share_energy),
            f"{g.arithmetic_intensity:.3g}",
            f"{g.speedup_latency:.2f}x",
            "—" if g.speedup_energy is None else f"{g.speedup_energy:.2f}x",
        ]
        for g in o.groups
    ]
    top_nodes = sorted(a.rows, key=lambda r: -(r.self_time_us or 0.0))[:40]
    node_rows = [
        [
            r.key,
            r.op_type,
            r.provider,
            *_cost_cells(r),
            "yes" if r.on_critical_path else "",
            ", ".join(r.fused_from),
        ]
        for r in top_nodes
    ]
    warn = "".join(f'<p class="warn">{_esc(w)}</p>' for w in a.warnings)
    legend = "".join(
        f'<span class="key" style="background:{c}"></span>{k}' for k, c in COLORS.items()
    )
    cols = ["time", "latency", "energy", "FLOP/B", "speedup", "energy gain"]
    off_table = (
        _table(["candidate", "ops", *cols], off_rows)
        if off_rows
        else "<p>no single node or chain above the threshold</p>"
    )
    group_table = (
        _table(["op type", "chains", *cols], group_rows)
        if group_rows
        else "<p>no eligible chain</p>"
    )
    node_headers = ["node", "op", "provider", "self time", "share", "MACs", "FLOP/B", "bound"]
    node_headers += ["% roof", "energy", "critical", "original nodes"]
    energy_gain = "" if o.set_speedup_energy is None else f", {o.set_speedup_energy:.2f}x energy"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)} — ortel analyze</title>
<style>{CSS}</style></head><body>
<h1>{_esc(title)}</h1>
{warn}
{_table(["", "value"], facts)}
<h2>Time by operator type (self time, summed over nodes)</h2>{time_bars}
<h2>Energy by operator type (power × time)</h2>{energy_bars}
<h2>Roofline</h2><p>{legend}</p>{_roofline_svg(a)}
<h2>Critical path</h2>
<p>{len(a.path.path)} nodes, {us(a.path.critical_path_us)} of {us(a.path.serial_sum_us)} serial
(parallelism {a.path.parallelism:.2f}). Bars at their earliest start with unlimited
parallelism.</p>{_gantt_svg(a)}
<h2>Offload candidates (kernel speedup {o.accel_speedup:g}x)</h2>
<p>Chosen set: {o.eligible} eligible chain(s), {pct(o.set_share_time)} of latency →
end-to-end {o.set_speedup_latency:.2f}x latency{energy_gain} (Amdahl).</p>
{off_table}
<h3>By operator type</h3>
{group_table}
<h2>Top nodes</h2>
{_table(node_headers, node_rows)}
</body></html>
"""
