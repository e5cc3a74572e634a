"""Process memory during a configuration: peak resident set size.

Linux keeps the peak (VmHWM in /proc/self/status) and lets a process reset it by writing "5" to
/proc/self/clear_refs, so each configuration gets its own peak. Where the reset is refused the
peak is the process's since it started, and says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_FIELD = re.compile(rb"^(VmHWM|VmRSS):\s+(\d+)\s*kB", re.MULTILINE)


@dataclass(frozen=True)
class Peak:
    bytes: int | None  # None: unknown on this system
    since_reset: bool  # False: the peak since the process started


class PeakRss:
    def __init__(self, procfs: Path = Path("/proc")) -> None:
        self.procfs = Path(procfs)
        self._reset_ok = False

    def _status(self) -> dict[str, int]:
        try:
            raw = (self.procfs / "self" / "status").read_bytes()
        except OSError:
            return {}
        return {m.group(1).decode(): int(m.group(2)) * 1024 for m in _FIELD.finditer(raw)}

    def reset(self) -> bool:
        """Start a new peak; False where the kernel or the sandbox does not allow it."""
        try:
            (self.procfs / "self" / "clear_refs").write_text("5")
        except OSError:
            self._reset_ok = False
            return False
        # Some kernels and sandboxes accept the write and ignore it: right after a real reset the
        # peak equals the current RSS, so believe the reset only when the kernel shows it.
        st = self._status()
        hwm, rss = st.get("VmHWM"), st.get("VmRSS")
        self._reset_ok = hwm is None or rss is None or hwm <= rss + 8 * 1024 * 1024
        return self._reset_ok

    def current(self) -> int | None:
        return self._status().get("VmRSS")

    def peak(self) -> Peak:
        hwm = self._status().get("VmHWM")
        if hwm is not None:
            return Peak(hwm, self._reset_ok)
        try:  # not Linux: getrusage's peak since start (kilobytes on Linux, bytes on macOS)
            import resource
            import sys

            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            return Peak(rss if sys.platform == "darwin" else rss * 1024, False)
        except (ImportError, OSError):
            return Peak(None, False)
