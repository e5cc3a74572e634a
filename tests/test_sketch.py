import numpy as np
import pytest

from ortel.core.sketch import ALPHA, LogSketch, index_of, value_of

DISTRIBUTIONS = {
    "lognormal": lambda r: r.lognormal(-7, 0.6, 50_000),
    "exponential": lambda r: r.exponential(0.01, 5_000),
    "bimodal": lambda r: np.concatenate([r.normal(1e-3, 2e-5, 20_000), r.normal(0.2, 1e-3, 300)]),
    "small": lambda r: r.uniform(1e-4, 2e-4, 40),
    "wide": lambda r: 10 ** r.uniform(-6, 1, 20_000),
}


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_quantiles_within_one_percent_of_numpy_after_merging(name):
    data = DISTRIBUTIONS[name](np.random.default_rng(7)).clip(1e-7)
    merged = LogSketch()
    for part in np.array_split(data, 5):  # as if from five processes
        s = LogSketch()
        for v in part:
            s.add(float(v))
        merged.merge(s)
    assert merged.count == len(data)
    for q in (0.5, 0.9, 0.95, 0.99, 0.999):
        exact = np.percentile(data, q * 100)
        assert abs(merged.quantile(q) - exact) / exact <= 0.01, q


def test_bucket_representative_is_within_alpha_of_every_value_in_it():
    for v in (1e-9, 3.3e-6, 0.5, 1.0, 42.0):
        assert abs(value_of(index_of(v)) - v) / v <= ALPHA + 1e-12


def test_empty_sketch_has_no_quantile_and_single_value_is_itself():
    assert LogSketch().quantile(0.5) is None
    s = LogSketch()
    s.add(0.25)
    assert s.quantile(0.0) == pytest.approx(0.25, rel=ALPHA)
    assert s.quantile(1.0) == pytest.approx(0.25, rel=ALPHA)


def test_json_round_trip_and_validation():
    s = LogSketch()
    for v in (1e-3, 2e-3, 2e-3):
        s.add(v)
    back = LogSketch.from_json(s.to_json())
    assert back.counts == s.counts and back.count == 3
    for bad in ([[1], [1, 2]], [[1], [-1]], "x", [[1.5], [1]], [[1], [True]]):
        with pytest.raises(ValueError):
            LogSketch.from_json(bad)
