"""Recommendations: each backed by the numbers it quotes, never hiding a broken precision."""

from __future__ import annotations

import itertools

import pytest

from ortel.profiling.recommend import recommendations

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
_ids = itertools.count()


def cfg(provider=CPU, precision="fp32", batch=1, conc=1, p50=1e-3, p99=2e-3, ips=None, **kw):
    c = {
        "id": next(_ids),
        "provider": provider,
        "precision": precision,
        "batch": batch,
        "seq_len": None,
        "concurrency": conc,
        "label": f"{provider} {precision} b{batch} c{conc}",
        "status": "ok",
        "error": None,
        "samples": 5000,
        "latency_seconds": {"p50": p50, "p99": p99},
        "items_per_second": ips if ips is not None else batch / p50,
        "accuracy": None,
        "energy": None,
        "warmup": {"steady": True, "seconds": 1.0},
        "untrusted_percentiles": [],
    }
    c.update(kw)
    return c


def summary(*configs, **kw):
    s = {"configurations": list(configs), "baseline": configs[0]["id"], "power": {}}
    s.update(kw)
    return s


def texts(recs, kind):
    return [r["text"] for r in recs if r["kind"] == kind]


def test_best_batch_with_throughput_and_p99_cost():
    b1 = cfg(batch=1, p50=1e-3, p99=2e-3, ips=1000)
    b8 = cfg(batch=8, p50=3e-3, p99=2.6e-3, ips=2100)
    b32 = cfg(batch=32, p50=20e-3, p99=25e-3, ips=1600)
    recs = recommendations(summary(b1, b8, b32))
    (r,) = [r for r in recs if r["kind"] == "batch"]
    assert r["text"] == "batch 8: 2.1× throughput at +30% p99 (scaling efficiency 26% of linear)"
    assert r["evidence"]["best"] == b8["id"] and r["evidence"]["baseline"] == b1["id"]
    assert r["evidence"]["throughput_ratio"] == pytest.approx(2.1)


def test_sla_limits_the_batch():
    b1 = cfg(batch=1, p99=2e-3, ips=1000)
    b8 = cfg(batch=8, p99=9e-3, ips=2100)
    b4 = cfg(batch=4, p99=4e-3, ips=1500)
    (r,) = texts(recommendations(summary(b1, b4, b8), sla=5e-3), "batch")
    assert r.startswith("batch 4: 1.5× throughput") and "within the p99 target of 5 ms" in r
    (r,) = texts(recommendations(summary(b1, b4, b8), sla=1e-3), "batch")
    assert r == "no batch meets the p99 target of 1 ms"


def test_batching_that_does_not_help_says_so():
    (r,) = texts(recommendations(summary(cfg(batch=1, ips=1000), cfg(batch=4, ips=1020))), "batch")
    assert r == "batch 1: larger batches do not raise throughput here"


def test_precision_speedup_with_cosine():
    fp32 = cfg(p50=1.8e-3)
    int8 = cfg(precision="int8", p50=1e-3, accuracy={"cosine": 0.99912, "max_abs_diff": 0.012})
    (r,) = texts(recommendations(summary(fp32, int8)), "precision")
    assert r == "int8: 1.8× faster, cosine 0.99912 (max abs diff 0.012)"


def test_a_fast_but_broken_precision_is_never_recommended():
    fp32 = cfg(p50=2e-3)
    fp16 = cfg(precision="fp16", p50=1e-3, accuracy={"cosine": 0.93, "max_abs_diff": 0.8})
    int8 = cfg(precision="int8", p50=1e-3, accuracy={"cosine": None, "max_abs_diff": None,
                                                      "non_finite": True})  # fmt: skip
    recs = [r for r in recommendations(summary(fp32, fp16, int8)) if r["kind"] == "precision"]
    assert all(r["severity"] == "warning" for r in recs)
    assert "the accuracy cost is too high" in recs[0]["text"] and "0.93000" in recs[0]["text"]
    assert "NaN/Inf" in recs[1]["text"]


def test_slower_precision_keeps_fp32():
    fp32 = cfg(p50=1e-3)
    fp16 = cfg(precision="fp16", p50=1.25e-3, accuracy={"cosine": 0.99999, "max_abs_diff": 1e-4})
    (r,) = texts(recommendations(summary(fp32, fp16)), "precision")
    assert r == "fp16: 1.2× slower than fp32, cosine 0.99999: keep fp32"
    same = cfg(precision="int8", p50=0.98e-3, accuracy={"cosine": 0.9999, "max_abs_diff": 1e-3})
    (r,) = texts(recommendations(summary(fp32, same)), "precision")
    assert r == "int8: 1.02× fp32 speed (no gain), cosine 0.99990: keep fp32"


def test_provider_speedup_and_energy():
    cpu = cfg(p50=5.2e-3, energy={"joules_per_inference": 0.5, "source": "measured"})
    cuda = cfg(provider=CUDA, p50=1e-3, energy={"joules_per_inference": 0.1, "source": "measured"})
    (r,) = texts(recommendations(summary(cpu, cuda)), "provider")
    assert r == "CUDA: 5.2× CPU (p50), 5.0× less energy per inference (measured)"


def test_failed_configurations_are_reported_once_per_cause():
    cpu = cfg()
    bad = [cfg(provider=CUDA, batch=b, status="failed", error="no GPU", samples=0) for b in (1, 2)]
    (r,) = [r for r in recommendations(summary(cpu, *bad)) if r["kind"] == "failed"]
    assert r["text"] == "CUDA fp32: failed (no GPU)"
    assert r["evidence"]["configs"] == [b["id"] for b in bad]


def test_concurrency():
    c1 = cfg(conc=1, ips=1000, p99=1e-3)
    c4 = cfg(conc=4, ips=2500, p99=3e-3)
    (r,) = texts(recommendations(summary(c1, c4)), "concurrency")
    assert r == "concurrency 4: 2.5× throughput at +200% p99"


def test_warnings_for_drift_thin_tails_estimates_and_interruption():
    a = cfg(warmup={"steady": False, "seconds": 30.0}, untrusted_percentiles=["p999"],
            samples=1200)  # fmt: skip
    recs = recommendations(summary(a, interrupted=True, power={"source": "estimated"}))
    kinds = [r["kind"] for r in recs if r["severity"] == "warning"]
    assert kinds == ["run", "warmup", "samples", "power"]
    samples = next(r for r in recs if r["kind"] == "samples")
    assert "p999" in samples["text"] and "1200 samples" in samples["text"]


def test_generation_line():
    g = {
        "runs": 3,
        "time_to_first_token_seconds": {"p50": 0.0123},
        "inter_token_latency_seconds": {"p50": 0.004},
        "decode_tokens_per_second": 250.0,
    }
    (r,) = texts(recommendations(summary(cfg(), generation=g)), "generation")  # fmt: skip
    assert (
        r == "generation: time to first token 12.3 ms (p50), 4 ms per token after it, 250 "
        "tokens/s decoding"
    )


def test_nothing_to_compare_gives_nothing():
    assert recommendations(summary(cfg())) == []
    assert recommendations({"configurations": []}) == []
