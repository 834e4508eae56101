"""Summary statistics of repeated runs (seeds, splits)."""
from __future__ import annotations

import statistics
from collections.abc import Iterable


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    r"""Mean and sample standard deviation of ``values``, as papers report runs over seeds:

    .. math::
        \bar{x} = \frac{1}{n} \sum_i x_i, \qquad s = \sqrt{\frac{1}{n - 1} \sum_i (x_i - \bar{x})^2},

    with :math:`s = 0` for a single value (one seed has no spread).

    Raises:
        ValueError: ``values`` is empty.
    """
    values = list(values)
    if not values:
        raise ValueError("mean_std: values is empty")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0
