"""The host's roofs: peak FLOP/s and memory bandwidth, measured once and cached per host.

- **Peak FLOP/s**: the best of repeated float32 ``n x n`` matrix products through numpy's BLAS
  (all cores, ``2 n³`` FLOPs each). What a tuned GEMM reaches here, which is the roof inference
  kernels compete against (the vendor's theoretical peak is rarely reachable).
- **Memory bandwidth**: a STREAM-triad-like kernel (McCalpin, "Memory Bandwidth and Machine
  Balance", IEEE TCCA newsletter 1995): ``a = b + s·c`` over arrays four times the last-level
  cache, one slice per thread. numpy evaluates it in two passes (``a = s·c``, ``a += b``), which
  move 40 bytes per element; that is what is counted (STREAM would count 24 for one fused pass).

Results are cached in ``$XDG_CACHE_HOME/ortel/hostinfo.json`` (``~/.cache`` by default;
``--cache``/``ORTEL_HOSTINFO_CACHE`` to move it), keyed by host name, CPU model and CPU count, so a
different machine (or a resized VM) measures again.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CACHE_ENV = "ORTEL_HOSTINFO_CACHE"
DEFAULT_LLC_BYTES = 32 << 20
MIN_TRIAD_BYTES = 64 << 20  # per array, all threads together

Progress = Callable[[str, float], None]  # (what, fraction done)


@dataclass
class HostInfo:
    peak_flops: float  # FLOP/s, float32 GEMM
    mem_bw: float  # bytes/s, triad
    gemm_n: int
    triad_bytes: int  # per array
    threads: int
    cpu_model: str
    logical_cpus: int
    hostname: str
    numpy: str
    measured_at: float

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.hostname, self.cpu_model, self.logical_cpus)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> HostInfo:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def fingerprint_of(hostname: str, cpu_model: str, cpus: int) -> str:
    return f"{hostname}|{cpu_model}|{cpus}"


def cpu_model(procfs: Path = Path("/proc")) -> str:
    try:
        for line in (procfs / "cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def llc_bytes(sysfs: Path = Path("/sys")) -> int:
    """Largest cache of cpu0 (sysfs ``cache/index*/size``), or 32 MiB if unknown."""
    best = 0
    base = sysfs / "devices/system/cpu/cpu0/cache"
    try:
        entries = list(base.glob("index*/size"))
    except OSError:
        entries = []
    for p in entries:
        try:
            txt = p.read_text().strip().upper()
        except OSError:
            continue
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(txt[-1:], 1)
        try:
            best = max(best, int(txt.rstrip("KMG")) * mult)
        except ValueError:
            continue
    return best or DEFAULT_LLC_BYTES


def measure_gemm(n: int = 2048, seconds: float = 0.6, progress: Progress | None = None) -> float:
    """Best float32 GEMM rate (FLOP/s) over ``seconds``; ``n`` shrinks on a slow machine."""
    import numpy as np

    rng = np.random.default_rng(0)
    while True:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        c = np.empty_like(a)
        t = time.perf_counter()
        np.matmul(a, b, out=c)  # warm-up: thread pool start, page faults
        if time.perf_counter() - t < 1.0 or n <= 256:
            break
        n //= 2
    best = 0.0
    start = time.perf_counter()
    while True:
        t = time.perf_counter()
        np.matmul(a, b, out=c)
        dt = time.perf_counter() - t
        best = max(best, 2.0 * n**3 / dt)
        done = time.perf_counter() - start
        if progress:
            progress("GEMM", min(done / seconds, 1.0))
        if done >= seconds:
            return best


def measure_triad(
    array_bytes: int, threads: int, seconds: float = 0.6, progress: Progress | None = None
) -> float:
    """Triad bandwidth (bytes/s) with ``threads`` threads each on its slice of the arrays."""
    import numpy as np

    per = max(array_bytes // 8 // threads, 1 << 16)
    # np.full writes every page now (np.zeros would only map them: faults during the timing).
    slices = [(np.full(per, 0.5), np.full(per, 1.0), np.full(per, 2.0)) for _ in range(threads)]
    scalar = 3.0
    reps = 3
    barrier = threading.Barrier(threads + 1)

    def work(a: Any, b: Any, c: Any) -> None:
        barrier.wait()
        for _ in range(reps):
            np.multiply(c, scalar, out=a)
            np.add(a, b, out=a)
        barrier.wait()

    best = 0.0
    start = time.perf_counter()
    warm = True
    while True:
        ts = [threading.Thread(target=work, args=s, daemon=True) for s in slices]
        for t in ts:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        barrier.wait()
        dt = time.perf_counter() - t0
        for t in ts:
            t.join()
        moved = 40.0 * per * threads * reps  # two passes: read c, write a; read a, b, write a
        if not warm:
            best = max(best, moved / dt)
        warm = False
        done = time.perf_counter() - start
        if progress:
            progress("triad", min(done / seconds, 1.0))
        if done >= seconds and best > 0:  # at least one timed trial after the warm one
            return best


def measure(
    procfs: Path = Path("/proc"),
    sysfs: Path = Path("/sys"),
    threads: int | None = None,
    progress: Progress | None = None,
    seconds: float = 0.6,
) -> HostInfo:
    import numpy as np

    cpus = os.cpu_count() or 1
    threads = threads or cpus
    array_bytes = max(4 * llc_bytes(sysfs), MIN_TRIAD_BYTES)
    flops = measure_gemm(seconds=seconds, progress=progress)
    bw = measure_triad(array_bytes, threads, seconds=seconds, progress=progress)
    return HostInfo(
        peak_flops=flops,
        mem_bw=bw,
        gemm_n=2048,
        triad_bytes=array_bytes,
        threads=threads,
        cpu_model=cpu_model(procfs),
        logical_cpus=cpus,
        hostname=socket.gethostname(),
        numpy=np.__version__,
        measured_at=time.time(),
    )


def default_cache_path() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ortel" / "hostinfo.json"


class HostInfoCache:
    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else default_cache_path()

    def _load(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def get(self, fp: str) -> HostInfo | None:
        d = self._load().get(fp)
        if not isinstance(d, dict):
            return None
        try:
            info = HostInfo.from_json(d)
        except (KeyError, TypeError):
            return None
        if not (info.peak_flops > 0 and info.mem_bw > 0):
            return None
        return info

    def put(self, info: HostInfo) -> None:
        doc = self._load()
        doc[info.fingerprint] = info.to_json()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(doc, indent=2) + "\n")
            os.replace(tmp, self.path)
        except OSError:  # a read-only home: measuring again next time is the only cost
            pass


def host_info(
    cache: HostInfoCache | None = None,
    refresh: bool = False,
    procfs: Path = Path("/proc"),
    sysfs: Path = Path("/sys"),
    progress: Progress | None = None,
) -> tuple[HostInfo, str]:
    """(info, "cached" | "measured")."""
    cache = cache or HostInfoCache()
    fp = fingerprint_of(socket.gethostname(), cpu_model(procfs), os.cpu_count() or 1)
    if not refresh and (hit := cache.get(fp)) is not None:
        return hit, "cached"
    info = measure(procfs, sysfs, progress=progress)
    cache.put(info)
    return info, "measured"
