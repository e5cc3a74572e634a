"""Apple Silicon CPU, GPU and Neural Engine power from macOS ``powermetrics``.

Runs ``powermetrics --samplers cpu_power,gpu_power,ane_power -f plist -i <interval ms>`` once, as
a long-lived child, and reads its stream: one XML property list per sample, samples separated by
a NUL byte. Each sample holds the power averaged over its own window (``elapsed_ns``), and the
windows follow each other without gaps, so energy is the sum of power × window. powermetrics needs
root (``sudo ortel serve``); without it, it prints "must be invoked as the superuser" and exits,
which this collector reports as "no data" with that line.

Keys (macOS 13+): ``processor.{cpu,gpu,ane}_power`` in mW. macOS 12 had only
``processor.{cpu,gpu,ane}_energy`` in mJ per window; both are read.
"""

from __future__ import annotations

import plistlib
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

from ortel.core import catalog
from ortel.core.readings import Reading, reading

from .base import Collector, CollectorSpec, NoDataError

SAMPLERS = "cpu_power,gpu_power,ane_power"
COMPONENTS = ("cpu", "gpu", "ane")


class PowermetricsExited(Exception):
    """The powermetrics process ended; the message is its last stderr line and exit code."""


@dataclass(frozen=True)
class Sample:
    elapsed_s: float
    watts: dict[str, float]  # component -> average power over the window


def split_documents(stream: IO[bytes], chunk: int = 65536) -> Iterator[bytes]:
    """Plist documents from a powermetrics stream, each as soon as its ``</plist>`` arrives.

    Samples are NUL-separated, but the NUL only comes with the next sample: splitting on it would
    hold every sample back by one interval.
    """
    end = b"</plist>"
    buf = b""
    while data := stream.read1(chunk) if hasattr(stream, "read1") else stream.read(chunk):
        buf += data
        while (i := buf.find(end)) >= 0:
            doc, buf = buf[: i + len(end)].lstrip(b"\0 \t\r\n"), buf[i + len(end) :]
            yield doc
    if buf.strip(b"\0 \t\r\n"):
        yield buf.lstrip(b"\0 \t\r\n")  # a truncated last document: parse_sample rejects it


def parse_sample(doc: bytes) -> Sample:
    """One powermetrics plist sample; raises ValueError when it holds no power figures."""
    try:
        data = plistlib.loads(doc.strip())
    except Exception as e:  # plistlib raises several types for a bad document
        raise ValueError(f"powermetrics: not a plist sample: {e}") from None
    if not isinstance(data, dict):
        raise ValueError("powermetrics: sample is not a dictionary")
    elapsed_ns = data.get("elapsed_ns")
    if not isinstance(elapsed_ns, int) or elapsed_ns <= 0:
        raise ValueError("powermetrics: sample has no elapsed_ns")
    elapsed = elapsed_ns / 1e9
    processor = data.get("processor")
    processor = processor if isinstance(processor, dict) else {}
    gpu = data.get("gpu")
    gpu = gpu if isinstance(gpu, dict) else {}
    watts: dict[str, float] = {}
    for comp in COMPONENTS:
        # Some releases put the GPU's figures in the gpu dictionary instead of processor.
        for where in (processor, gpu) if comp == "gpu" else (processor,):
            mw, mj = where.get(f"{comp}_power"), where.get(f"{comp}_energy")
            if isinstance(mw, int | float):
                watts[comp] = mw / 1000.0
                break
            if isinstance(mj, int | float):
                watts[comp] = mj / 1000.0 / elapsed
                break
    if not watts:
        raise ValueError("powermetrics: no cpu/gpu/ane power in the sample (not Apple Silicon?)")
    return Sample(elapsed, watts)


class PowermetricsProcess:
    """The default runner: powermetrics as a child; iterating yields its plist documents until
    it exits, then raises PowermetricsExited with its exit code and last stderr line."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def __iter__(self) -> Iterator[bytes]:
        proc = self.proc
        assert proc.stdout is not None and proc.stderr is not None
        try:
            yield from split_documents(proc.stdout)
        finally:
            self.stop()
            err = proc.stderr.read().decode(errors="replace").strip()
            code = proc.wait()
        last = err.splitlines()[-1] if err else "no message"
        raise PowermetricsExited(f"powermetrics exited with code {code}: {last}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()


Runner = Callable[[list[str]], Iterable[bytes]]


@dataclass
class _Stream:
    """What the reader thread shares with collect()."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    first: threading.Event = field(default_factory=threading.Event)
    latest: Sample | None = None
    joules: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    bad: str | None = None  # last unparseable sample's error
    ended: str | None = None  # why the stream ended


class PowermetricsCollector(Collector):
    name = "powermetrics"

    def __init__(
        self,
        interval: float = 1.0,
        runner: Runner = PowermetricsProcess,
        command: str = "powermetrics",
        which: Callable[[str], str | None] = shutil.which,
        first_sample_timeout: float | None = None,
    ) -> None:
        self.interval = interval
        self.runner = runner
        self.command = command
        self.which = which
        self.first_sample_timeout = (
            first_sample_timeout if first_sample_timeout is not None else interval + 2.0
        )
        self._stream: _Stream | None = None
        self._thread: threading.Thread | None = None
        self._docs: Iterable[bytes] | None = None
        self._joules: dict[str, float] = {}  # carried over when powermetrics is restarted

    def argv(self, exe: str) -> list[str]:
        ms = max(int(self.interval * 1000), 1)
        return [exe, "--samplers", SAMPLERS, "-f", "plist", "-i", str(ms)]

    def _pump(self, stream: _Stream, docs: Iterable[bytes]) -> None:
        try:
            for doc in docs:
                try:
                    sample = parse_sample(doc)
                except ValueError as e:
                    with stream.lock:
                        stream.bad = str(e)
                    continue
                with stream.lock:
                    for comp, w in sample.watts.items():
                        stream.joules[comp] = stream.joules.get(comp, 0.0) + w * sample.elapsed_s
                    stream.latest = sample
                    stream.samples += 1
                stream.first.set()
            reason = "powermetrics output ended"
        except Exception as e:  # the runner's own error (exit code, stderr) is the reason
            reason = str(e) or type(e).__name__
        with stream.lock:
            stream.ended = reason
        stream.first.set()

    def start(self) -> None:
        exe = self.which(self.command)
        if exe is None:
            raise NoDataError(f"{self.command} not found (macOS only)")
        stream = _Stream(joules=dict(self._joules))
        docs = self._docs = self.runner(self.argv(exe))
        t = threading.Thread(
            target=self._pump, args=(stream, docs), name="ortel-powermetrics", daemon=True
        )
        self._stream, self._thread = stream, t
        t.start()

    def close(self) -> None:
        """Stop powermetrics (the daemon calls this at shutdown)."""
        stop = getattr(self._docs, "stop", None)
        if stop is not None:
            stop()
        self.join(5.0)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the reader to finish (tests; a live powermetrics never finishes)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def collect(self) -> Iterator[Reading]:
        if self._stream is None:
            self.start()
        stream = self._stream
        assert stream is not None
        stream.first.wait(self.first_sample_timeout)
        with stream.lock:
            latest, joules, samples = stream.latest, dict(stream.joules), stream.samples
            ended, bad = stream.ended, stream.bad
        self._joules = joules
        if ended is not None:
            self._stream = None  # the next sample starts powermetrics again
            if samples == 0:
                hint = "; run ortel serve as root (sudo)" if "superuser" in ended else ""
                raise NoDataError(f"{ended}{'; ' + bad if bad else ''}{hint}")
            raise RuntimeError(ended)
        if latest is None:
            if bad is not None:
                raise ValueError(bad)
            raise NoDataError(f"no powermetrics sample within {self.first_sample_timeout:g} s")
        out: list[Reading] = []
        for comp in COMPONENTS:
            labels = {"source": "powermetrics", "device": "soc", "zone": comp}
            if comp in latest.watts:
                out.append(reading(catalog.POWER, latest.watts[comp], **labels))
            if comp in joules:
                out.append(reading(catalog.ENERGY, joules[comp], **labels))
        yield from out


SPEC = CollectorSpec(
    name="powermetrics",
    enabled_by_default=True,
    factory=lambda o: PowermetricsCollector(o.interval),
    help="Measured Apple Silicon CPU, GPU and Neural Engine power and energy from macOS "
    "powermetrics (needs root: sudo ortel serve).",
    metrics=(catalog.POWER, catalog.ENERGY),
)
