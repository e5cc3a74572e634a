"""Offload candidates and what an accelerator would buy, by Amdahl's law.

A chain is a node, or a fusable chain (a Conv/Gemm/MatMul/attention node followed by the
element-wise and normalisation nodes that only it feeds: the epilogue an accelerator runs in the
same kernel). A chain is *eligible* when it is

- **regular**: its head is a convolution, matrix product, attention or RNN (dense, static loops
  an accelerator maps well),
- **intense**: at least ``min_intensity`` FLOPs per byte moved, so a faster compute engine is not
  simply starved by memory;

and a *candidate* (listed one by one) when it is also **big**: at least ``threshold`` of the
measured latency or of the energy. The *chosen set* is every eligible chain (an accelerator runs
all the convolutions, not only the big ones); groups by op type show what each kind buys.

With a kernel speedup ``S`` on a fraction ``f`` of the time, Amdahl's law gives the end-to-end
speedup ``1 / ((1 − f) + f / S)``; energy the same way with the candidate's share of energy
(assuming the accelerator draws the host's power while it runs, so the kernel's energy also
shrinks by ``S``). Both are computed per candidate and for the chosen set (all candidates, which
never overlap), over the serial sum of node times (launch overhead and gaps stay as they are).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


class RowLike(Protocol):
    key: str
    op_type: str
    family: str
    time_us: float | None
    energy_j: float | None
    flops: float | None
    bytes_total: float | None
    activation_bytes_read: float | None
    weight_bytes_read: float | None
    bytes_written: float | None


@dataclass
class Candidate:
    nodes: list[str]
    op_types: list[str]
    time_us: float
    energy_j: float | None
    flops: float
    bytes_moved: float
    share_time: float
    share_energy: float | None
    arithmetic_intensity: float
    speedup_latency: float
    speedup_energy: float | None

    @property
    def name(self) -> str:
        return (
            self.nodes[0] if len(self.nodes) == 1 else f"{self.nodes[0]} (+{len(self.nodes) - 1})"
        )


@dataclass
class Group:
    """Every eligible chain whose head has one op type: what offloading that op type buys."""

    op_type: str
    chains: int
    time_us: float
    share_time: float
    share_energy: float | None
    arithmetic_intensity: float
    speedup_latency: float
    speedup_energy: float | None


@dataclass
class OffloadResult:
    candidates: list[Candidate]  # eligible and big: listed one by one
    groups: list[Group]  # eligible chains by head op type
    accel_speedup: float
    threshold: float
    min_intensity: float
    eligible: int = 0  # regular and intense chains, whatever their size: the chosen set
    set_share_time: float = 0.0
    set_share_energy: float | None = None
    set_speedup_latency: float = 1.0
    set_speedup_energy: float | None = None
    notes: list[str] = field(default_factory=list)


def amdahl(fraction: float, speedup: float) -> float:
    fraction = min(max(fraction, 0.0), 1.0)
    return 1.0 / ((1.0 - fraction) + fraction / speedup)


REGULAR = ("conv", "matmul", "attention", "rnn")
EPILOGUE = ("elementwise", "normalization")


def chains(rows: Sequence[RowLike], successors: dict[str, list[str]], preds: dict[str, int]):
    """Group rows into fusable chains: a regular head plus the element-wise and normalisation
    nodes it alone feeds, each of which has it (or the previous one) as only data predecessor."""
    by_key = {r.key: r for r in rows}
    used: set[str] = set()
    out: list[list[RowLike]] = []
    for r in rows:
        if r.key in used:
            continue
        chain = [r]
        used.add(r.key)
        if r.family in REGULAR:
            cur = r
            while True:
                nxt = successors.get(cur.key, [])
                if len(nxt) != 1 or nxt[0] not in by_key or nxt[0] in used:
                    break
                cand = by_key[nxt[0]]
                if cand.family not in EPILOGUE or preds.get(cand.key, 0) != 1:
                    break
                chain.append(cand)
                used.add(cand.key)
                cur = cand
        out.append(chain)
    return out


def find(
    rows: Sequence[RowLike],
    successors: dict[str, list[str]],
    preds: dict[str, int],
    serial_us: float,
    total_energy_j: float | None,
    accel_speedup: float = 10.0,
    threshold: float = 0.05,
    min_intensity: float = 8.0,
) -> OffloadResult:
    """Candidates (eligible chains of at least ``threshold`` of latency or energy), groups by
    op type, and the chosen set: every eligible chain."""
    res = OffloadResult([], [], accel_speedup, threshold, min_intensity)
    if serial_us <= 0:
        res.notes.append("no measured node time: nothing to offload")
        return res
    eligible: list[Candidate] = []
    for chain in chains(rows, successors, preds):
        head = chain[0]
        if head.family not in REGULAR:
            continue
        flops = [r.flops for r in chain]
        # A fused chain reads the head's inputs and every member's weights and writes the
        # tail's outputs: the intermediate tensors never leave the accelerator.
        parts = [head.activation_bytes_read, chain[-1].bytes_written]
        parts += [r.weight_bytes_read for r in chain]
        if any(f is None for f in flops) or any(p is None for p in parts):
            res.notes.append(f"{head.key}: cost unknown, not considered")
            continue
        total_flops = float(sum(flops))  # type: ignore[arg-type]
        moved = float(sum(parts))  # type: ignore[arg-type]
        ai = total_flops / moved if moved > 0 else float("inf")
        if ai < min_intensity:
            continue
        t = sum(r.time_us or 0.0 for r in chain)
        energies = [r.energy_j for r in chain]
        e = None if any(x is None for x in energies) else float(sum(energies))  # type: ignore
        share_t = t / serial_us
        share_e = e / total_energy_j if e is not None and total_energy_j else None
        eligible.append(
            Candidate(
                [r.key for r in chain],
                [r.op_type for r in chain],
                t,
                e,
                total_flops,
                moved,
                share_t,
                share_e,
                ai,
                amdahl(share_t, accel_speedup),
                None if share_e is None else amdahl(share_e, accel_speedup),
            )
        )
    res.eligible = len(eligible)
    res.candidates = sorted(
        (c for c in eligible if c.share_time >= threshold or (c.share_energy or 0.0) >= threshold),
        key=lambda c: -c.time_us,
    )
    by_type: dict[str, list[Candidate]] = {}
    for c in eligible:
        by_type.setdefault(c.op_types[0], []).append(c)
    for op, cs in by_type.items():
        share_t = sum(c.share_time for c in cs)
        energies = [c.share_energy for c in cs]
        share_e = None if any(x is None for x in energies) else sum(energies)  # type: ignore
        moved = sum(c.bytes_moved for c in cs)
        res.groups.append(
            Group(
                op,
                len(cs),
                sum(c.time_us for c in cs),
                share_t,
                share_e,
                sum(c.flops for c in cs) / moved if moved > 0 else float("inf"),
                amdahl(share_t, accel_speedup),
                None if share_e is None else amdahl(share_e, accel_speedup),
            )
        )
    res.groups.sort(key=lambda g: -g.time_us)
    if eligible:
        res.set_share_time = sum(c.share_time for c in eligible)
        res.set_speedup_latency = amdahl(res.set_share_time, accel_speedup)
        if all(c.share_energy is not None for c in eligible):
            res.set_share_energy = sum(c.share_energy or 0.0 for c in eligible)
            res.set_speedup_energy = amdahl(res.set_share_energy, accel_speedup)
    return res
