"""Energy attribution (attribution.py): measured energy split into idle, attributed to models and
unattributed, every interval, conserving what the counters measured.

The scenario tests run the real collectors (cpu, process, rapl, estimate, inference) over copies
of the fixture trees whose counters a ``Host`` advances at known rates each step: RAPL zones at
known watts, /proc/stat and /proc/<pid>/stat by known CPU seconds, snapshot files by known
inference busy time. The truth follows from those rates by hand.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from harness import OrtelServe, http_get
from helpers import FIXTURES, copy_fixture

from ortel.collectors.base import NoDataError
from ortel.collectors.cpu import CpuCollector
from ortel.collectors.estimate import EstimateCollector
from ortel.collectors.inference import InferenceCollector
from ortel.collectors.process import ProcessCollector
from ortel.collectors.rapl import RaplCollector
from ortel.core import catalog as c
from ortel.core import snapshot
from ortel.core.multiproc_files import instrumented_pids, snapshot_name
from ortel.core.readings import Reading, reading
from ortel.core.state import GenerationState, Hist, SeriesState
from ortel.exporter.attribution import (
    Activity,
    Attribution,
    ModelTotals,
    activity_from,
)
from ortel.exporter.derive import JOULES_PER_KWH

CLK_TCK = 100
N_CPUS = 4  # the fixture host
RESNET, BERT = ("resnet", "CPUExecutionProvider"), ("bert", "CPUExecutionProvider")
G_PER_J = 360.0 / JOULES_PER_KWH  # 1e-4 g per joule
# Zones the Host advances: package-0, and core/uncore (inside it) and psys (around it), which a
# correct attribution never adds to the package; dram is separate.
ZONES = {
    "intel-rapl:0": "package",
    "intel-rapl:0:0": "core",
    "intel-rapl:0:1": "uncore",
    "intel-rapl:0:2": "dram",
    "intel-rapl:1": "psys",
}


@dataclass
class Proc:
    start: int
    ticks: int = 0  # utime; stime stays as in the fixture
    busy_ns: dict[tuple[str, str], int] = field(default_factory=dict)
    calls: dict[tuple[str, str], int] = field(default_factory=dict)
    tokens: dict[tuple[str, str], int] = field(default_factory=dict)
    gen_ns: dict[tuple[str, str], int] = field(default_factory=dict)  # first-token times summed
    flops: dict[tuple[str, str], float] = field(default_factory=dict)


class Host:
    """The 4-CPU fixture host (procfs, sysfs copied into tmp_path) with two instrumented processes,
    1234 and 4321, whose counters advance one step at a time."""

    def __init__(self, tmp: Path, rapl: bool = True, package_start_uj: int | None = None) -> None:
        self.procfs = copy_fixture("procfs", tmp)
        self.sysfs = copy_fixture("sysfs", tmp)
        if not rapl:
            shutil.rmtree(self.sysfs / "class" / "powercap")
        self.mdir = tmp / "multiproc"
        self.mdir.mkdir()
        self.t = 5000.0  # the collectors' and the attribution's monotonic clock
        self.powercap = self.sysfs / "class" / "powercap"
        self.uj: dict[str, int] = {}
        self.range: dict[str, int] = {}
        if rapl:
            for zone in ZONES:
                self.uj[zone] = int((self.powercap / zone / "energy_uj").read_text())
                self.range[zone] = int((self.powercap / zone / "max_energy_range_uj").read_text())
            if package_start_uj is not None:
                self.uj["intel-rapl:0"] = package_start_uj
        self.unwrapped_uj = {z: 0 for z in self.uj}  # energy added since the start, never wrapped
        stat = (self.procfs / "stat").read_text().splitlines()
        self.cpu = [int(x) for x in stat[0].split()[1:]]
        self.stat_tail = [ln for ln in stat if not ln.startswith("cpu")]
        self.procs = {
            pid: Proc(start=int(self._pid_stat(pid)[21]), ticks=int(self._pid_stat(pid)[13]))
            for pid in (1234, 4321)
        }
        self.write()

    def _pid_stat(self, pid: int) -> list[str]:
        text = (self.procfs / str(pid) / "stat").read_text()
        head, _, tail = text.rpartition(")")
        return [head.split(" ", 1)[0], head.split(" ", 1)[1] + ")"] + tail.split()

    def step(
        self,
        package_w: float,
        dram_w: float,
        busy_cpu: float,
        procs: dict[int, tuple[float, dict[tuple[str, str], tuple[float, int]]]],
        dt: float = 1.0,
    ) -> None:
        """Advance dt seconds: RAPL at these watts, the host busy for busy_cpu CPU-seconds, each
        process using cpu seconds and spending busy seconds in n calls per series."""
        self.t += dt
        watts = {
            "intel-rapl:0": package_w,
            "intel-rapl:0:0": 0.6 * package_w,
            "intel-rapl:0:1": 0.1 * package_w,
            "intel-rapl:0:2": dram_w,
            "intel-rapl:1": package_w + dram_w + 10.0,
        }
        for zone in self.uj:
            add = round(watts[zone] * dt * 1e6)
            self.uj[zone] = (self.uj[zone] + add) % (self.range[zone] + 1)
            self.unwrapped_uj[zone] += add
        busy_ticks = round(busy_cpu * CLK_TCK)
        self.cpu[0] += busy_ticks  # user
        self.cpu[3] += round(N_CPUS * dt * CLK_TCK) - busy_ticks  # idle
        for pid, (cpu_s, series) in procs.items():
            p = self.procs[pid]
            p.ticks += round(cpu_s * CLK_TCK)
            for key, (busy_s, n) in series.items():
                p.busy_ns[key] = p.busy_ns.get(key, 0) + round(busy_s * 1e9)
                p.calls[key] = p.calls.get(key, 0) + n
        self.write()

    def exit(self, pid: int) -> None:
        """The process ends: its /proc entry goes, its last snapshot stays for the daemon."""
        shutil.rmtree(self.procfs / str(pid))
        del self.procs[pid]

    def measured_joules(self) -> float:
        """Package + DRAM energy added since the start (what RAPL measured, unwrapped)."""
        return (self.unwrapped_uj["intel-rapl:0"] + self.unwrapped_uj["intel-rapl:0:2"]) / 1e6

    def write(self) -> None:
        for zone, uj in self.uj.items():
            (self.powercap / zone / "energy_uj").write_text(f"{uj}\n")
        per_cpu = [f"cpu{i} " + " ".join(str(v // N_CPUS) for v in self.cpu) for i in range(N_CPUS)]
        cpu = "cpu  " + " ".join(str(v) for v in self.cpu)
        (self.procfs / "stat").write_text("\n".join([cpu, *per_cpu, *self.stat_tail]) + "\n")
        for pid, p in self.procs.items():
            fields = self._pid_stat(pid)
            fields[13] = str(p.ticks)
            (self.procfs / str(pid) / "stat").write_text(" ".join(fields) + "\n")
            self._snapshot(pid, p)

    def _snapshot(self, pid: int, p: Proc) -> None:
        series = []
        for key in sorted(set(p.busy_ns) | set(p.tokens) | {RESNET}):
            s = SeriesState(*key, flops=p.flops.get(key))
            n = p.calls.get(key, 0)
            s.ok = Hist([n] + [0] * len(s.bounds), p.busy_ns.get(key, 0), n)
            if key in p.tokens:
                s.generation = GenerationState(generated_tokens=p.tokens[key])
                ttft = s.generation.ttft
                ttft.counts[-1] = ttft.count = 1 if p.gen_ns.get(key) else 0
                ttft.sum_ns = p.gen_ns.get(key, 0)
            series.append(s)
        snap = snapshot.Snapshot(series, pid=pid, start=p.start, written=time.time())
        snapshot.write(self.mdir / snapshot_name(pid, p.start), snap)


class Daemonless:
    """The daemon's loop without threads: sample every collector, then one attribution step."""

    def __init__(self, host: Host, idle_watts: float = 0.74, max_watts: float = 3.5) -> None:
        self.host = host
        clock = lambda: host.t  # noqa: E731
        self.inference = InferenceCollector(host.mdir, host.procfs)
        self.collectors = [
            CpuCollector(host.procfs, host.sysfs, clk_tck=CLK_TCK),
            ProcessCollector(
                host.procfs,
                pids=lambda: instrumented_pids(host.mdir),
                self_pid=777,
                clk_tck=CLK_TCK,
                page_size=4096,
            ),
            RaplCollector(host.sysfs, clock=clock),
            EstimateCollector(host.procfs, host.sysfs, idle_watts, max_watts, clock=clock),
            self.inference,
        ]
        self.attribution = Attribution(
            cpu_idle_watts=idle_watts,
            window_seconds=10.0,
            grams_per_joule=lambda: G_PER_J,
            clock=clock,
        )

    def sample(self) -> list[Reading]:
        readings: list[Reading] = []
        for col in self.collectors:
            try:
                readings += list(col.collect())
            except NoDataError:
                pass
        self.attribution.step(readings, activity_from(self.inference.latest))
        return self.attribution.readings()


def values(readings: list[Reading], metric: c.MetricDef) -> dict[tuple[str, ...], float]:
    out = {r.labels: r.value for r in readings if r.metric is metric}
    assert len(out) == len([r for r in readings if r.metric is metric]), "series twice"
    return out


def counters(readings: list[Reading]) -> dict[tuple[str, tuple[str, ...]], float]:
    return {
        (r.metric.name, r.labels): r.value
        for r in readings
        if r.metric in (c.INFERENCE_ENERGY, c.ENERGY_ATTRIBUTION, c.INFERENCE_CARBON)
    }


def assert_never_backwards(before: dict, after: dict) -> None:
    for key, v in before.items():
        assert key in after, f"{key} disappeared"
        assert after[key] >= v, f"{key} went back from {v} to {after[key]}"


# The load of the scenarios: the host busy 2 of its 4 CPUs; 1234 uses 1.0 CPU-s/s split
# resnet:bert 3:1 by busy time, 4321 0.5 CPU-s/s on resnet; 0.5 CPU-s/s is other processes.
LOAD = {
    1234: (1.0, {RESNET: (0.6, 60), BERT: (0.2, 10)}),
    4321: (0.5, {RESNET: (0.4, 40)}),
}
IDLE = {1234: (0.0, {}), 4321: (0.0, {})}
IDLE_W = (15.0, 3.0)  # package, dram: 18 W at idle
LOAD_W = (45.0, 5.0)  # 50 W under load: 32 W active
# Per load step: active 32 J; 1234 half of it (16 J: resnet 12, bert 4), 4321 a quarter (8 J).
TRUTH = {"resnet": 20.0, "bert": 4.0, "unattributed": 8.0, "idle": 18.0}


def phase(host: Host, load: bool) -> None:
    """One step of the idle or the load phase."""
    if load:
        host.step(*LOAD_W, busy_cpu=2.0, procs=LOAD)
    else:
        host.step(*IDLE_W, busy_cpu=0.2, procs=IDLE)


def run_measured(d: Daemonless, idle_steps: int = 5, load_steps: int = 20) -> list[Reading]:
    out = d.sample()  # the first interval: where counting starts
    for _ in range(idle_steps):
        d.host.step(*IDLE_W, busy_cpu=0.2, procs=IDLE)
        out = d.sample()
    for _ in range(load_steps):
        d.host.step(*LOAD_W, busy_cpu=2.0, procs=LOAD)
        out = d.sample()
    return out


def test_first_interval_attributes_nothing(tmp_path):
    d = Daemonless(Host(tmp_path))
    assert d.sample() == []


def test_attributed_joules_match_the_truth_and_add_up_to_what_rapl_measured(tmp_path):
    host = Host(tmp_path)
    d = Daemonless(host)
    out = run_measured(d)
    energy = values(out, c.INFERENCE_ENERGY)
    assert set(energy) == {("resnet", "cpu", "measured"), ("bert", "cpu", "measured")}
    assert energy[("resnet", "cpu", "measured")] == pytest.approx(20 * TRUTH["resnet"], rel=0.02)
    assert energy[("bert", "cpu", "measured")] == pytest.approx(20 * TRUTH["bert"], rel=0.02)

    parts = {k[2]: v for k, v in values(out, c.ENERGY_ATTRIBUTION).items()}
    assert set(values(out, c.ENERGY_ATTRIBUTION)) == {
        ("cpu", "measured", p) for p in ("attributed", "idle", "unattributed")
    }
    assert parts["attributed"] == pytest.approx(sum(energy.values()), rel=1e-9)
    assert parts["idle"] == pytest.approx(25 * TRUTH["idle"], rel=0.02)
    assert parts["unattributed"] == pytest.approx(20 * TRUTH["unattributed"], rel=0.02)
    # Conservation: every joule of package + DRAM (never core, uncore or psys on top) is in one
    # of the parts.
    assert sum(parts.values()) == pytest.approx(host.measured_joules(), rel=0.02)
    assert sum(parts.values()) == pytest.approx(host.measured_joules(), rel=1e-9)

    carbon = values(out, c.INFERENCE_CARBON)
    assert carbon[("resnet", "measured")] == pytest.approx(400.0 * G_PER_J, rel=0.02)


def test_window_gauges_per_model(tmp_path):
    host = Host(tmp_path)
    host.procs[1234].flops[RESNET] = 4e9  # declared with flops= in that process
    d = Daemonless(host)
    out = run_measured(d)
    # Over the 10 s window: resnet 200 J for 1000 calls, bert 40 J for 100.
    epi = values(out, c.ENERGY_PER_INFERENCE)
    assert epi == pytest.approx({("resnet", "measured"): 0.2, ("bert", "measured"): 0.4})
    assert values(out, c.INFERENCES_PER_JOULE) == pytest.approx(
        {("resnet", "measured"): 5.0, ("bert", "measured"): 2.5}
    )
    assert values(out, c.CARBON_PER_INFERENCE)[("resnet", "measured")] == pytest.approx(
        0.2 * G_PER_J
    )
    # FLOPs only where declared: 4e9 FLOP x 1000 calls / 200 J.
    assert values(out, c.FLOPS_PER_WATT) == pytest.approx({("resnet", "measured"): 2e10})
    assert values(out, c.ENERGY_PER_TOKEN) == {}  # no generation: unknown, not 0


def test_efficiency_score_is_the_mean_of_its_visible_components(tmp_path):
    d = Daemonless(Host(tmp_path))
    out = run_measured(d)
    comps = values(out, c.EFFICIENCY_COMPONENT)
    resnet = {k[2]: v for k, v in comps.items() if k[0] == "resnet"}
    # Over the last 10 s: 500 J measured, 180 idle, 240 of the 320 active to inference.
    assert resnet == pytest.approx(
        {"active_energy": 320 / 500, "inference_energy": 240 / 320, "energy_per_inference": 1.0}
    )
    score = values(out, c.EFFICIENCY_SCORE)[("resnet", "measured")]
    assert score == pytest.approx(100 * sum(resnet.values()) / 3)
    assert 0 <= score <= 100


def test_energy_per_inference_component_compares_with_the_best_window(tmp_path):
    d = Daemonless(Host(tmp_path))
    run_measured(d)
    # Twice the power for the same work: joules per inference double.
    for _ in range(10):
        d.host.step(105.0, 5.0, busy_cpu=2.0, procs=LOAD)
        out = d.sample()
    # 110 W: 92 J active per second, 57.5 J of it to resnet's 100 calls.
    assert values(out, c.ENERGY_PER_INFERENCE)[("resnet", "measured")] == pytest.approx(0.575)
    comps = values(out, c.EFFICIENCY_COMPONENT)
    assert comps[("resnet", "measured", "energy_per_inference")] == pytest.approx(0.2 / 0.575)


def test_across_a_rapl_wrap(tmp_path):
    wrap_at = int((FIXTURES / "sysfs/class/powercap/intel-rapl:0/max_energy_range_uj").read_text())
    # The package counter wraps in the first load step: 30 J before its maximum after idling.
    start = wrap_at - 5 * 15 * 10**6 - 30 * 10**6
    host = Host(tmp_path, package_start_uj=start)
    d = Daemonless(host)
    seen: dict = {}
    d.sample()
    for i in range(25):
        phase(host, load=i >= 5)
        out = d.sample()
        now = counters(out)
        assert_never_backwards(seen, now)
        seen = now
    assert host.uj["intel-rapl:0"] < start  # it did wrap
    energy = values(out, c.INFERENCE_ENERGY)
    assert energy[("resnet", "cpu", "measured")] == pytest.approx(400.0, rel=0.02)
    assert energy[("bert", "cpu", "measured")] == pytest.approx(80.0, rel=0.02)
    parts = values(out, c.ENERGY_ATTRIBUTION)
    assert sum(parts.values()) == pytest.approx(host.measured_joules(), rel=0.02)


def test_a_process_that_exits_keeps_its_joules(tmp_path):
    host = Host(tmp_path)
    d = Daemonless(host)
    out = run_measured(d, load_steps=10)
    before = counters(out)
    assert values(out, c.INFERENCE_ENERGY)[("resnet", "cpu", "measured")] == pytest.approx(200.0)
    # 4321 works a quarter of a second into the next interval, then exits: that last part no
    # one can measure any more, so it stays unattributed.
    host.step(*LOAD_W, busy_cpu=2.0, procs={1234: LOAD[1234], 4321: (0.25, {RESNET: (0.1, 10)})})
    host.exit(4321)
    out = d.sample()
    assert_never_backwards(before, counters(out))
    for _ in range(9):
        host.step(*LOAD_W, busy_cpu=2.0, procs={1234: LOAD[1234]})
        out = d.sample()
    energy = values(out, c.INFERENCE_ENERGY)
    # 10 steps with both (20 J/step), then 10 with only 1234 (12 J/step to resnet).
    assert energy[("resnet", "cpu", "measured")] == pytest.approx(200.0 + 10 * 12.0, rel=0.02)
    assert energy[("bert", "cpu", "measured")] == pytest.approx(20 * 4.0, rel=0.02)
    parts = {k[2]: v for k, v in values(out, c.ENERGY_ATTRIBUTION).items()}
    assert parts["unattributed"] == pytest.approx(10 * 8.0 + 10 * 16.0, rel=0.02)
    assert sum(parts.values()) == pytest.approx(host.measured_joules(), rel=0.02)
    # Its inferences still count towards the model's totals (compacted into the archive).
    assert d.inference.latest is not None and d.inference.latest.archived == 1
    assert 4321 not in d.inference.latest.processes


def test_estimate_only_every_energy_series_is_estimated(tmp_path):
    host = Host(tmp_path, rapl=False)
    d = Daemonless(host, idle_watts=1.0, max_watts=5.0)
    out = d.sample()
    for _ in range(20):
        host.step(0.0, 0.0, busy_cpu=2.0, procs=LOAD)
        out = d.sample()
    energy = values(out, c.INFERENCE_ENERGY)
    # The model: 4 CPUs x (1 W + 4 W x 50%) = 12 W, of which 4 W idle and 8 W active, i.e.
    # 4 W per busy CPU-second: resnet gets (0.75 + 0.5) x 4 W, bert 0.25 x 4 W.
    assert energy == pytest.approx(
        {("resnet", "cpu", "estimated"): 20 * 5.0, ("bert", "cpu", "estimated"): 20 * 1.0},
        rel=0.02,
    )
    parts = {k[2]: v for k, v in values(out, c.ENERGY_ATTRIBUTION).items()}
    assert parts["idle"] == pytest.approx(20 * 4.0, rel=0.02)
    energy_series = [
        r
        for r in out
        if r.metric
        in (
            c.INFERENCE_ENERGY,
            c.ENERGY_ATTRIBUTION,
            c.INFERENCE_CARBON,
            c.ENERGY_PER_INFERENCE,
            c.INFERENCES_PER_JOULE,
            c.CARBON_PER_INFERENCE,
            c.EFFICIENCY_COMPONENT,
            c.EFFICIENCY_SCORE,
        )
    ]
    assert {r.metric for r in energy_series} >= {c.INFERENCE_ENERGY, c.ENERGY_PER_INFERENCE}
    for r in energy_series:
        assert dict(zip(r.metric.labels, r.labels))["source"] == "estimated", r


def test_energy_per_token_from_generated_tokens(tmp_path):
    host = Host(tmp_path)
    d = Daemonless(host)
    d.sample()
    for i in range(15):
        host.procs[1234].tokens[RESNET] = 100 * (i + 1)  # 100 tokens per step
        phase(host, load=i >= 5)
        out = d.sample()
    # resnet: 200 J over the 10 s window for 1000 tokens.
    assert values(out, c.ENERGY_PER_TOKEN) == pytest.approx({("resnet", "measured"): 0.2})


def test_a_generation_only_process_gets_its_share_and_energy_per_token(tmp_path):
    """A loop that only marks tokens (track_generation, no timed calls): its generation time
    is its busy time."""
    host = Host(tmp_path)
    d = Daemonless(host)
    llm = ("llm", "CPUExecutionProvider")
    d.sample()
    for i in range(15):
        load = i >= 5
        if load:
            p = host.procs[1234]
            p.tokens[llm] = p.tokens.get(llm, 0) + 50
            p.gen_ns[llm] = p.gen_ns.get(llm, 0) + 800_000_000
            host.step(*LOAD_W, busy_cpu=2.0, procs={1234: (1.0, {}), 4321: LOAD[4321]})
        else:
            host.step(*IDLE_W, busy_cpu=0.2, procs=IDLE)
        out = d.sample()
    energy = values(out, c.INFERENCE_ENERGY)
    # 1234 gets half of the 32 J active per step, all of it to llm.
    assert energy[("llm", "cpu", "measured")] == pytest.approx(10 * 16.0, rel=0.02)
    assert values(out, c.ENERGY_PER_TOKEN)[("llm", "measured")] == pytest.approx(16 / 50)
    assert ("llm", "measured") not in values(out, c.ENERGY_PER_INFERENCE)  # no timed calls


# --- unit tests on hand-made readings ---------------------------------------------------------


def cpu_readings(
    joules: float, watts: float | None, busy_s: float, procs: dict[int, float]
) -> list[Reading]:
    out = [
        reading(c.RAPL_ENERGY, joules, zone="package-0", index="0"),
        reading(c.CPU_SECONDS, busy_s, mode="user"),
        reading(c.CPU_SECONDS, 1e6, mode="idle"),
    ]
    if watts is not None:
        out.append(reading(c.POWER, watts, source="rapl", device="0", zone="package-0"))
    for pid, cpu in procs.items():
        out.append(
            reading(c.PROCESS_CPU, cpu, pid=str(pid), name="py", role="instrumented", mode="user")
        )
    return out


def activity(busy: dict[int, dict[tuple[str, str], int]], start: int = 1) -> Activity:
    return Activity({pid: (start, b) for pid, b in busy.items()}, {})


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_counter_that_restarts_never_makes_anything_go_back():
    clock = Clock()
    a = Attribution(clock=clock)
    a.step(cpu_readings(1000.0, 10.0, 10.0, {7: 1.0}), activity({7: {RESNET: 0}}))
    clock.t += 1
    a.step(cpu_readings(1100.0, 100.0, 11.0, {7: 2.0}), activity({7: {RESNET: 10**9}}))
    first = counters(a.readings())
    assert first[(c.INFERENCE_ENERGY.name, ("resnet", "cpu", "measured"))] == pytest.approx(90.0)
    clock.t += 1
    a.step(cpu_readings(50.0, 100.0, 12.0, {7: 3.0}), activity({7: {RESNET: 2 * 10**9}}))
    assert counters(a.readings()) == first  # restarted: counts from its new value
    clock.t += 1
    a.step(cpu_readings(150.0, 100.0, 13.0, {7: 4.0}), activity({7: {RESNET: 3 * 10**9}}))
    after = counters(a.readings())
    assert_never_backwards(first, after)
    assert after[(c.INFERENCE_ENERGY.name, ("resnet", "cpu", "measured"))] == pytest.approx(180.0)


def test_processes_sampled_after_the_host_never_get_more_than_the_active_energy():
    clock = Clock()
    a = Attribution(clock=clock)
    a.step(cpu_readings(0.0, 10.0, 0.0, {7: 0.0, 8: 0.0}), activity({7: {RESNET: 0}, 8: {BERT: 0}}))
    clock.t += 1
    # The processes' CPU (1.5 s + 1.5 s) adds up to more than the host's (2 s).
    a.step(
        cpu_readings(100.0, 100.0, 2.0, {7: 1.5, 8: 1.5}),
        activity({7: {RESNET: 10**9}, 8: {BERT: 10**9}}),
    )
    energy = values(a.readings(), c.INFERENCE_ENERGY)
    assert energy == pytest.approx(
        {("resnet", "cpu", "measured"): 45.0, ("bert", "cpu", "measured"): 45.0}
    )
    parts = values(a.readings(), c.ENERGY_ATTRIBUTION)
    assert parts[("cpu", "measured", "unattributed")] == 0.0
    assert sum(parts.values()) == pytest.approx(100.0)


def test_a_process_without_inference_in_the_window_stays_unattributed():
    clock = Clock()
    a = Attribution(clock=clock, activity_window_seconds=5.0)
    a.step(cpu_readings(0.0, 10.0, 0.0, {7: 0.0}), activity({7: {RESNET: 0}}))
    clock.t += 1
    a.step(cpu_readings(100.0, 100.0, 1.0, {7: 1.0}), activity({7: {RESNET: 10**9}}))
    for i in range(2, 10):  # busy, then no inference at all, still using the CPU
        clock.t += 1
        a.step(
            cpu_readings(100.0 * i, 100.0, float(i), {7: float(i)}), activity({7: {RESNET: 10**9}})
        )
    energy = values(a.readings(), c.INFERENCE_ENERGY)[("resnet", "cpu", "measured")]
    # 90 J per interval (10 W idle of 100): attributed for the first 5 s of history only.
    assert energy == pytest.approx(5 * 90.0)
    parts = values(a.readings(), c.ENERGY_ATTRIBUTION)
    assert parts[("cpu", "measured", "unattributed")] == pytest.approx(4 * 90.0)


def test_no_fresh_energy_sample_waits_for_the_next_one():
    clock = Clock()
    a = Attribution(clock=clock)
    a.step(cpu_readings(0.0, 10.0, 0.0, {7: 0.0}), activity({7: {RESNET: 0}}))
    clock.t += 1
    # The CPU advanced but RAPL's sample is the same: nothing yet, nothing lost.
    a.step(cpu_readings(0.0, 10.0, 1.0, {7: 1.0}), activity({7: {RESNET: 10**9}}))
    assert a.readings() == []
    clock.t += 1
    a.step(cpu_readings(200.0, 100.0, 2.0, {7: 2.0}), activity({7: {RESNET: 2 * 10**9}}))
    assert values(a.readings(), c.INFERENCE_ENERGY)[("resnet", "cpu", "measured")] == 180.0


def gpu_readings(
    uuid: str, joules: float, watts: float, util: float | None, procs: dict[int, float]
) -> list[Reading]:
    g = {"gpu": uuid[-1], "uuid": uuid, "name": "H100"}
    out = [reading(c.GPU_ENERGY, joules, **g), reading(c.GPU_POWER, watts, **g)]
    if util is not None:
        out.append(reading(c.GPU_UTILIZATION, util, **g))
    for pid, u in procs.items():
        out.append(reading(c.GPU_PROCESS_UTILIZATION, u, pid=str(pid), **g))
    return out


CUDA = "CUDAExecutionProvider"


def test_gpu_energy_by_per_process_utilisation_then_by_gpu_provider_busy_time():
    clock = Clock()
    a = Attribution(clock=clock)
    busy0 = {7: {("llm", CUDA): 0, ("tokenizer", "CPUExecutionProvider"): 0}, 8: {("vit", CUDA): 0}}
    a.step(gpu_readings("GPU-0", 1000.0, 60.0, 0.0, {}), activity(busy0))  # idle: 60 W
    clock.t += 1
    busy1 = {
        7: {("llm", CUDA): 9 * 10**8, ("tokenizer", "CPUExecutionProvider"): 10**9},
        8: {("vit", CUDA): 10**8},
    }
    # 300 W for a second: 240 J above idle. NVML: the GPU busy 90%, pid 7 60%, pid 8 20%.
    a.step(gpu_readings("GPU-0", 1300.0, 300.0, 0.9, {7: 0.6, 8: 0.2}), activity(busy1))
    energy = values(a.readings(), c.INFERENCE_ENERGY)
    # The GPU's energy goes to GPU-provider series only, never to the CPU-side tokenizer.
    assert energy == pytest.approx(
        {("llm", "gpu", "measured"): 240 * 0.6 / 0.9, ("vit", "gpu", "measured"): 240 * 0.2 / 0.9}
    )
    parts = values(a.readings(), c.ENERGY_ATTRIBUTION)
    assert parts[("gpu", "measured", "idle")] == pytest.approx(60.0)
    assert parts[("gpu", "measured", "unattributed")] == pytest.approx(240 * 0.1 / 0.9)
    # No per-process utilisation: by inference busy time on the GPU provider (one GPU here).
    clock.t += 1
    busy2 = {7: {("llm", CUDA): 18 * 10**8}, 8: {("vit", CUDA): 4 * 10**8}}
    a.step(gpu_readings("GPU-0", 1600.0, 300.0, 0.9, {}), activity(busy2))
    energy = values(a.readings(), c.INFERENCE_ENERGY)
    # Window busy: llm 1.8 s, vit 0.4 s in total; llm's share is 18/22.
    assert energy[("llm", "gpu", "measured")] == pytest.approx(160.0 + 240 * 18 / 22)
    parts = values(a.readings(), c.ENERGY_ATTRIBUTION)
    assert sum(parts.values()) == pytest.approx(600.0)


def test_with_several_gpus_and_no_process_data_the_gpu_energy_stays_unattributed():
    clock = Clock()
    a = Attribution(clock=clock)
    busy = {7: {("llm", CUDA): 0}}
    a.step(
        gpu_readings("GPU-0", 0.0, 50.0, 0.0, {}) + gpu_readings("GPU-1", 0.0, 50.0, 0.0, {}),
        activity(busy),
    )
    clock.t += 1
    busy = {7: {("llm", CUDA): 10**9}}
    a.step(
        gpu_readings("GPU-0", 100.0, 100.0, 1.0, {}) + gpu_readings("GPU-1", 100.0, 100.0, 1.0, {}),
        activity(busy),
    )
    assert values(a.readings(), c.INFERENCE_ENERGY) == {}
    parts = values(a.readings(), c.ENERGY_ATTRIBUTION)
    assert parts[("gpu", "measured", "unattributed")] == pytest.approx(100.0)  # 50 J each


def test_window_gauges_are_absent_without_inferences_or_energy():
    clock = Clock()
    a = Attribution(clock=clock, window_seconds=10.0)
    models = {"resnet": ModelTotals(0, 0, 0, None)}
    a.step(cpu_readings(0.0, 10.0, 0.0, {7: 0.0}), Activity({7: (1, {RESNET: 0})}, models))
    clock.t += 1
    a.step(cpu_readings(100.0, 100.0, 1.0, {7: 1.0}), Activity({7: (1, {RESNET: 10**9})}, models))
    # Energy attributed, but no inference finished in the window: joules per inference unknown.
    out = a.readings()
    assert values(out, c.INFERENCE_ENERGY)
    assert values(out, c.ENERGY_PER_INFERENCE) == {}
    assert values(out, c.INFERENCES_PER_JOULE) == {}


def test_activity_from_a_merge_sums_counts_and_keeps_flops(tmp_path):
    host = Host(tmp_path)
    host.procs[1234].flops[RESNET] = 1e9
    host.step(*LOAD_W, busy_cpu=2.0, procs=LOAD)
    col = InferenceCollector(host.mdir, host.procfs)
    list(col.collect())
    act = activity_from(col.latest)
    assert act is not None
    assert act.models["resnet"] == ModelTotals(100, 100, 0, 1e9)
    assert act.processes[1234] == (host.procs[1234].start, {RESNET: 6 * 10**8, BERT: 2 * 10**8})
    assert activity_from(None) is None


# --- the daemon ---------------------------------------------------------------------------------


def test_the_daemon_feeds_its_collectors_and_serves_the_attribution(tmp_path):
    """Daemon wiring, without threads: its own collectors' readings and its inference collector's
    busy time go into its attribution; /metrics readings carry the result; a reload's idle watts
    and window reach it."""
    from dataclasses import replace

    from ortel.exporter.config import OPTIONS, build_settings
    from ortel.exporter.daemon import Daemon

    host = Host(tmp_path)
    params = {o.name: o.default for o in OPTIONS} | {
        "listen": "127.0.0.1:0",
        "collectors": "cpu,process,inference,rapl",
        "procfs": host.procfs,
        "sysfs": host.sysfs,
        "multiproc_dir": host.mdir,
    }
    daemon = Daemon(build_settings(params))
    try:

        def sample() -> list[Reading]:
            readings = [r for col in daemon.collectors for r in col.collect()]
            daemon.attribution.step(readings, daemon._activity())
            return daemon.readings()

        sample()
        for i in range(12):
            phase(host, load=i >= 2)
            out = sample()
        # The daemon's RAPL collector times samples with the real clock, so idle is not the
        # scenario's; the split still adds up to what RAPL measured, and the models get a share.
        parts = values(out, c.ENERGY_ATTRIBUTION)
        assert sum(parts.values()) == pytest.approx(host.measured_joules(), rel=1e-9)
        energy = values(out, c.INFERENCE_ENERGY)
        assert energy[("resnet", "cpu", "measured")] > 0
        assert parts[("cpu", "measured", "attributed")] == pytest.approx(sum(energy.values()))
        new = build_settings(params | {"cpu_idle_watts": 2.0, "window": 30.0})
        daemon.apply(replace(new, host=daemon.settings.host, port=daemon.settings.port))
        assert (daemon.attribution.cpu_idle_watts, daemon.attribution.window_seconds) == (2.0, 30)
    finally:
        daemon.server.server_close()
        daemon.sampler.stop()


def scrape(url: str) -> dict[str, float]:
    status, _, body = http_get(f"{url}/metrics")
    assert status == 200
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


@pytest.mark.slow
def test_ortel_serve_demo_shows_joules_per_inference_adding_up():
    """What a user sees: ``ortel serve --demo`` (the estimate on this VM, or RAPL where readable)
    exports joules per inference and inferences per joule for the demo model, and the attributed
    energy is a part of what the host counters measured."""
    with OrtelServe("--demo", "--interval", "0.5", "--window", "5") as url:
        deadline = time.monotonic() + 60
        while True:
            m = scrape(url)
            epi = [k for k in m if k.startswith(c.ENERGY_PER_INFERENCE.name + '{model="demo_mlp"')]
            if epi or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert epi, "no joules per inference within 60 s"
    source = "estimated" if 'source="estimated"' in epi[0] else "measured"
    assert m[epi[0]] > 0
    ipj = f'{c.INFERENCES_PER_JOULE.name}{{model="demo_mlp",source="{source}"}}'
    assert m[ipj] == pytest.approx(1 / m[epi[0]])
    attributed = sum(v for k, v in m.items() if k.startswith(c.INFERENCE_ENERGY.name + "{"))
    parts = {k: v for k, v in m.items() if k.startswith(c.ENERGY_ATTRIBUTION.name + "{")}
    part = lambda p: sum(v for k, v in parts.items() if f'part="{p}"' in k)  # noqa: E731
    assert attributed == pytest.approx(part("attributed"))
    assert attributed > 0 and part("idle") > 0
    # The parts add up to the counters' increase since the first interval: at most their total.
    if source == "estimated":
        host = m[f'{c.ENERGY.name}{{device="cpu",source="estimated",zone="package"}}']
        assert sum(parts.values()) <= host * (1 + 1e-9)
    assert all(math.isfinite(v) for v in parts.values())
