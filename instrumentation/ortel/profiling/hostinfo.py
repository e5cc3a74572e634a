"""Where a run happened: host, CPU model, cores, OS, library versions. Stored with every run so
results from different machines are never compared unknowingly."""

from __future__ import annotations

import os
import platform
import socket
import sys
from importlib import metadata
from pathlib import Path


def cpu_model(procfs: Path = Path("/proc")) -> str:
    try:
        for line in (Path(procfs) / "cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if (
                key.strip() in ("model name", "Hardware", "Processor", "cpu model")
                and value.strip()
            ):
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def host_info(procfs: Path = Path("/proc")) -> dict[str, object]:
    ort = "unknown"
    for dist in ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"):
        if (v := _version(dist)) != "unknown":
            ort = v
            break
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count() or 0
    return {
        "host": socket.gethostname(),
        "cpu_model": cpu_model(procfs),
        "cores": os.cpu_count() or 0,
        "usable_cores": affinity,
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "onnxruntime_version": ort,
        "ortel_version": _version("ortel"),
        "numpy_version": _version("numpy"),
    }
