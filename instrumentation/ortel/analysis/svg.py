"""Inline SVG charts for the HTML reports of ``ortel analyze`` and ``ortel profile``: no
JavaScript, no fonts or scripts from a CDN.

Small on purpose: line and scatter series on linear or log axes, vertical and horizontal bars,
and a histogram, with readable ticks. Values are plain floats; the caller picks units
(``seconds_unit``). Only numpy is imported, so both packages can use it without pulling in the
other's heavy dependencies.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

import numpy as np

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
W, H = 680, 300
M_LEFT, M_RIGHT, M_TOP, M_BOTTOM = 64, 16, 28, 44
MAX_POINTS = 2500  # per series: a report stays small even for a million samples


def seconds_unit(max_seconds: float) -> tuple[float, str]:
    """(multiplier, unit) that shows ``max_seconds`` with 1-3 integer digits."""
    for mult, unit in ((1.0, "s"), (1e3, "ms"), (1e6, "µs"), (1e9, "ns")):
        if max_seconds * mult >= 1:
            return mult, unit
    return 1e9, "ns"


def fmt_bytes(n: float | None) -> str:
    """A byte count in binary units; "unknown" when not known."""
    if n is None:
        return "unknown"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def fmt_seconds(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    mult, unit = seconds_unit(abs(v)) if v else (1.0, "s")
    return f"{v * mult:.3g} {unit}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    out = []
    v = start
    while v <= hi + step * 1e-9:
        out.append(round(v, 12))
        v += step
    return out


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if abs(v) >= div:
            scale = 1e3 if suffix == "k" else div
            return f"{v / scale:.4g}{suffix}"
    if abs(v) < 1e-3:
        return f"{v:.1e}".replace("e-0", "e-")
    return f"{v:.4g}"


# Chart data: a list or a 1-D NumPy array (only iterated, more than once).
Values = Sequence[float] | np.ndarray


@dataclass
class Series:
    name: str
    xs: Values
    ys: Values
    mode: str = "line"  # line, points, steps
    color: str | None = None


@dataclass
class Chart:
    title: str
    x_label: str
    y_label: str
    x_log: bool = False
    y_log: bool = False
    y_zero: bool = True
    series: list[Series] = field(default_factory=list)
    vlines: list[tuple[float, str]] = field(default_factory=list)
    bands: list[tuple[float, float, str]] = field(default_factory=list)  # (x0, x1, label)
    x_ticks: Sequence[float] | None = None  # explicit ticks (a sweep's values)

    def render(self, width: int = W, height: int = H) -> str:
        pts = [(x, y) for s in self.series for x, y in zip(s.xs, s.ys) if _finite(x, y, self)]
        if not pts:
            return _empty(self.title, width, height)
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        xs += [v for v, _ in self.vlines]
        fx = _scale(min(xs), max(xs), M_LEFT, width - M_RIGHT, self.x_log, False)
        fx.fixed = list(self.x_ticks) if self.x_ticks else None
        y_lo = 0.0 if self.y_zero and not self.y_log else min(ys)
        fy = _scale(y_lo, max(ys), height - M_BOTTOM, M_TOP, self.y_log, True)
        out = [_open(width, height, self.title)]
        for x0, x1, label in self.bands:
            a, b = fx.map(x0), fx.map(x1)
            out.append(
                f'<rect x="{a:.1f}" y="{M_TOP}" width="{max(b - a, 1):.1f}" '
                f'height="{height - M_TOP - M_BOTTOM}" fill="#000" fill-opacity="0.05">'
                f"<title>{escape(label)}</title></rect>"
            )
        out += _axes(fx, fy, width, height, self.x_label, self.y_label)
        for v, label in self.vlines:
            x = fx.map(v)
            out.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{M_TOP}" y2="{height - M_BOTTOM}" '
                'stroke="#555" stroke-dasharray="4 3"/>'
                f'<text x="{x + 3:.1f}" y="{height - M_BOTTOM - 4}" font-size="10" fill="#555">'
                f"{escape(label)}</text>"
            )
        for i, s in enumerate(self.series):
            color = s.color or PALETTE[i % len(PALETTE)]
            data = [(x, y) for x, y in zip(s.xs, s.ys) if _finite(x, y, self)]
            data = _decimate(data)
            if not data:
                continue
            coords = [(fx.map(x), fy.map(y)) for x, y in data]
            if s.mode == "points":
                out.append(f'<g fill="{color}" fill-opacity="0.5">')
                out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="1.6"/>' for x, y in coords]
                out.append("</g>")
            else:
                if s.mode == "steps":
                    stepped = []
                    for (x0, y0), (x1, _y1) in zip(coords, coords[1:]):
                        stepped += [(x0, y0), (x1, y0)]
                    coords = stepped + [coords[-1]]
                d = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
                out.append(
                    f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="1.6"/>'
                )
                if len(coords) <= 40 and s.mode == "line":
                    out += [
                        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.6" fill="{color}"/>'
                        for x, y in coords
                    ]
        if len(self.series) > 1 or self.series[0].name:
            out.append(
                _legend(
                    [
                        (s.name, s.color or PALETTE[i % len(PALETTE)])
                        for i, s in enumerate(self.series)
                    ],
                    width,
                )
            )
        out.append("</svg>")
        return "".join(out)


def bar_chart(
    title: str,
    labels: Sequence[str],
    values: Sequence[float | None],
    y_label: str,
    notes: Sequence[str] | None = None,
    width: int = W,
    height: int = H,
) -> str:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return _empty(title, width, height)
    fy = _scale(0.0, max(vals), height - M_BOTTOM, M_TOP, False, True)
    n = len(labels)
    slot = (width - M_LEFT - M_RIGHT) / max(n, 1)
    out = [_open(width, height, title)]
    out += _axes(None, fy, width, height, "", y_label)
    for i, (label, v) in enumerate(zip(labels, values)):
        x = M_LEFT + i * slot + slot * 0.15
        bw = slot * 0.7
        cx = x + bw / 2
        if v is not None and math.isfinite(v):
            y = fy.map(v)
            out.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw:.1f}" '
                f'height="{height - M_BOTTOM - y:.1f}" fill="{PALETTE[i % len(PALETTE)]}">'
                f"<title>{escape(label)}: {_fmt(v)}</title></rect>"
            )
            note = notes[i] if notes and i < len(notes) else _fmt(v)
            out.append(
                f'<text x="{cx:.1f}" y="{y - 4:.1f}" font-size="11" text-anchor="middle">'
                f"{escape(note)}</text>"
            )
        else:
            out.append(
                f'<text x="{cx:.1f}" y="{height - M_BOTTOM - 6}" font-size="11" '
                'text-anchor="middle" fill="#a00">failed</text>'
            )
        ly = height - M_BOTTOM + 14
        if n > 6:  # many bars: slanted labels do not run into each other
            out.append(
                f'<text x="{cx:.1f}" y="{ly:.1f}" font-size="10" text-anchor="end" '
                f'transform="rotate(-25 {cx:.1f} {ly:.1f})">{escape(label[:18])}</text>'
            )
        else:
            out.append(
                f'<text x="{cx:.1f}" y="{ly + 2:.1f}" font-size="11" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def hbar_chart(
    items: Sequence[tuple[str, float, str]],
    fmt: Callable[[float], str] = _fmt,
    width: int = 640,
    row_height: int = 20,
    label_width: int = 200,
    color: str = PALETTE[0],
) -> str:
    """Horizontal bars, one row each ``(label, value, tooltip)``: for many long labels (op types,
    node names) that a vertical bar chart would have to slant."""
    if not items:
        return "<p>no data</p>"
    h = row_height
    top = max(v for _, v, _ in items) or 1.0
    parts = [
        f'<svg width="{width}" height="{h * len(items) + 4}" role="img" '
        'font-family="system-ui, sans-serif">'
    ]
    for i, (label, v, tip) in enumerate(items):
        y = i * h + 2
        w = (width - label_width - 90) * v / top
        parts.append(
            f"<g><title>{escape(tip)}</title>"
            f'<text x="{label_width - 6}" y="{y + 14}" text-anchor="end" font-size="11">'
            f"{escape(label[:32])}</text>"
            f'<rect x="{label_width}" y="{y + 3}" width="{max(w, 1):.1f}" height="{h - 6}" '
            f'fill="{color}"/><text x="{label_width + w + 6:.1f}" y="{y + 14}" '
            f'font-size="11">{escape(fmt(v))}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def histogram(
    title: str,
    values: np.ndarray,
    x_label: str,
    marks: Sequence[tuple[float, str]] = (),
    bins: int = 60,
    width: int = W,
    height: int = H,
) -> str:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return _empty(title, width, height)
    # Clip the tail into the last bar so a few outliers do not squash the distribution.
    lo = float(v.min())
    hi = float(v.max())
    if v.size > 100:
        p50, p99 = np.percentile(v, [50, 99])
        hi = min(hi, float(p99 + 0.5 * (p99 - p50)))
        hi = max(hi, lo * 1.0001)
    if hi <= lo:
        hi = lo * 1.01 + 1e-12
    # A long tail (p99 far above the median) reads better on a log axis with log-spaced bins.
    log = lo > 0 and hi / lo > 20
    edges = np.geomspace(lo, hi, bins + 1) if log else np.linspace(lo, hi, bins + 1)
    counts, edges = np.histogram(np.clip(v, lo, hi), bins=edges)
    fx = _scale(lo, hi, M_LEFT, width - M_RIGHT, log, False)
    fy = _scale(0, float(counts.max()), height - M_BOTTOM, M_TOP, False, True)
    out = [_open(width, height, title)]
    out += _axes(fx, fy, width, height, x_label + (", log" if log else ""), "inferences")
    for c, a, b in zip(counts, edges, edges[1:]):
        if not c:
            continue
        x0, x1, y = fx.map(a), fx.map(b), fy.map(c)
        out.append(
            f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0 - 0.5, 0.5):.1f}" '
            f'height="{height - M_BOTTOM - y:.1f}" fill="{PALETTE[0]}"/>'
        )
    clipped = int(np.count_nonzero(v > hi))
    if clipped:
        out.append(
            f'<text x="{width - M_RIGHT}" y="{M_TOP + 10}" font-size="10" text-anchor="end" '
            f'fill="#555">last bar includes {clipped} slower (up to {_fmt(float(v.max()))})</text>'
        )
    for x, label in marks:
        if lo <= x <= hi:
            px = fx.map(x)
            out.append(
                f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{M_TOP}" y2="{height - M_BOTTOM}" '
                'stroke="#d62728" stroke-dasharray="4 3"/>'
                f'<text x="{px + 3:.1f}" y="{M_TOP + 10}" font-size="10" fill="#d62728">'
                f"{escape(label)}</text>"
            )
    out.append("</svg>")
    return "".join(out)


# --- internals ---------------------------------------------------------------------------------


class _Scale:
    def __init__(self, lo: float, hi: float, p0: float, p1: float, log: bool) -> None:
        self.lo, self.hi, self.p0, self.p1, self.log = lo, hi, p0, p1, log
        self.fixed: list[float] | None = None

    def _t(self, v: float) -> float:
        return math.log10(v) if self.log else v

    def map(self, v: float) -> float:
        a, b = self._t(self.lo), self._t(self.hi)
        f = 0.5 if b == a else (self._t(max(v, self.lo) if self.log else v) - a) / (b - a)
        return self.p0 + f * (self.p1 - self.p0)

    def ticks(self) -> list[float]:
        if self.fixed:
            return [t for t in self.fixed if self.lo <= t <= self.hi]
        if self.log:
            lo, hi = math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi))
            step = max(1, (hi - lo) // 6)
            return [10.0**e for e in range(lo, hi + 1, step) if self.lo <= 10.0**e <= self.hi]
        return [t for t in nice_ticks(self.lo, self.hi) if self.lo <= t <= self.hi]


def _scale(lo: float, hi: float, p0: float, p1: float, log: bool, pad: bool) -> _Scale:
    if log:
        lo = max(lo, 1e-300)
        hi = max(hi, lo * 1.0001)
        if pad:
            hi *= 1.15
    else:
        if hi == lo:
            hi = lo + (abs(lo) or 1.0)
        if pad:
            hi += (hi - lo) * 0.08
    return _Scale(lo, hi, p0, p1, log)


def _finite(x: float, y: float, c: Chart) -> bool:
    if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
        return False
    return not ((c.x_log and x <= 0) or (c.y_log and y <= 0))


def _decimate(data: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(data) <= MAX_POINTS:
        return data
    idx = np.linspace(0, len(data) - 1, MAX_POINTS).astype(int)
    return [data[i] for i in idx]


def _open(width: int, height: int, title: str) -> str:
    return (
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}" font-family="system-ui, sans-serif">'
        f'<text x="{M_LEFT}" y="16" font-size="13" font-weight="600">{escape(title)}</text>'
    )


def _empty(title: str, width: int, height: int) -> str:
    return (
        _open(width, height, title)
        + f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="#777">no data</text>'
        + "</svg>"
    )


def _axes(fx, fy, width: int, height: int, x_label: str, y_label: str) -> list[str]:
    out = [
        f'<line x1="{M_LEFT}" x2="{width - M_RIGHT}" y1="{height - M_BOTTOM}" '
        f'y2="{height - M_BOTTOM}" stroke="#333"/>',
        f'<line x1="{M_LEFT}" x2="{M_LEFT}" y1="{M_TOP}" y2="{height - M_BOTTOM}" stroke="#333"/>',
    ]
    for t in fy.ticks():
        y = fy.map(t)
        out.append(
            f'<line x1="{M_LEFT}" x2="{width - M_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#000" stroke-opacity="0.08"/>'
            f'<text x="{M_LEFT - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">'
            f"{_fmt(t)}</text>"
        )
    if fx is not None:
        for t in fx.ticks():
            x = fx.map(t)
            out.append(
                f'<text x="{x:.1f}" y="{height - M_BOTTOM + 14}" font-size="10" '
                f'text-anchor="middle">{_fmt(t)}</text>'
            )
    out.append(
        f'<text x="{(M_LEFT + width - M_RIGHT) / 2}" y="{height - 8}" font-size="11" '
        f'text-anchor="middle">{escape(x_label)}</text>'
    )
    out.append(
        f'<text x="14" y="{(M_TOP + height - M_BOTTOM) / 2}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 14 {(M_TOP + height - M_BOTTOM) / 2})">{escape(y_label)}</text>'
    )
    return out


def _legend(items: list[tuple[str, str]], width: int) -> str:
    out = []
    x = width - M_RIGHT - 8
    y = M_TOP + 4
    for name, color in items[:8]:
        out.append(
            f'<g><rect x="{x - 170}" y="{y}" width="10" height="10" fill="{color}"/>'
            f'<text x="{x - 155}" y="{y + 9}" font-size="10">{escape(name[:30])}</text></g>'
        )
        y += 14
    return "".join(out)
