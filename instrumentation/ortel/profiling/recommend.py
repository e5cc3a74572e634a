"""Recommendations from a run's summary, each with the numbers behind it.

A pure function of ``summary.json``, so a stored run can be re-read and re-judged. Speed
comparisons use the median (p50) latency for speed-ups and items/s for throughput; every text
names the configurations it compares (``evidence``) so the report can show the rows. A faster
precision whose outputs drift (cosine below ``min_cosine``, or NaN/Inf) is never recommended.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .providers import CPU, short_name

GAIN = 1.05  # below a 5% gain, "faster" is within what run-to-run noise does


def _ok(configs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        c
        for c in configs
        if c["status"] in ("ok", "interrupted") and c["samples"] and c["latency_seconds"]["p50"]
    ]


def _relative(speed: float) -> str:
    """How a variant compares with fp32 when it is not faster."""
    if speed < 1 / GAIN:
        return f"{1 / speed:.1f}× slower than fp32"
    return f"{speed:.2f}× fp32 speed (no gain)"


def _rec(kind: str, text: str, severity: str = "info", **evidence: Any) -> dict[str, Any]:
    return {"kind": kind, "severity": severity, "text": text, "evidence": evidence}


def _p(c: dict[str, Any], key: str = "p50") -> float:
    return c["latency_seconds"][key]


def recommendations(
    summary: dict[str, Any], min_cosine: float = 0.99, sla: float | None = None
) -> list[dict[str, Any]]:
    """Each sweep is judged around the baseline configuration: batch sizes at the baseline's
    provider, precision, sequence length and concurrency; precisions at its shape, per provider;
    providers at its precision and shape."""
    all_configs = summary.get("configurations", [])
    ok = _ok(all_configs)
    base = next((c for c in ok if c["id"] == summary.get("baseline")), ok[0] if ok else None)
    out: list[dict[str, Any]] = []
    if base is not None:
        out += _sweep(ok, base, "batch", ("provider", "precision", "seq_len", "concurrency"), sla)
        out += _sweep(ok, base, "concurrency", ("provider", "precision", "seq_len", "batch"), sla)
        out += _precision(ok, base, min_cosine)
        out += _providers(ok, base)
    out += _failed(all_configs)
    out += _generation(summary.get("generation"))
    out += _warnings(summary, ok)
    return out


def _same(c: dict[str, Any], base: dict[str, Any], keys: Iterable[str]) -> bool:
    return all(c[k] == base[k] for k in keys)


def _sweep(ok, base, axis: str, fixed: tuple[str, ...], sla: float | None):
    g = sorted(
        (c for c in ok if _same(c, base, fixed) and c[axis] is not None), key=lambda c: c[axis]
    )
    if len({c[axis] for c in g}) < 2:
        return []
    first = g[0]
    ids = [c["id"] for c in g]
    within = [c for c in g if sla is None or _p(c, "p99") <= sla]
    sla_note = f", within the p99 target of {sla * 1e3:.3g} ms" if sla is not None else ""
    # Without a target, within is all of g (two or more), so only a target can empty it.
    if sla is not None and not within:
        return [
            _rec(
                axis,
                f"no {axis} meets the p99 target of {sla * 1e3:.3g} ms",
                "warning",
                configs=ids,
            )
        ]
    best = max(within, key=lambda c: c["items_per_second"] or 0)
    if best is first or best["items_per_second"] < GAIN * first["items_per_second"]:
        more = "larger batches" if axis == "batch" else "more concurrent requests"
        return [
            _rec(
                axis,
                f"{axis} {first[axis]}: {more} do not raise throughput here{sla_note}",
                configs=ids,
                best=first["id"],
            )
        ]
    speedup = best["items_per_second"] / first["items_per_second"]
    cost = _p(best, "p99") / _p(first, "p99") - 1
    ev = dict(
        configs=ids,
        best=best["id"],
        baseline=first["id"],
        throughput_ratio=speedup,
        p99_change=cost,
    )
    text = f"{axis} {best[axis]}: {speedup:.1f}× throughput at {cost:+.0%} p99"
    if axis == "batch":
        eff = speedup / (best["batch"] / first["batch"])
        ev["scaling_efficiency"] = eff
        text += f" (scaling efficiency {eff:.0%} of linear)"
    return [_rec(axis, text + sla_note, **ev)]


def _precision(ok, base, min_cosine):
    out = []
    shape = ("batch", "seq_len", "concurrency")
    for prov in dict.fromkeys(c["provider"] for c in ok):
        g = [c for c in ok if c["provider"] == prov and _same(c, base, shape)]
        ref = next((c for c in g if c["precision"] == "fp32"), None)
        if ref is None:
            continue
        for c in g:
            if c["precision"] == "fp32":
                continue
            speed = _p(ref) / _p(c)
            acc = c.get("accuracy") or {}
            cos, diff = acc.get("cosine"), acc.get("max_abs_diff")
            name = c["precision"] + (f" on {short_name(prov)}" if prov != CPU else "")
            ev = dict(
                config=c["id"], reference=ref["id"], speedup=speed, cosine=cos, max_abs_diff=diff
            )
            if acc.get("non_finite"):
                out.append(
                    _rec(
                        "precision",
                        f"{name}: produces NaN/Inf outputs: do not use",
                        "warning",
                        **ev,
                    )
                )
            elif cos is None:
                out.append(
                    _rec(
                        "precision",
                        f"{name}: {speed:.2f}× fp32 speed, accuracy not measured",
                        "warning",
                        **ev,
                    )
                )
            elif cos < min_cosine:
                out.append(
                    _rec(
                        "precision",
                        f"{name}: {speed:.1f}× fp32 speed but cosine {cos:.5f} (max abs diff "
                        f"{diff:.3g}) is below {min_cosine}: the accuracy cost is too high",
                        "warning",
                        **ev,
                    )
                )
            elif speed >= GAIN:
                out.append(
                    _rec(
                        "precision",
                        f"{name}: {speed:.1f}× faster, cosine {cos:.5f} (max abs diff {diff:.3g})",
                        **ev,
                    )
                )
            else:
                out.append(
                    _rec(
                        "precision",
                        f"{name}: {_relative(speed)}, cosine {cos:.5f}: keep fp32",
                        **ev,
                    )
                )
    return out


def _providers(ok, base):
    out = []
    g = [c for c in ok if _same(c, base, ("precision", "batch", "seq_len", "concurrency"))]
    cpu = next((c for c in g if c["provider"] == CPU), None)
    if cpu is None:
        return out
    for c in g:
        if c["provider"] == CPU:
            continue
        speed = _p(cpu) / _p(c)
        text = f"{short_name(c['provider'])}: {speed:.1f}× CPU (p50)"
        ev = dict(config=c["id"], reference=cpu["id"], speedup=speed)
        ec, ep = cpu.get("energy") or {}, c.get("energy") or {}
        if ec.get("joules_per_inference") and ep.get("joules_per_inference"):
            ratio = ec["joules_per_inference"] / ep["joules_per_inference"]
            text += f", {ratio:.1f}× less energy per inference ({ep['source']})"
            ev["energy_ratio"] = ratio
        out.append(_rec("provider", text, **ev))
    return out


def _failed(all_configs):
    out, seen = [], set()
    for c in all_configs:
        if c["status"] != "failed" or not c["error"]:
            continue
        key = (c["provider"], c["precision"], c["error"])
        if key in seen:
            continue
        seen.add(key)
        ids = [x["id"] for x in all_configs if (x["provider"], x["precision"], x["error"]) == key]
        out.append(
            _rec(
                "failed",
                f"{short_name(c['provider'])} {c['precision']}: failed ({c['error']})",
                "warning",
                configs=ids,
            )
        )
    return out


def _generation(gen):
    if not gen or not gen.get("runs"):
        return []
    ttft = gen["time_to_first_token_seconds"]["p50"]
    itl = gen["inter_token_latency_seconds"]["p50"]
    text = f"generation: time to first token {ttft * 1e3:.3g} ms (p50)"
    if itl is not None:
        text += f", {itl * 1e3:.3g} ms per token after it, {gen['decode_tokens_per_second']:.0f}"
        text += " tokens/s decoding"
    return [_rec("generation", text, ttft=ttft, itl=itl)]


def _warnings(summary, ok):
    out = []
    if summary.get("interrupted"):
        out.append(
            _rec("run", "interrupted: the numbers cover what was measured before Ctrl-C", "warning")
        )
    drifting = [c for c in ok if c.get("warmup") and not c["warmup"].get("steady")]
    if drifting:
        out.append(
            _rec(
                "warmup",
                f"no steady state within the warm-up limit in {len(drifting)} configuration(s) "
                f"({drifting[0]['label']}, …): latency was still drifting; raise --warmup-max or "
                "look for throttling or other load",
                "warning",
                configs=[c["id"] for c in drifting],
            )
        )
    thin = [c for c in ok if c.get("untrusted_percentiles")]
    if thin:
        fewest = min(thin, key=lambda c: c["samples"])
        names = ", ".join(fewest["untrusted_percentiles"])
        out.append(
            _rec(
                "samples",
                f"{names} rest on fewer than 10 samples beyond them in {len(thin)} "
                f"configuration(s) (fewest: {fewest['samples']} samples): raise --min-samples "
                "to trust them",
                "warning",
                configs=[c["id"] for c in thin],
            )
        )
    power = summary.get("power") or {}
    if power.get("source") == "estimated":
        out.append(
            _rec("power", "power is estimated from CPU utilisation, not measured", "warning")
        )
    return out
