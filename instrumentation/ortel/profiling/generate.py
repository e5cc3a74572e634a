"""``ortel profile --generate N``: LLM generation on a decoder with a KV cache.

The cache is found by the common naming conventions: an input with "past" in its name whose
output twin replaces "past_key_values" (or "past") by "present" — Hugging Face / Optimum
(``past_key_values.0.key`` → ``present.0.key``), GPT-2's combined ``past.0`` → ``present.0``,
``past_key.0`` → ``present_key.0``. ``input_ids`` is required; ``attention_mask``,
``position_ids`` and Optimum's ``use_cache_branch`` are fed when the model has them.

One generation: a prefill of the prompt (its time plus picking the token is the time to first
token), then greedy decode steps feeding each step's present tensors back as the next past; N new
tokens = the prefill's token plus N - 1 decode steps. One untimed generation runs first (cold).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any

import numpy as np

from .inputs import InputError, InputSpec, ShapeOverrides
from .stats import latency_stats


@dataclass(frozen=True)
class KvLayout:
    input_ids: str
    attention_mask: str | None
    position_ids: str | None
    use_cache_branch: str | None
    logits: str
    pairs: tuple[tuple[str, str], ...]  # (past input, present output)
    past_specs: tuple[InputSpec, ...]
    id_dtype: Any
    mask_dtype: Any
    pos_dtype: Any


def _present_for(name: str, outputs: set[str]) -> str | None:
    for old, new in (
        ("past_key_values", "present"),
        ("past_key_values", "present_key_values"),
        ("past", "present"),
    ):
        cand = name.replace(old, new)
        if cand != name and cand in outputs:
            return cand
    return None


def detect(inputs: Sequence[InputSpec], outputs: Sequence[str]) -> KvLayout:
    """The decoder's cache layout, or InputError saying what is missing."""
    out_set = set(outputs)
    pairs, past_specs, other = [], [], []
    for s in inputs:
        present = _present_for(s.name, out_set) if "past" in s.name.lower() else None
        if present:
            pairs.append((s.name, present))
            past_specs.append(s)
        else:
            other.append(s)
    if not pairs:
        raise InputError(
            "--generate needs a decoder with a KV cache: no 'past…' input has a 'present…' "
            f"output twin (inputs: {[s.name for s in inputs]})"
        )
    by = {s.name: s for s in other}
    ids = by.get("input_ids") or next(
        (s for s in other if s.type in ("tensor(int64)", "tensor(int32)") and len(s.shape) == 2),
        None,
    )
    if ids is None:
        raise InputError("--generate: the decoder has no input_ids input")
    mask = by.get("attention_mask")
    pos = by.get("position_ids")
    branch = by.get("use_cache_branch")
    unknown = [s.name for s in other if s not in (ids, mask, pos, branch)]
    if unknown:
        raise InputError(f"--generate: the decoder has inputs it cannot feed: {unknown}")
    presents = {p for _, p in pairs}
    logits = "logits" if "logits" in out_set else next(o for o in outputs if o not in presents)
    return KvLayout(
        ids.name,
        mask.name if mask else None,
        pos.name if pos else None,
        branch.name if branch else None,
        logits,
        tuple(pairs),
        tuple(past_specs),
        ids.dtype,
        mask.dtype if mask else np.int64,
        pos.dtype if pos else np.int64,
    )


def _past_dim(spec: InputSpec) -> int:
    for i, d in enumerate(spec.shape):
        if isinstance(d, str) and "past" in d.lower():
            return i
    return len(spec.shape) - 2  # [..., seq, head_dim]


def empty_past(spec: InputSpec, batch: int, overrides: ShapeOverrides) -> np.ndarray:
    shape = []
    pd = _past_dim(spec)
    dynamic = [i for i, d in enumerate(spec.shape) if i != pd and not isinstance(d, int)]
    batch_dim = dynamic[0] if dynamic else -1  # [batch, …] or GPT-2's combined [2, batch, …]
    for i, d in enumerate(spec.shape):
        if i == pd:
            shape.append(0)
        elif isinstance(d, int) and d > 0:
            shape.append(d)
        elif isinstance(d, str) and d in overrides.dims:
            shape.append(overrides.dims[d])
        elif i == batch_dim:
            shape.append(batch)
        else:
            raise InputError(
                f"--generate: dimension {i} ({d!r}) of {spec.name} is dynamic; give it with "
                f"--shape {d or 'DIM'}=N"
            )
    return np.zeros(shape, dtype=spec.dtype)


@dataclass
class GenerationRun:
    ttft: float
    steps: list[float]  # decode step times (seconds), each including picking the token
    prefill_seconds: float
    kv_cache_bytes: int
    tokens: int  # new tokens per sequence


def generate_once(
    session: Any,
    layout: KvLayout,
    prompt: np.ndarray,
    new_tokens: int,
    overrides: ShapeOverrides,
) -> GenerationRun:
    batch, plen = prompt.shape
    names = [layout.logits] + [p for _, p in layout.pairs]
    feed: dict[str, Any] = {layout.input_ids: prompt.astype(layout.id_dtype)}
    for s in layout.past_specs:
        feed[s.name] = empty_past(s, batch, overrides)
    if layout.attention_mask:
        feed[layout.attention_mask] = np.ones((batch, plen), dtype=layout.mask_dtype)
    if layout.position_ids:
        feed[layout.position_ids] = np.broadcast_to(
            np.arange(plen, dtype=layout.pos_dtype), (batch, plen)
        ).copy()
    if layout.use_cache_branch:
        feed[layout.use_cache_branch] = np.array([False])
    clock = perf_counter_ns
    t0 = clock()
    outs = session.run(names, feed)
    token = outs[0][:, -1, :].argmax(-1)
    t1 = clock()
    steps: list[float] = []
    for k in range(new_tokens - 1):
        feed = {layout.input_ids: token.astype(layout.id_dtype)[:, None]}
        for (past, _), value in zip(layout.pairs, outs[1:]):
            feed[past] = value
        if layout.attention_mask:
            feed[layout.attention_mask] = np.ones((batch, plen + k + 1), dtype=layout.mask_dtype)
        if layout.position_ids:
            feed[layout.position_ids] = np.full((batch, 1), plen + k, dtype=layout.pos_dtype)
        if layout.use_cache_branch:
            feed[layout.use_cache_branch] = np.array([True])
        s0 = clock()
        outs = session.run(names, feed)
        token = outs[0][:, -1, :].argmax(-1)
        steps.append((clock() - s0) * 1e-9)
    kv = sum(int(v.nbytes) for v in outs[1:])
    return GenerationRun((t1 - t0) * 1e-9, steps, (t1 - t0) * 1e-9, kv, new_tokens)


@dataclass
class GenerationResult:
    prompt_tokens: int
    new_tokens: int
    batch: int
    runs: list[GenerationRun] = field(default_factory=list)
    cold_ttft: float | None = None
    started: float = 0.0  # wall clock of the timed runs
    ended: float = 0.0
    energy: dict[str, Any] | None = None
    interrupted: bool = False

    def summary(self) -> dict[str, Any]:
        ttft = [r.ttft for r in self.runs]
        itl = [s for r in self.runs for s in r.steps]
        prefill = float(np.mean([r.prefill_seconds for r in self.runs])) if self.runs else None
        decode = float(np.mean([sum(r.steps) for r in self.runs])) if self.runs else None
        total_tokens = self.batch * sum(r.tokens for r in self.runs)
        total_time = sum(r.prefill_seconds + sum(r.steps) for r in self.runs)
        decode_tokens = self.batch * sum(len(r.steps) for r in self.runs)
        decode_time = sum(sum(r.steps) for r in self.runs)
        kv = self.runs[-1].kv_cache_bytes if self.runs else None
        cached = self.prompt_tokens + self.new_tokens - 1
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "batch": self.batch,
            "runs": len(self.runs),
            "cold_time_to_first_token_seconds": self.cold_ttft,
            "time_to_first_token_seconds": latency_stats(ttft),
            "inter_token_latency_seconds": latency_stats(itl),
            "prefill_seconds": prefill,
            "decode_seconds": decode,
            "prefill_tokens_per_second": (
                self.batch * self.prompt_tokens / prefill if prefill else None
            ),
            "decode_tokens_per_second": decode_tokens / decode_time if decode_time else None,
            "tokens_per_second": total_tokens / total_time if total_time else None,
            "kv_cache_bytes": kv,
            "kv_cache_bytes_per_token": kv / (self.batch * cached) if kv and cached else None,
            "energy": self.energy,
            "joules_per_token": (
                self.energy["joules"] / total_tokens if self.energy and total_tokens else None
            ),
            "interrupted": self.interrupted,
        }
        return out


def run_generation(
    session: Any,
    layout: KvLayout,
    *,
    prompt_tokens: int,
    new_tokens: int,
    runs: int,
    batch: int = 1,
    overrides: ShapeOverrides | None = None,
    vocab_high: int = 10,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> GenerationResult:
    """One cold generation, then ``runs`` timed ones; Ctrl-C keeps the finished runs."""
    import time

    if new_tokens < 1 or prompt_tokens < 1 or runs < 1:
        raise InputError("--generate, --prompt-len and --generate-runs must be >= 1")
    overrides = overrides or ShapeOverrides()
    rng = np.random.default_rng(seed)
    prompt = rng.integers(0, vocab_high, size=(batch, prompt_tokens))
    res = GenerationResult(prompt_tokens, new_tokens, batch)
    try:
        res.cold_ttft = generate_once(session, layout, prompt, new_tokens, overrides).ttft
        res.started = time.time()
        for i in range(runs):
            res.runs.append(generate_once(session, layout, prompt, new_tokens, overrides))
            if progress:
                progress(i + 1, runs)
    except KeyboardInterrupt:
        res.interrupted = True
    res.ended = time.time()
    return res
