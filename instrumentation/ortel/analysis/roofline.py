"""The roofline model (Williams, Waterman, Patterson, CACM 52(4), 2009) applied per node.

Attainable FLOP/s = min(peak FLOP/s, arithmetic intensity × memory bandwidth); a node whose
intensity (FLOPs per byte moved) is below the ridge point ``peak / bandwidth`` is memory bound,
above it compute bound. Achieved FLOP/s is the node's FLOPs over its measured time, so
``pct_of_roof`` says how far the kernel is from what the host allows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Roof:
    peak_flops: float  # FLOP/s
    mem_bw: float  # bytes/s
    source: str = "given"  # given | measured | cached

    @property
    def ridge(self) -> float:
        """Arithmetic intensity (FLOP/byte) where the memory roof meets the compute roof."""
        return self.peak_flops / self.mem_bw


@dataclass(frozen=True)
class Point:
    arithmetic_intensity: float | None  # FLOP/byte
    attainable_flops: float | None  # FLOP/s
    achieved_flops: float | None  # FLOP/s
    pct_of_roof: float | None  # achieved / attainable, in percent
    bound: str  # compute | memory | unknown


def place(flops: int | None, bytes_moved: int | None, seconds: float | None, roof: Roof) -> Point:
    """Where one node sits. ``flops`` and ``bytes_moved`` for one run, ``seconds`` its time in
    that run. A node that moves bytes but does no arithmetic is memory bound (intensity 0)."""
    if flops is None or bytes_moved is None:
        return Point(None, None, None, None, "unknown")
    ai = flops / bytes_moved if bytes_moved > 0 else (float("inf") if flops > 0 else None)
    if ai is None:
        return Point(None, None, None, None, "unknown")
    attainable = min(roof.peak_flops, ai * roof.mem_bw)
    achieved = flops / seconds if seconds and seconds > 0 else None
    pct = 100.0 * achieved / attainable if achieved is not None and attainable > 0 else None
    bound = "compute" if ai >= roof.ridge else "memory"
    return Point(ai, attainable, achieved, pct, bound)
