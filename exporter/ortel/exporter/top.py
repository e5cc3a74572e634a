"""``ortel top``: a live terminal view of a daemon's /metrics, or of an in-process recorder.

    ortel top                                       # http://127.0.0.1:9464/metrics, 10 frames/s
    ortel top --url http://gpu-node:9464/metrics --sort p99
    ortel top --once                                # one frame on stdout (scripts, CI logs)

From Python, the process's own recorder: ``from ortel.exporter.top import watch; watch()``.

Keys: q quit · s next sort column · r reverse the order · m next model (focus) · a all models.

Rates (inferences/s, errors/s, operator shares) are differences of counters over the last
``--rate-window`` seconds of fetches; quantiles are the shim's own sliding-window quantiles. What
the endpoint does not report is shown as "unknown", never as 0.
"""

from __future__ import annotations

import math
import os
import re
import select
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import click
from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from ortel.core import catalog as c

from .dashboards import HOST_POWER_ZONES

Labels = tuple[tuple[str, str], ...]
Samples = dict[str, list[tuple[dict[str, str], float]]]  # sample name -> [(labels, value)]

SORT_KEYS = ("throughput", "p50", "p99", "errors", "model")
UNKNOWN = "unknown"
ERROR_STATUS = "error"  # the status label value the shim gives calls that raised


HOST_ZONES = re.compile(HOST_POWER_ZONES)
TEMPERATURES = (
    (c.TEMPERATURE, ("chip", "label", "sensor")),
    (c.THERMAL_ZONE_TEMPERATURE, ("type", "zone")),
    (c.GPU_TEMPERATURE, ("name", "gpu")),
)
# The samples a frame reads. Everything else in /metrics is dropped before parsing: the text parser
# is pure Python, and most of a busy host's /metrics is histogram buckets that top never shows.
WANTED = frozenset(
    {
        c.INFERENCES.name,
        c.LATENCY_QUANTILE.name,
        c.ENERGY_PER_INFERENCE.name,
        c.CPU_UTILIZATION.name,
        c.MEMORY_USED.name,
        c.MEMORY_TOTAL.name,
        c.POWER.name,
        c.GPU_POWER.name,
        f"{c.OPERATOR_DURATION.name}_sum",
        *(m.name for m, _ in TEMPERATURES),
    }
)


def only(body: str, names: frozenset[str]) -> str:
    """The sample lines of ``body`` (Prometheus text format) whose metric name is in ``names``."""
    keep = []
    for line in body.splitlines():
        if line and line[0] != "#":
            brace, space = line.find("{"), line.find(" ")
            end = min(i for i in (brace, space, len(line)) if i >= 0)
            if line[:end] in names:
                keep.append(line)
    return "\n".join(keep) + "\n"


# --- where the numbers come from ------------------------------------------------------------------
class Source(Protocol):
    description: str

    def fetch(self) -> Samples: ...


def _collect(families: Iterable[Any]) -> Samples:
    out: Samples = {}
    for fam in families:
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


class FetchError(Exception):
    """The endpoint could not be read; the message is one line for the status bar."""


class HttpSource:
    """A daemon's (or any ortel process's) /metrics, in the Prometheus text format."""

    def __init__(
        self,
        url: str,
        timeout: float = 2.0,
        token: str | None = None,
        names: frozenset[str] | None = WANTED,
    ) -> None:
        self.url = url
        self.description = url
        self.timeout = timeout
        self.names = names  # None: every sample
        self._headers = {"Accept": "text/plain;version=0.0.4"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def fetch(self) -> Samples:
        from prometheus_client.parser import text_string_to_metric_families

        req = urllib.request.Request(self.url, headers=self._headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = resp.read().decode()
        except urllib.error.HTTPError as e:
            raise FetchError(f"{self.url}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise FetchError(f"cannot reach {self.url}: {reason}") from None
        if "# TYPE ortel_" not in body:
            raise FetchError(f"{self.url} is not an ortel /metrics endpoint (no ortel_ metrics)")
        if self.names is not None:
            body = only(body, self.names)
        try:
            return _collect(text_string_to_metric_families(body))
        except Exception as e:  # the parser raises ValueError and friends on garbage
            raise FetchError(f"{self.url} did not answer in the Prometheus format: {e}") from None


class RecorderSource:
    """An in-process recorder (the shim's ``RECORDER`` by default): no HTTP involved."""

    def __init__(self, recorder: Any = None) -> None:
        if recorder is None:
            from ortel.instrumentation.recorder import RECORDER

            recorder = RECORDER
        self.recorder = recorder
        self.description = f"in-process recorder (pid {os.getpid()})"

    def fetch(self) -> Samples:
        from ortel.core.exposition import to_families

        return _collect(to_families(self.recorder.readings()))


# --- from samples to a view ---------------------------------------------------------------------
def _key(labels: dict[str, str], names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(labels.get(n, "") for n in names)


def _sum_by(
    samples: Samples, name: str, names: tuple[str, ...], **match: str
) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = {}
    for labels, value in samples.get(name, ()):
        if all(labels.get(k) == v for k, v in match.items()) and not math.isnan(value):
            k = _key(labels, names)
            out[k] = out.get(k, 0.0) + value
    return out


class Rates:
    """Per-second rates of counters from a history of fetches (the last ``window`` seconds)."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._history: deque[tuple[float, dict[Any, float]]] = deque()

    def update(self, now: float, counters: dict[Any, float]) -> None:
        self._history.append((now, counters))
        # Keep one fetch older than the window, so the rate always spans about `window` seconds.
        while len(self._history) > 2 and self._history[1][0] <= now - self.window:
            self._history.popleft()

    def rate(self, key: Any) -> float | None:
        """None until two fetches ~>= 0.2 s apart have seen the counter."""
        if len(self._history) < 2:
            return None
        (t0, old), (t1, new) = self._history[0], self._history[-1]
        if key not in new or t1 - t0 < 0.2:
            return None
        before, after = old.get(key), new[key]
        if before is None:
            return None  # appeared within the window: no full interval to rate over yet
        increase = after - before if after >= before else after  # counter reset: restart at 0
        return increase / (t1 - t0)


@dataclass(frozen=True)
class Row:
    model: str
    provider: str
    throughput: float | None  # inferences/s, every outcome
    p50: float | None
    p99: float | None
    errors: float | None  # errors/s
    error_ratio: float | None
    joules_per_inference: float | None  # attributed; None: the endpoint reports none
    energy_estimated: bool = False  # from estimated power, not a measurement


@dataclass(frozen=True)
class Reading:
    where: str
    value: float
    estimated: bool = False


@dataclass(frozen=True)
class View:
    rows: tuple[Row, ...] = ()
    cpu_busy: float | None = None
    memory_used: float | None = None
    memory_total: float | None = None
    power: tuple[Reading, ...] = ()
    # Whole-host CPU+DRAM power over every model's inference rate, by source (not attributed).
    host_energy_per_inference: tuple[Reading, ...] = ()
    hottest: Reading | None = None
    operators: dict[str, tuple[tuple[str, float], ...]] = field(default_factory=dict)
    error: str | None = None
    fetched_at: float | None = None  # time.monotonic() of the data shown


def _where(labels: dict[str, str], names: tuple[str, ...]) -> str:
    return " ".join(v for v in (labels.get(n, "") for n in names) if v)


class Top:
    """Fetches from a source and turns counters and gauges into a View."""

    def __init__(self, source: Source, rate_window: float = 5.0) -> None:
        self.source = source
        self.rates = Rates(rate_window)
        self.last: View = View()

    def poll(self, now: float | None = None) -> View:
        now = time.monotonic() if now is None else now
        try:
            samples = self.source.fetch()
        except FetchError as e:
            self.last = replace(self.last, error=str(e))  # keep showing the last good data
            return self.last
        self.last = self.view(samples, now)
        return self.last

    def view(self, s: Samples, now: float) -> View:
        ml = ("model", "provider")
        calls = _sum_by(s, c.INFERENCES.name, ml)
        errors = _sum_by(s, c.INFERENCES.name, ml, status=ERROR_STATUS)
        op_time = _sum_by(s, f"{c.OPERATOR_DURATION.name}_sum", ("model", "op_type"))
        counters: dict[Any, float] = {("calls", *k): v for k, v in calls.items()}
        counters |= {("errors", *k): v for k, v in errors.items()}
        counters |= {("op", *k): v for k, v in op_time.items()}
        self.rates.update(now, counters)

        quantiles: dict[tuple[str, ...], float] = {}
        for labels, value in s.get(c.LATENCY_QUANTILE.name, ()):
            if not math.isnan(value):
                # Key built apart: mypy's parser takes `d[(*a, b)]` for 3.11's `d[*a, b]`.
                key = (*_key(labels, ml), labels.get("quantile", ""))
                quantiles[key] = value
        # Attributed joules per inference, per model: a measurement where one exists.
        energy: dict[str, tuple[float, bool]] = {}
        for labels, value in s.get(c.ENERGY_PER_INFERENCE.name, ()):
            model, estimated = labels.get("model", ""), labels.get("source") == "estimated"
            if not math.isnan(value) and (model not in energy or energy[model][1]):
                energy[model] = (value, estimated)
        rows = []
        for model, provider in sorted(calls):
            thr = self.rates.rate(("calls", model, provider))
            err = self.rates.rate(("errors", model, provider))
            if err is None and thr is not None and ("errors", model, provider) not in counters:
                err = 0.0  # the counter has no error series: no call has failed
            ratio = None if err is None or not thr else err / thr
            rows.append(
                Row(
                    model,
                    provider,
                    thr,
                    quantiles.get((model, provider, "0.5")),
                    quantiles.get((model, provider, "0.99")),
                    err,
                    ratio,
                    *energy.get(model, (None, False)),
                )
            )

        busy = None
        modes = _sum_by(s, c.CPU_UTILIZATION.name, ("mode",))
        if modes:
            busy = sum(v for (m,), v in modes.items() if m not in ("idle", "iowait"))
        power = [
            Reading(
                f"{lb.get('zone') or lb.get('device') or '?'} ({lb.get('source', '?')})",
                v,
                lb.get("source") == "estimated",
            )
            for lb, v in s.get(c.POWER.name, ())
            if not math.isnan(v)
        ]
        power += [
            Reading(_where(lb, ("name", "gpu")) or "gpu", v)
            for lb, v in s.get(c.GPU_POWER.name, ())
            if not math.isnan(v)
        ]
        host_watts: dict[str, float] = {}
        for lb, v in s.get(c.POWER.name, ()):
            if HOST_ZONES.fullmatch(lb.get("zone", "")) and not math.isnan(v):
                host_watts[lb.get("source", "?")] = host_watts.get(lb.get("source", "?"), 0.0) + v
        total = sum(r.throughput for r in rows if r.throughput is not None)
        per_inference = tuple(
            Reading(src, w / total, src == "estimated")
            for src, w in sorted(host_watts.items())
            if total > 0
        )
        temps = [
            Reading(_where(lb, names) or m.name, v)
            for m, names in TEMPERATURES
            for lb, v in s.get(m.name, ())
            if not math.isnan(v)
        ]
        ops: dict[str, list[tuple[str, float]]] = {}
        for model, op in op_time:
            r = self.rates.rate(("op", model, op))
            if r is not None and r > 0:
                ops.setdefault(model, []).append((op, r))
        shares = {}
        for model, items in ops.items():
            total = sum(r for _, r in items)
            top5 = sorted(items, key=lambda x: -x[1])[:5]
            shares[model] = tuple((op, r / total) for op, r in top5)
        return View(
            rows=tuple(rows),
            cpu_busy=busy,
            memory_used=_single(s, c.MEMORY_USED.name),
            memory_total=_single(s, c.MEMORY_TOTAL.name),
            power=tuple(power),
            host_energy_per_inference=per_inference,
            hottest=max(temps, key=lambda r: r.value) if temps else None,
            operators=shares,
            error=None,
            fetched_at=now,
        )


def _single(s: Samples, name: str) -> float | None:
    values = [v for _, v in s.get(name, ()) if not math.isnan(v)]
    return values[0] if values else None


# --- keyboard state -------------------------------------------------------------------------------
@dataclass
class State:
    sort: str = "throughput"
    reverse: bool = False  # False: largest first (model: A to Z)
    focus: str | None = None  # one model, or None for all
    frames: int = 0

    def key(self, ch: str, models: list[str]) -> bool:
        """Apply one key press; False means quit."""
        if ch in ("q", "Q", "\x03", "\x04"):
            return False
        if ch == "s":
            self.sort = SORT_KEYS[(SORT_KEYS.index(self.sort) + 1) % len(SORT_KEYS)]
        elif ch == "r":
            self.reverse = not self.reverse
        elif ch == "m" and models:
            i = models.index(self.focus) + 1 if self.focus in models else 0
            self.focus = models[i] if i < len(models) else None
        elif ch == "a":
            self.focus = None
        return True


def ordered(rows: Iterable[Row], state: State) -> list[Row]:
    rows = [r for r in rows if state.focus is None or r.model == state.focus]
    if state.sort == "model":
        return sorted(rows, key=lambda r: (r.model, r.provider), reverse=state.reverse)
    attr = {"throughput": "throughput", "p50": "p50", "p99": "p99", "errors": "errors"}
    name = attr[state.sort]
    known = [r for r in rows if getattr(r, name) is not None]
    unknown = [r for r in rows if getattr(r, name) is None]  # always last
    known.sort(key=lambda r: getattr(r, name), reverse=not state.reverse)
    return known + unknown


# --- rendering ----------------------------------------------------------------------------------
def fmt_seconds(v: float | None) -> str:
    if v is None:
        return UNKNOWN
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if v >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v / 1e-9:.3g} ns"


def fmt_joules(v: float | None, estimated: bool = False) -> str:
    if v is None:
        return UNKNOWN
    mark = "≈" if estimated else ""  # an estimate never passes for a measurement
    for unit, scale in (("J", 1.0), ("mJ", 1e-3), ("µJ", 1e-6)):
        if v >= scale:
            return f"{mark}{v / scale:.3g} {unit}"
    return f"{mark}{v / 1e-9:.3g} nJ"


def fmt_rate(v: float | None) -> str:
    return UNKNOWN if v is None else f"{v:,.1f}"


def short_provider(name: str) -> str:
    """CPUExecutionProvider -> CPU: the suffix is the same for every provider."""
    return name.removesuffix("ExecutionProvider") or name


def fmt_bytes(v: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if v < 1024 or unit == "TiB":
            return f"{v:.1f} {unit}"
        v /= 1024
    return f"{v:.1f} TiB"


def render(view: View, state: State, description: str, refresh_hz: float) -> RenderableType:
    order = "↑" if state.reverse else "↓"
    head = Text.assemble(
        ("ortel top", "bold"),
        f"  sort: {state.sort} {order}  ·  model: ",
        (state.focus or "all", "bold"),
        f"  ·  {refresh_hz:g} Hz  ·  {description}",
        no_wrap=True,
        overflow="ellipsis",  # a long URL is cut, never the sort or the model
    )
    # No vertical rules and short headers: the table fits an 80-column terminal.
    table = Table(
        expand=True, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True
    )
    table.add_column("model", ratio=1, min_width=8, no_wrap=True, overflow="ellipsis")
    table.add_column("provider", no_wrap=True, overflow="ellipsis")
    for name in ("inf/s", "p50", "p99", "err/s", "err %", "J/inf"):
        table.add_column(name, justify="right", min_width=len(UNKNOWN), no_wrap=True)
    for r in ordered(view.rows, state):
        table.add_row(
            r.model,
            short_provider(r.provider),
            fmt_rate(r.throughput),
            fmt_seconds(r.p50),
            fmt_seconds(r.p99),
            fmt_rate(r.errors),
            UNKNOWN if r.error_ratio is None else f"{100 * r.error_ratio:.2f}%",
            fmt_joules(r.joules_per_inference, r.energy_estimated),
        )
    if not view.rows:
        table.add_row("(no inference reported yet)", "", "", "", "", "", "", "")

    host = Text("host  ", style="bold")
    host.append(f"CPU busy {UNKNOWN if view.cpu_busy is None else f'{100 * view.cpu_busy:.0f}%'}")
    if view.memory_used is not None and view.memory_total:
        host.append(f"  ·  memory {fmt_bytes(view.memory_used)} / {fmt_bytes(view.memory_total)}")
    host.append("  ·  power ")
    if view.power:
        host.append(
            ", ".join(
                f"{p.where} {'≈' if p.estimated else ''}{p.value:.1f} W" for p in view.power[:6]
            )
        )
    else:
        host.append(UNKNOWN)
    host.append("  ·  energy/inference (whole host) ")
    if view.host_energy_per_inference:
        host.append(
            ", ".join(
                f"{'≈' if e.estimated else ''}{e.value:.3g} J ({e.where})"
                for e in view.host_energy_per_inference
            )
        )
    else:
        host.append(UNKNOWN)
    host.append("  ·  hottest ")
    host.append(
        UNKNOWN if view.hottest is None else f"{view.hottest.value:.0f} °C ({view.hottest.where})"
    )

    parts: list[RenderableType] = [head, table, host]
    models = [state.focus] if state.focus else sorted(view.operators)
    for model in models:
        shares = view.operators.get(model or "", ())
        if shares:
            line = Text(f"top operators  {model}: ", style="bold")
            line.append("  ".join(f"{op} {100 * share:.0f}%" for op, share in shares))
            parts.append(line)
    if view.error:
        parts.append(Text(view.error, style="bold red"))
    parts.append(Text("q quit  s sort  r reverse  m next model  a all models", style="dim"))
    return Group(*parts)


# --- the live loop -------------------------------------------------------------------------------
class Poller(threading.Thread):
    """Fetches in the background so a slow endpoint never stalls the screen or the keys."""

    def __init__(self, top: Top, interval: float) -> None:
        super().__init__(name="ortel-top-poll", daemon=True)
        self.top, self.interval = top, interval
        self.view = View()
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            self.view = self.top.poll(start)
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - start)))

    def stop(self) -> None:
        self._stop.set()


@contextmanager
def keys_from(fd: int | None) -> Iterator[Callable[[float], str | None]]:
    """``read(timeout)`` of single key presses from a terminal (cbreak mode, restored on exit).
    With no terminal (fd None), reading just waits out the timeout."""
    if fd is None:
        yield lambda timeout: time.sleep(max(0.0, timeout))
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def read(timeout: float) -> str | None:
        ready, _, _ = select.select([fd], [], [], max(0.0, timeout))
        if not ready:
            return None
        data = os.read(fd, 32).decode(errors="replace")
        # An escape sequence (arrow keys...) arrives whole: act on plain keys only.
        return "" if data.startswith("\x1b") else data[:1] or "q"  # "" read: stdin closed

    try:
        yield read
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def run_live(
    top: Top,
    state: State,
    refresh_hz: float,
    console: Console,
    read_key: Callable[[float], str | None],
    duration: float | None = None,
) -> State:
    """Redraw ``refresh_hz`` times a second until 'q' (or ``duration`` seconds have passed)."""
    from rich.live import Live

    period = 1.0 / refresh_hz
    poller = Poller(top, period)
    poller.start()
    end = None if duration is None else time.monotonic() + duration

    def frame() -> RenderableType:
        return render(poller.view, state, top.source.description, refresh_hz)

    try:
        with Live(frame(), console=console, screen=console.is_terminal, auto_refresh=False) as live:
            deadline = time.monotonic()
            while end is None or time.monotonic() < end:
                live.update(frame(), refresh=True)
                state.frames += 1
                deadline += period
                if deadline < time.monotonic() - period:  # fell far behind: don't catch up
                    deadline = time.monotonic()
                while (remaining := deadline - time.monotonic()) > 0:
                    ch = read_key(remaining)
                    if ch is None:
                        break
                    if ch and not state.key(ch, sorted({r.model for r in poller.view.rows})):
                        return state
                    live.update(frame(), refresh=True)  # answer a key at once
    finally:
        poller.stop()
    return state


def watch(recorder: Any = None, refresh_hz: float = 10.0, rate_window: float = 5.0) -> None:
    """The live view of this process's own recorder, in this terminal, until 'q'."""
    console = Console()
    fd = sys.stdin.fileno() if sys.stdin.isatty() else None
    with keys_from(fd) as read:
        run_live(Top(RecorderSource(recorder), rate_window), State(), refresh_hz, console, read)


# --- the command ----------------------------------------------------------------------------------
def _positive(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise click.BadParameter("must be a number greater than 0")
    return value


@click.command()
@click.option(
    "--url",
    default="http://127.0.0.1:9464/metrics",
    envvar="ORTEL_TOP_URL",
    show_envvar=True,
    show_default=True,
    help="The /metrics endpoint to watch (a daemon, or a process serving its own).",
)
@click.option(
    "--refresh-hz",
    type=float,
    default=10.0,
    envvar="ORTEL_TOP_REFRESH_HZ",
    show_envvar=True,
    show_default=True,
    callback=_positive,
    help="Screen refreshes (and fetches) per second.",
)
@click.option(
    "--rate-window",
    type=float,
    default=5.0,
    envvar="ORTEL_TOP_RATE_WINDOW",
    show_envvar=True,
    show_default=True,
    callback=_positive,
    help="Seconds of history that rates (inferences/s, errors/s) are computed over.",
)
@click.option(
    "--sort",
    type=click.Choice(SORT_KEYS),
    default="throughput",
    envvar="ORTEL_TOP_SORT",
    show_envvar=True,
    show_default=True,
    help="Initial sort column ('s' cycles through them).",
)
@click.option(
    "--model", envvar="ORTEL_TOP_MODEL", show_envvar=True, help="Show only this model ('a': all)."
)
@click.option(
    "--bearer-token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="ORTEL_TOP_BEARER_TOKEN_FILE",
    show_envvar=True,
    help="File whose first line is a bearer token to send (daemons run with --bearer-token-file).",
)
@click.option(
    "--timeout",
    type=float,
    default=2.0,
    envvar="ORTEL_TOP_TIMEOUT",
    show_envvar=True,
    show_default=True,
    callback=_positive,
    help="Seconds to wait for one fetch.",
)
@click.option(
    "--once",
    is_flag=True,
    envvar="ORTEL_TOP_ONCE",
    show_envvar=True,
    help="Print one frame (rates over 1 s) and exit.",
)
def top(
    url: str,
    refresh_hz: float,
    rate_window: float,
    sort: str,
    model: str | None,
    bearer_token_file: Path | None,
    timeout: float,
    once: bool,
) -> None:
    """A live view of a daemon: per-model throughput, p50/p99, errors, energy; host power and
    temperature; top operators. Keys: q quit, s sort, r reverse, m next model, a all models."""
    from .cli import fail

    if not url.startswith(("http://", "https://")):
        fail(f"--url {url!r}: expected an http:// or https:// URL")
    token = None
    if bearer_token_file is not None:
        try:
            token = bearer_token_file.read_text().splitlines()[0].strip()
        except (OSError, IndexError) as e:
            fail(f"cannot read a token from {bearer_token_file}: {getattr(e, 'strerror', e)}")
    view_top = Top(HttpSource(url, timeout, token), rate_window)
    state = State(sort=sort, focus=model)
    if once:
        first = view_top.poll()
        if first.error:
            fail(first.error)
        time.sleep(1.0)
        view = view_top.poll()
        if view.error:
            fail(view.error)
        Console().print(render(view, state, url, refresh_hz))
        return
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        fail("ortel top needs a terminal (use --once to print one frame)")
    with keys_from(sys.stdin.fileno()) as read:
        run_live(view_top, state, refresh_hz, Console(), read)
