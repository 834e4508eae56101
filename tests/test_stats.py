"""``mean_std``: the mean ± sample std every results table reports over seeds."""
import math

import pytest

from graphattn.utils import mean_std


def test_mean_and_sample_std_against_the_formula():
    values = [0.7712, 0.7798, 0.7885, 0.7651]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))   # n - 1, not n
    assert mean_std(values) == pytest.approx((mean, std), rel=1e-12)
    assert mean_std(iter(values)) == mean_std(values)                            # any iterable, read once


def test_one_value_has_no_spread():
    assert mean_std([81.3]) == (81.3, 0.0)


def test_empty_is_a_clear_error():
    with pytest.raises(ValueError, match="values is empty"):
        mean_std([])
