"""Energy per inference: the host's measured (or estimated) energy, attributed to processes and
within them to models, every sampling interval (docs/energy.md has the method and its limits).

Each interval, for each energy source (RAPL package + DRAM or the CPU estimate; each NVIDIA GPU):

1. ``dE``: how much the source's energy counter rose since the previous attributed interval
   (counters restarting from a lower value start over from their new value).
2. ``idle = dE × P_idle / P``: the part the source would have drawn doing nothing. ``P`` is the
   source's latest power reading; ``P_idle`` is, for the estimate, the configured idle power of
   every CPU (``--cpu-idle-watts`` × CPUs) and, for measured sources, the lowest power seen over
   a trailing window (``IDLE_WINDOW_SECONDS``, the way Kepler finds idle power).
3. ``active = dE − idle`` goes to processes: on the CPU by each instrumented process's share of
   the host's busy CPU time in the interval (Kepler's ratio method); on a GPU by each process's
   SM utilisation where NVML reports it, else by inference busy time on GPU execution providers.
4. Within a process, its share goes to its models by their share of its inference busy time over
   a short trailing window (``ACTIVITY_WINDOW_SECONDS``: snapshots lag the CPU by a flush or two,
   and a long inference is only recorded when it ends). A process with no inference in that
   window keeps its share unattributed.
5. Conservation: attributed + idle + unattributed = dE, per source, every interval; the three
   parts are exported (``ortel_energy_attribution_joules_total``).

Every counter only ever grows: a process that exits keeps what it was attributed (its last
partial interval, which no one can measure any more, stays unattributed). The first interval of a
source, a process or a snapshot only sets where counting starts.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field

from ortel.collectors.cpu import _IDLE_MODES
from ortel.collectors.multiproc_reader import MergeResult
from ortel.core import catalog as c
from ortel.core.energy import Counter, energy_counters
from ortel.core.readings import Reading

IDLE_WINDOW_SECONDS = 3600.0  # measured sources: idle power = lowest power seen this long back
ACTIVITY_WINDOW_SECONDS = 30.0  # a process's models share its energy by this much busy history
# Execution providers that run on an NVIDIA GPU (their busy time goes with the GPU's energy).
GPU_PROVIDERS = frozenset(
    {"CUDAExecutionProvider", "TensorrtExecutionProvider", "NvTensorRTRTXExecutionProvider"}
)
DEVICES = ("cpu", "gpu")
PARTS = ("attributed", "idle", "unattributed")
COMPONENTS = ("active_energy", "inference_energy", "energy_per_inference", "sla_compliance")
DERIVED_METRICS = (
    c.INFERENCE_ENERGY,
    c.ENERGY_ATTRIBUTION,
    c.ENERGY_PER_INFERENCE,
    c.INFERENCES_PER_JOULE,
    c.ENERGY_PER_TOKEN,
    c.FLOPS_PER_WATT,
    c.INFERENCE_CARBON,
    c.CARBON_PER_INFERENCE,
    c.EFFICIENCY_COMPONENT,
    c.EFFICIENCY_SCORE,
)

SeriesKey = tuple[str, str]  # (model, provider)


# --- inputs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelTotals:
    """A model's counts since start, every process (live and exited) merged."""

    inferences: int  # ok + error calls
    ok: int
    tokens: int  # generated tokens
    flops: float | None  # per inference, where declared


@dataclass(frozen=True)
class Activity:
    """What the instrumented processes did: busy time per live process, totals per model."""

    processes: dict[int, tuple[int, dict[SeriesKey, int]]]  # pid -> (start ticks, busy ns)
    models: dict[str, ModelTotals]


def activity_from(result: MergeResult | None) -> Activity | None:
    """The attribution's view of one merge of the multiprocess directory."""
    if result is None:
        return None
    models: dict[str, list[int]] = {}
    flops: dict[str, float] = {}
    for s in result.series.values():
        t = models.setdefault(s.model, [0, 0, 0])
        t[0] += s.ok.count + s.error.count
        t[1] += s.ok.count
        t[2] += s.generation.generated_tokens if s.generation is not None else 0
        if s.flops is not None:
            flops.setdefault(s.model, s.flops)
    return Activity(
        {pid: (p.start, dict(p.busy_ns)) for pid, p in result.processes.items()},
        {m: ModelTotals(n, ok, tok, flops.get(m)) for m, (n, ok, tok) in models.items()},
    )


@dataclass
class _Source:
    key: Hashable  # ("cpu", source) or ("gpu", uuid)
    device: str
    source: str  # measured | estimated
    energies: dict[Hashable, float]  # counter series -> joules
    watts: float | None  # latest power of the whole source (None: no reading this time)
    idle_watts: float | None = None  # configured idle power (the estimate), else measured


def _labels(r: Reading) -> dict[str, str]:
    return dict(zip(r.metric.labels, r.labels))


def _index(readings: Iterable[Reading]) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for r in readings:
        if isinstance(r.value, int | float) and math.isfinite(r.value):
            out.setdefault(r.metric.name, []).append((_labels(r), float(r.value)))
    return out


def _cpu_source(
    counters: dict[Counter, float], idx: dict, idle_watts_per_cpu: float
) -> _Source | None:
    """The CPU's energy counters as the one energy rule picks them (RAPL package + DRAM, another
    measured source, else the estimate), with their latest power where every one has it."""
    cpu = {k: j for k, j in counters.items() if k.device == "cpu"}
    if not cpu:
        return None
    source = "estimated" if all(k.source == "estimated" for k in cpu) else "measured"
    power = {(lab["source"], lab["device"], lab["zone"]): v for lab, v in idx.get(c.POWER.name, ())}
    watts = [power.get(k.power_labels) if k.power_labels else None for k in cpu]
    total = sum(w for w in watts if w is not None) if None not in watts else None
    idle = None
    if source == "estimated":
        cpus = [v for _, v in idx.get(c.CPU_COUNT.name, ())]
        idle = cpus[0] * idle_watts_per_cpu if cpus else None
    energies: dict[Hashable, float] = {(k.origin, k.unit): j for k, j in cpu.items()}
    return _Source(("cpu", source), "cpu", source, energies, total, idle)


def _host_busy(idx: dict) -> float | None:
    """Busy CPU seconds of the host (every mode but idle and iowait, as the cpu collector counts
    utilisation and the estimate models power)."""
    modes = idx.get(c.CPU_SECONDS.name)
    if not modes:
        return None
    return sum(v for lab, v in modes if lab["mode"] not in _IDLE_MODES)


def _process_cpu(idx: dict) -> dict[int, float]:
    out: dict[int, float] = {}
    for lab, v in idx.get(c.PROCESS_CPU.name, ()):
        if lab["role"] == "instrumented" and lab["pid"].isdigit():
            pid = int(lab["pid"])
            out[pid] = out.get(pid, 0.0) + v  # user + system
    return out


def _by_model(busy: dict[SeriesKey, int], gpu: bool = False) -> dict[str, float]:
    """A process's busy time per model; for a GPU's energy, only its GPU-provider series where it
    has any (a CUDA session's energy is the GPU's; its CPU-provider models' is not)."""
    keys = [k for k in busy if k[1] in GPU_PROVIDERS] if gpu else []
    out: dict[str, float] = {}
    for (model, _), ns in busy.items() if not keys else ((k, busy[k]) for k in keys):
        out[model] = out.get(model, 0.0) + ns
    return out


def _delta(base: dict[Hashable, float], now: dict[Hashable, float]) -> float:
    """How much the counters rose; a new series or one that went back counts from now on."""
    return sum(v - base[k] for k, v in now.items() if k in base and v > base[k])


class _TrailingMin:
    """Minimum of the values added over a trailing time window (a monotonic deque)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._q: deque[tuple[float, float]] = deque()

    def add(self, t: float, v: float) -> float:
        while self._q and self._q[-1][1] >= v:
            self._q.pop()
        self._q.append((t, v))
        while self._q[0][0] < t - self.seconds:
            self._q.popleft()
        return self._q[0][1]

    def lowest(self) -> float | None:
        return self._q[0][1] if self._q else None


class _BusyWindow:
    """One process's busy time added per series over a trailing window, with a running total."""

    def __init__(self, start: int) -> None:
        self.start = start
        self._q: deque[tuple[float, dict[SeriesKey, int]]] = deque()
        self._total: dict[SeriesKey, int] = {}

    def add(self, t: float, added: dict[SeriesKey, int]) -> None:
        if added:
            self._q.append((t, added))
            for k, ns in added.items():
                self._total[k] = self._total.get(k, 0) + ns

    def total(self, since: float) -> dict[SeriesKey, int]:
        """The sums over what was added after ``since``."""
        while self._q and self._q[0][0] <= since:
            for k, ns in self._q.popleft()[1].items():
                left = self._total[k] - ns
                if left:
                    self._total[k] = left
                else:
                    del self._total[k]
        return dict(self._total)


@dataclass
class _Base:
    """Where the previous attributed interval of a source ended."""

    energies: dict[Hashable, float]
    host: float = 0.0  # busy CPU seconds of the host
    procs: dict[int, float] = field(default_factory=dict)  # instrumented pid -> CPU seconds
    watts: float | None = None  # the latest power reading, for an interval that has none


@dataclass
class _Snap:
    """Cumulative totals at one interval, for the window gauges."""

    t: float
    energy: dict[tuple[str, str], float]  # (model, source) -> attributed joules, all devices
    models: dict[str, ModelTotals] | None
    parts: dict[str, float]  # part -> joules, all sources


class Attribution:
    """Stateful: ``step()`` once per sampling interval; ``readings()`` (or calling it as a
    derivation) gives the counters and window gauges at any time."""

    def __init__(
        self,
        cpu_idle_watts: float = 0.74,
        window_seconds: float = 60.0,
        grams_per_joule: Callable[[], float] = lambda: 0.0,
        idle_window_seconds: float = IDLE_WINDOW_SECONDS,
        activity_window_seconds: float = ACTIVITY_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cpu_idle_watts = cpu_idle_watts
        self.window_seconds = window_seconds
        self.grams_per_joule = grams_per_joule
        self.idle_window_seconds = idle_window_seconds
        self.activity_window_seconds = activity_window_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._bases: dict[Hashable, _Base] = {}
        self._idle: dict[Hashable, _TrailingMin] = {}
        self._busy_base: dict[tuple[int, int], dict[SeriesKey, int]] = {}
        self._busy_hist: dict[int, _BusyWindow] = {}  # pid -> its busy time over the window
        self._energy: dict[tuple[str, str, str], float] = {}  # (model, device, source) -> J
        self._parts: dict[tuple[str, str, str], float] = {}  # (device, source, part) -> J
        self._carbon: dict[tuple[str, str], float] = {}  # (model, source) -> g
        self._history: deque[_Snap] = deque()
        self._best: dict[str, float] = {}  # model -> lowest full-window joules per inference
        self._gauges: list[Reading] = []

    # -- one interval --------------------------------------------------------------------------
    def step(self, readings: Sequence[Reading], activity: Activity | None) -> None:
        """Attribute what the sources measured since the previous interval."""
        with self._lock:
            now = self.clock()
            idx = _index(readings)
            counters = energy_counters(readings)
            busy = self._busy(now, activity)
            self._cpu(now, counters, idx, busy)
            self._gpus(now, counters, idx, busy)
            self._window(now, idx, activity)

    def _busy(self, now: float, activity: Activity | None) -> dict[int, dict[SeriesKey, int]]:
        """Each live process's inference busy time per series over the activity window."""
        processes = activity.processes if activity is not None else {}
        base: dict[tuple[int, int], dict[SeriesKey, int]] = {}
        for pid, (start, busy) in processes.items():
            old = self._busy_base.get((pid, start))
            base[(pid, start)] = busy
            hist = self._busy_hist.get(pid)
            if hist is None or hist.start != start:  # new process (or a reused pid)
                hist = self._busy_hist[pid] = _BusyWindow(start)
            if old is not None:  # else first sight: its busy time so far was spent before
                hist.add(now, {k: v - old.get(k, 0) for k, v in busy.items() if v > old.get(k, 0)})
        self._busy_base = base
        out: dict[int, dict[SeriesKey, int]] = {}
        for pid in list(self._busy_hist):
            if pid not in processes:
                del self._busy_hist[pid]
                continue
            total = self._busy_hist[pid].total(now - self.activity_window_seconds)
            if total:
                out[pid] = total
        return out

    def _idle_ratio(self, src: _Source, base: _Base, now: float) -> float:
        """Share of the interval's energy that is idle power."""
        watts = src.watts
        measured_idle: float | None
        if watts is not None:
            base.watts = watts
            lowest = self._idle.setdefault(src.key, _TrailingMin(self.idle_window_seconds))
            measured_idle = lowest.add(now, watts)
        else:  # this sample has no power reading: the latest one and the lowest so far
            watts = base.watts
            q = self._idle.get(src.key)
            measured_idle = q.lowest() if q is not None else None
        idle = src.idle_watts if src.idle_watts is not None else measured_idle
        if watts is None or idle is None:
            return 0.0  # no power reading yet: nothing can be called idle
        if watts <= 0:
            return 1.0
        return min(max(idle / watts, 0.0), 1.0)

    def _start(
        self, src: _Source, host: float = 0.0, procs: dict[int, float] | None = None
    ) -> _Base | None:
        """The source's previous interval, or None when this one only sets the start."""
        base = self._bases.get(src.key)
        if base is None:
            self._bases[src.key] = _Base(dict(src.energies), host, procs or {}, src.watts)
            if src.watts is not None:  # the first power reading counts towards idle too
                self._idle.setdefault(src.key, _TrailingMin(self.idle_window_seconds)).add(
                    self.clock(), src.watts
                )
        return base

    def _cpu(
        self,
        now: float,
        counters: dict[Counter, float],
        idx: dict,
        busy: dict[int, dict[SeriesKey, int]],
    ) -> None:
        src = _cpu_source(counters, idx, self.cpu_idle_watts)
        host = _host_busy(idx)
        if src is None or host is None:
            return
        procs = _process_cpu(idx)
        base = self._start(src, host, procs)
        if base is None:
            return
        de = _delta(base.energies, src.energies)
        if de <= 0:  # no new energy sample yet: the next interval covers this one
            for k, v in src.energies.items():
                if k not in base.energies or v < base.energies[k]:
                    base.energies[k] = v  # a new or restarted counter counts from here
            return
        d_host = max(host - base.host, 0.0)
        d_procs = {
            pid: v - base.procs[pid] for pid, v in procs.items() if v > base.procs.get(pid, v)
        }
        base.energies, base.host, base.procs = dict(src.energies), host, procs
        idle = de * self._idle_ratio(src, base, now)
        # Processes sampled a moment after the host can add up to more than it: never over 1.
        denom = max(d_host, sum(d_procs.values()))
        shares = {pid: d / denom for pid, d in d_procs.items()} if denom > 0 else {}
        weights = {pid: _by_model(busy[pid]) for pid in shares if pid in busy}
        self._split(src, de, idle, shares, weights)

    def _gpus(
        self,
        now: float,
        counters: dict[Counter, float],
        idx: dict,
        busy: dict[int, dict[SeriesKey, int]],
    ) -> None:
        # NVIDIA GPUs, each its own source. (powermetrics' GPU and Neural Engine joules count in
        # blocks and profiles; macOS gives no per-process GPU share to attribute them by.)
        energy = [(k.unit, j) for k, j in counters.items() if k.origin == "nvml"]

        def per_gpu(metric: c.MetricDef) -> dict[str, list[tuple[dict[str, str], float]]]:
            out: dict[str, list] = {}
            for lab, v in idx.get(metric.name, ()):
                out.setdefault(lab["uuid"], []).append((lab, v))
            return out

        power, util = per_gpu(c.GPU_POWER), per_gpu(c.GPU_UTILIZATION)
        proc_util, proc_mem = per_gpu(c.GPU_PROCESS_UTILIZATION), per_gpu(c.GPU_PROCESS_MEMORY)
        single = len(energy) == 1
        for uuid, joules in energy:
            watts = [v for _, v in power.get(uuid, ())]
            total_watts = sum(watts) if watts else None
            src = _Source(("gpu", uuid), "gpu", "measured", {uuid: joules}, total_watts)
            base = self._start(src)
            if base is None:
                continue
            de = _delta(base.energies, src.energies)
            if de <= 0:
                if joules < base.energies[uuid]:
                    base.energies[uuid] = joules  # the driver reloaded: count from here
                continue
            base.energies = dict(src.energies)
            idle = de * self._idle_ratio(src, base, now)
            sm = {int(p["pid"]): v for p, v in proc_util.get(uuid, ()) if p["pid"].isdigit()}
            shares: dict[int, float] = {}
            if sum(sm.values()) > 0:
                # NVML's per-process SM share; what the GPU did beyond the instrumented
                # processes' shares (other processes) stays unattributed.
                gpu_util = max((v for _, v in util.get(uuid, ())), default=0.0)
                denom = max(sum(sm.values()), gpu_util)
                shares = {pid: v / denom for pid, v in sm.items() if v > 0}
            else:
                # No per-process utilisation: inference busy time on a GPU provider, among the
                # processes NVML sees on this GPU (or every process, with only one GPU).
                on_gpu = {int(p["pid"]) for p, _ in proc_mem.get(uuid, ()) if p["pid"].isdigit()}
                candidates = on_gpu if on_gpu else (set(busy) if single else set())
                gbusy = {
                    pid: ns
                    for pid in candidates & set(busy)
                    if (ns := sum(v for k, v in busy[pid].items() if k[1] in GPU_PROVIDERS)) > 0
                }
                total = sum(gbusy.values())
                shares = {pid: ns / total for pid, ns in gbusy.items()} if total else {}
            weights = {pid: _by_model(busy[pid], gpu=True) for pid in shares if pid in busy}
            self._split(src, de, idle, shares, weights)

    def _split(
        self,
        src: _Source,
        de: float,
        idle: float,
        shares: dict[int, float],
        weights: dict[int, dict[str, float]],
    ) -> None:
        """Add one interval of a source: active energy by process share, then by model."""
        active = de - idle
        gpj = self.grams_per_joule()
        attributed = 0.0
        for pid, share in shares.items():
            w = weights.get(pid)
            total = sum(w.values()) if w else 0.0
            if not w or total <= 0:
                continue  # no inference in the window: this process's share stays unattributed
            for model, x in w.items():
                j = active * share * x / total
                if j <= 0:
                    continue
                k = (model, src.device, src.source)
                self._energy[k] = self._energy.get(k, 0.0) + j
                ck = (model, src.source)
                self._carbon[ck] = self._carbon.get(ck, 0.0) + j * gpj
                attributed += j
        unattributed = max(active - attributed, 0.0)
        for part, j in (("attributed", attributed), ("idle", idle), ("unattributed", unattributed)):
            k = (src.device, src.source, part)
            self._parts[k] = self._parts.get(k, 0.0) + j

    # -- window gauges -------------------------------------------------------------------------
    def _window(self, now: float, idx: dict, activity: Activity | None) -> None:
        energy: dict[tuple[str, str], float] = {}
        for (model, _, source), j in self._energy.items():
            energy[(model, source)] = energy.get((model, source), 0.0) + j
        parts: dict[str, float] = {}
        for (_, _, part), j in self._parts.items():
            parts[part] = parts.get(part, 0.0) + j
        cur = _Snap(now, energy, activity.models if activity is not None else None, parts)
        h = self._history
        h.append(cur)
        while len(h) > 1 and h[1].t <= now - self.window_seconds:
            h.popleft()
        base = h[0]
        full = base.t <= now - self.window_seconds + 1e-9
        self._gauges = self._window_gauges(cur, base, full, idx) if base is not cur else []

    def _window_gauges(self, cur: _Snap, base: _Snap, full: bool, idx: dict) -> list[Reading]:
        out: list[Reading] = []
        if cur.models is None or base.models is None:
            return out
        gpj = self.grams_per_joule()
        dparts = {p: cur.parts.get(p, 0.0) - base.parts.get(p, 0.0) for p in PARTS}
        measured = sum(dparts.values())
        host: dict[str, float] = {}
        if measured > 0:
            host["active_energy"] = 1.0 - dparts["idle"] / measured
            if measured - dparts["idle"] > 0:
                host["inference_energy"] = dparts["attributed"] / (measured - dparts["idle"])
        sla = {lab["model"]: v for lab, v in idx.get(c.SLA_COMPLIANCE.name, ())}
        zero = ModelTotals(0, 0, 0, None)
        for model, t in sorted(cur.models.items()):
            b = base.models.get(model, zero)
            by_source = {
                s: cur.energy.get((model, s), 0.0) - base.energy.get((model, s), 0.0)
                for s in ("measured", "estimated")
            }
            dj = sum(by_source.values())
            if dj <= 0:
                continue  # nothing attributed in the window: unknown, not 0 J
            ml = (model, "estimated" if by_source["estimated"] > 0 else "measured")
            dn, dok, dtok = t.inferences - b.inferences, t.ok - b.ok, t.tokens - b.tokens
            components = dict(host)
            if dn > 0:
                per = dj / dn
                out.append(Reading(c.ENERGY_PER_INFERENCE, ml, per))
                out.append(Reading(c.INFERENCES_PER_JOULE, ml, dn / dj))
                out.append(Reading(c.CARBON_PER_INFERENCE, ml, per * gpj))
                if full:  # a partly attributed first window would set the best too low
                    self._best[model] = min(self._best.get(model, per), per)
                if model in self._best:
                    components["energy_per_inference"] = min(self._best[model] / per, 1.0)
            if dtok > 0:
                out.append(Reading(c.ENERGY_PER_TOKEN, ml, dj / dtok))
            if t.flops is not None and dok > 0:
                out.append(Reading(c.FLOPS_PER_WATT, ml, t.flops * dok / dj))
            if model in sla:
                components["sla_compliance"] = sla[model]
            for name in COMPONENTS:
                if name in components:
                    out.append(Reading(c.EFFICIENCY_COMPONENT, ml + (name,), components[name]))
            if components:
                score = 100.0 * sum(components.values()) / len(components)
                out.append(Reading(c.EFFICIENCY_SCORE, ml, score))
        return out

    # -- output --------------------------------------------------------------------------------
    def readings(self) -> list[Reading]:
        with self._lock:
            out = [Reading(c.INFERENCE_ENERGY, k, j) for k, j in sorted(self._energy.items())]
            out += [Reading(c.ENERGY_ATTRIBUTION, k, j) for k, j in sorted(self._parts.items())]
            out += [Reading(c.INFERENCE_CARBON, k, g) for k, g in sorted(self._carbon.items())]
            out += self._gauges
            return out

    def __call__(self, _readings: Sequence[Reading]) -> list[Reading]:
        """As a derivation (derive.Derived): the latest attribution, whatever the scrape read."""
        return self.readings()
