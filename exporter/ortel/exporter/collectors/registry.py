"""Every collector the daemon knows, with whether it runs by default.

The CLI's --collectors / --disable-collectors choices and the docs are generated from this list.
"""

from __future__ import annotations

from . import cpu, inference, memory, process
from .base import CollectorSpec

SPECS: tuple[CollectorSpec, ...] = (cpu.SPEC, memory.SPEC, process.SPEC, inference.SPEC)
BY_NAME: dict[str, CollectorSpec] = {s.name: s for s in SPECS}
