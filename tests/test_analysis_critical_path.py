"""The critical path on DAGs with known answers."""

from __future__ import annotations

import pytest

from ortel.analysis.critical_path import CycleError, critical_path


def test_diamond_with_a_known_answer():
    #        b(5)
    #  a(1) <    > d(2) -> e(1)
    #        c(3)
    # longest: a b d e = 9; serial 12; slack 3
    nodes = ["a", "b", "c", "d", "e"]
    edges = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "e")]
    w = {"a": 1, "b": 5, "c": 3, "d": 2, "e": 1}
    r = critical_path(nodes, edges, w)
    assert r.path == ["a", "b", "d", "e"]
    assert r.critical_path_us == 9 and r.serial_sum_us == 12 and r.slack_us == 3
    assert r.parallelism == pytest.approx(12 / 9)
    assert r.earliest_start_us == {"a": 0, "b": 1, "c": 1, "d": 6, "e": 8}


def test_parallel_branches_and_a_dominant_side_chain():
    # two independent chains: x1 -> x2 (10 + 10) and y (25): the path is y alone
    r = critical_path(["x1", "x2", "y"], [("x1", "x2")], {"x1": 10, "x2": 10, "y": 25})
    assert r.path == ["y"] and r.critical_path_us == 25 and r.serial_sum_us == 45


def test_brute_force_agrees_on_a_random_dag():
    import itertools
    import random

    rng = random.Random(1)
    nodes = [f"n{i}" for i in range(9)]
    edges = [(a, b) for a, b in itertools.combinations(nodes, 2) if rng.random() < 0.3]
    w = {n: rng.randint(1, 20) for n in nodes}
    succ = {n: [b for a, b in edges if a == n] for n in nodes}

    def longest(n):
        return w[n] + max((longest(s) for s in succ[n]), default=0)

    r = critical_path(nodes, edges, w)
    assert r.critical_path_us == max(longest(n) for n in nodes)
    assert sum(w[n] for n in r.path) == r.critical_path_us
    assert all((a, b) in edges for a, b in zip(r.path, r.path[1:]))


def test_unknown_weights_edges_and_ties():
    r = critical_path(["a", "b"], [("a", "b"), ("a", "zz"), ("a", "a")], {"b": 2})
    assert r.path == ["a", "b"] and r.critical_path_us == 2
    tie = critical_path(["p", "q"], [], {"p": 1, "q": 1})
    assert tie.path == ["p"]  # earlier node wins a tie
    assert critical_path([], [], {}).path == []


def test_a_cycle_is_an_error():
    with pytest.raises(CycleError):
        critical_path(["a", "b"], [("a", "b"), ("b", "a")], {"a": 1, "b": 1})
