"""Caps on distinct label values: parsing, first-come admission, counting what was dropped."""

from __future__ import annotations

import logging
import threading

import pytest

from ortel.core import cardinality as card
from ortel.core.cardinality import (
    DEFAULT_LIMITS,
    OTHER,
    LabelLimiter,
    format_limits,
    parse_counts,
    parse_limits,
)


def test_defaults_cover_the_labels_fed_by_callers() -> None:
    assert {"model", "provider", "error_type", "op_type"} <= set(DEFAULT_LIMITS)
    assert parse_limits("") == DEFAULT_LIMITS
    assert parse_limits(format_limits(DEFAULT_LIMITS)) == DEFAULT_LIMITS


def test_parse_overrides_and_adds() -> None:
    got = parse_limits(" model=5 , error_type=2,, tenant=9 ")
    assert got == {**DEFAULT_LIMITS, "model": 5, "error_type": 2, "tenant": 9}


@pytest.mark.parametrize(
    "text", ["model", "model=", "=5", "model=0", "model=-1", "model=x", "a-b=3", "model=²", "m=1e3"]
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="label limit"):
        parse_limits(text)


def test_first_values_are_admitted_later_ones_become_other() -> None:
    lim = LabelLimiter({"model": 2})
    assert [lim.admit("model", v) for v in ("a", "b", "c", "a", "d", "c", "b")] == [
        "a",
        "b",
        OTHER,
        "a",
        OTHER,
        OTHER,
        "b",
    ]
    assert lim.dropped() == {"model": 2}  # c and d, each once
    assert lim.admitted("model") == {"a", "b"}


def test_other_passes_and_takes_no_slot() -> None:
    lim = LabelLimiter({"model": 1})
    assert lim.admit("model", OTHER) == OTHER
    assert lim.admit("model", "a") == "a"
    assert lim.dropped() == {"model": 0}


def test_labels_without_a_limit_are_not_capped() -> None:
    lim = LabelLimiter({"model": 1})
    assert [lim.admit("pid", str(i)) for i in range(5)] == ["0", "1", "2", "3", "4"]


def test_exact_under_threads() -> None:
    lim = LabelLimiter({"model": 10})
    results: list[list[str]] = [[] for _ in range(8)]

    def work(i: int) -> None:
        for v in range(1000):
            results[i].append(lim.admit("model", f"m{v}"))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(lim.admitted("model")) == 10
    assert lim.dropped() == {"model": 990}
    # Every thread saw the same decision for every value.
    assert all(r == results[0] for r in results)


def test_refused_values_beyond_the_memory_bound_may_count_again(monkeypatch) -> None:
    monkeypatch.setattr(card, "REMEMBER_REFUSED", 2)
    lim = LabelLimiter({"model": 1})
    lim.admit("model", "kept")
    for v in ("x", "y", "z", "x", "z"):
        assert lim.admit("model", v) == OTHER
    assert lim.dropped() == {"model": 4}  # x, y remembered; z (not remembered) counted twice


def test_forget_dropped_keeps_admissions() -> None:
    lim = LabelLimiter({"model": 1})
    lim.admit("model", "a")
    lim.admit("model", "b")
    lim.forget_dropped()
    assert lim.dropped() == {"model": 0}
    assert lim.admit("model", "a") == "a" and lim.admit("model", "b") == OTHER
    assert lim.dropped() == {"model": 1}


def test_from_env(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(card.ENV, "model=3")
    assert LabelLimiter.from_env().limits["model"] == 3
    monkeypatch.setenv(card.ENV, "model=three")
    with caplog.at_level(logging.WARNING, logger="ortel.instrumentation"):
        assert LabelLimiter.from_env().limits == DEFAULT_LIMITS  # bad value: defaults, said
    assert any("ORTEL_LABEL_LIMITS" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "value",
    [[1], "x", {"model": -1}, {"model": 1.5}, {"model": True}, {"a b": 1}, {"model": 2**97}],
)
def test_parse_counts_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="dropped"):
        parse_counts(value, 2**96)


def test_parse_counts_accepts() -> None:
    assert parse_counts(None, 10) == {}
    assert parse_counts({"model": 3, "error_type": 0}, 10) == {"model": 3, "error_type": 0}
