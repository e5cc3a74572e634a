"""``track_generation``: time to first token and inter-token latency of your own generation loop.

    with track_generation(model="llama", prompt_tokens=len(prompt)) as g:
        for token in generate(prompt):
            g.token()

The clock starts when the block is entered (so the first token's time includes prefill) and every
``g.token()`` takes one ``perf_counter_ns`` reading and appends to a list; the recorder folds the
lists into ``ortel_time_to_first_token_seconds`` / ``ortel_inter_token_latency_seconds``
histograms and the token counters off the hot path, and snapshots carry them to the daemon.
"""

from __future__ import annotations

from time import perf_counter_ns
from typing import Any

from . import tracing
from .recorder import RECORDER, Recorder, Series


class track_generation:  # noqa: N801 - used like a function: ``with track_generation(...) as g``
    """Track one generation (one request's output stream).

    ``g.token()`` marks one output token; ``g.token(count=n)`` marks a decode step that produced
    ``n`` tokens at once (batched or speculative decoding): the step counts once for latency and
    ``n`` times for ``ortel_generated_tokens_total``. ``prompt_tokens`` (or ``g.prompt_tokens``)
    feeds ``ortel_prompt_tokens_total``. Tokens produced before an exception are still counted.
    """

    __slots__ = ("_series", "_t0", "_last", "_ttft", "_itl", "generated", "prompt_tokens")

    def __init__(
        self,
        model: str,
        *,
        provider: str = "unknown",
        prompt_tokens: int | None = None,
        recorder: Recorder = RECORDER,
    ) -> None:
        self._series: Series = recorder.series(model, provider)
        self._ttft = self._series.ttft.append
        self._itl = self._series.itl.append
        self.prompt_tokens = prompt_tokens
        self.generated = 0
        self._t0 = 0
        self._last = 0

    def __enter__(self) -> track_generation:
        self.generated = 0
        self._last = 0
        self._t0 = perf_counter_ns()
        return self

    def token(self, count: int = 1) -> None:
        now = perf_counter_ns()
        if self._last:
            self._itl(now - self._last)
            self._last = now
        else:
            self._ttft(now - self._t0)
            self._last = now
            if tracing.ACTIVE is not None:  # spans on: the first token is an event of the span
                tracing.ACTIVE.first_token(self)
        self.generated += count

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        prompt = self.prompt_tokens
        if self.generated or prompt:
            self._series.tokens.append((self.generated, int(prompt or 0)))

    async def __aenter__(self) -> track_generation:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)
