"""The ONNX Runtime profile scanner: a Chrome trace JSON file, one event at a time.

ONNX Runtime writes one JSON array of events, one event per line. Files reach gigabytes
(onnxruntime#16334), so ``iter_events`` scans the file in chunks with
``json.JSONDecoder.raw_decode``: memory is one chunk plus one event, whatever the file size, and
it is several times faster than ``json.load`` on large files (no giant list of dicts for the
garbage collector to walk; see ``benchmarks/trace_parse.py``). A truncated file yields every
complete event and says so; a garbled event is skipped (the scan resynchronises at the next line
starting with ``{``) and counted. Shared by ``ortel analyze`` (analysis/trace.py aggregates what
it yields) and the shim's operator sampler.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

CHUNK_CHARS = 1 << 20
MAX_EVENT_CHARS = 8 << 20  # an "event" longer than this is garbage, not an event
KERNEL_SUFFIX = "_kernel_time"
_RESYNC = re.compile(r"\n\s*\{")


class TraceError(ValueError):
    """The file is not an ONNX Runtime / Chrome trace at all."""


@dataclass
class ScanReport:
    """What the scanner had to tolerate."""

    chars: int = 0
    events: int = 0
    truncated: bool = False  # ended inside an event or before the closing bracket
    garbled: int = 0  # stretches skipped because they did not parse

    def warnings(self, path: str = "trace") -> list[str]:
        out = []
        if self.truncated:
            out.append(
                f"{path}: truncated; parsed the {self.events} complete events before the cut"
            )
        if self.garbled:
            out.append(f"{path}: skipped {self.garbled} unparseable stretch(es)")
        return out


def _chunks(fh: IO[bytes], size: int) -> Iterator[str]:
    dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while True:
        b = fh.read(size)
        if not b:
            tail = dec.decode(b"", final=True)
            if tail:
                yield tail
            return
        yield dec.decode(b)


def iter_events(
    source: str | Path | IO[bytes], report: ScanReport | None = None, chunk: int = CHUNK_CHARS
) -> Iterator[dict[str, Any]]:
    """Every event (a dict) of a trace file, streamed. ``report`` collects what was tolerated."""
    report = report if report is not None else ScanReport()
    if isinstance(source, str | Path):
        with open(source, "rb") as fh:
            yield from _scan(_chunks(fh, chunk), report)
    else:
        yield from _scan(_chunks(source, chunk), report)


def _scan(chunks: Iterator[str], report: ScanReport) -> Iterator[dict[str, Any]]:
    raw = json.JSONDecoder().raw_decode
    buf, pos, eof = "", 0, False

    def more() -> bool:
        nonlocal buf, pos, eof
        if eof:
            return False
        try:
            c = next(chunks)
        except StopIteration:
            eof = True
            return False
        report.chars += len(c)
        buf = buf[pos:] + c
        pos = 0
        return True

    # The header: "[" (ORT), or {"traceEvents": [ ... ]} (the Chrome object form).
    while len(buf) < 64 and more():
        pass
    head = buf.lstrip("\ufeff \t\r\n")
    if not head:
        raise TraceError("empty file")
    if head[0] == "{":
        while '"traceEvents"' not in buf and len(buf) < MAX_EVENT_CHARS and more():
            pass
        k = buf.find('"traceEvents"')
        if k < 0:
            raise TraceError("not a trace: a JSON object without traceEvents")
        while buf.find("[", k) < 0 and more():
            pass
        pos = buf.find("[", k) + 1
        if pos == 0:
            report.truncated = True
            return
    elif head[0] == "[":
        pos = buf.find("[") + 1
    else:
        raise TraceError("not a trace: expected a JSON array of events")
    closed = False
    while True:
        i = buf.find("{", pos)
        if i < 0:
            if "]" in buf[pos:]:
                closed = True
                break
            keep = buf[pos:]
            if keep.strip(" \t\r\n,"):
                report.garbled += 1
            pos = len(buf)
            if not more():
                break
            continue
        gap = buf[pos:i]
        if gap.strip(" \t\r\n,"):
            if "]" in gap:  # the array ended; whatever follows is not ours
                closed = True
                break
            report.garbled += 1
        try:
            obj, end = raw(buf, i)
        except json.JSONDecodeError:
            # ORT writes one event per line: if another line starts an event further on, this
            # one is garbled (skip to it); otherwise it is cut by the chunk or by the file's end.
            m = _RESYNC.search(buf, i + 1)
            if m is None and len(buf) - i < MAX_EVENT_CHARS and more():
                continue
            if m is None:
                if eof:
                    report.truncated = True
                    break
                m_end = len(buf)  # an enormous garbled stretch: drop it
            else:
                m_end = m.end() - 1
            report.garbled += 1
            pos = m_end
            continue
        pos = end
        if isinstance(obj, dict):
            report.events += 1
            yield obj
        else:
            report.garbled += 1
    if not closed:
        report.truncated = True
