"""Standard errors of the averages evaluation reports."""

from __future__ import annotations

import math

from torch import Tensor


def ratio_stderr(a: Tensor, b: Tensor) -> float:
    r"""Standard error of :math:`r = \sum_i a_i / \sum_i b_i` over i.i.d. examples (the delta
    method for a ratio estimator; Cochran 1977, Sampling Techniques, ch. 6):

    .. math:: \mathrm{se}(r)^2 = \frac{n}{n-1}\,\frac{\sum_i (a_i - r\,b_i)^2}{(\sum_i b_i)^2}.

    With every :math:`b_i = d` it is the usual :math:`\mathrm{std}(a)/(d\sqrt{n})`. For bits per
    dimension, ``a`` holds the per-example NLL estimates and ``b`` their dimensions, so the error
    covers both the Monte Carlo noise of each estimate and the spread over examples.

    Args:
        a, b: ``(n,)`` per-example numerator and denominator; ``n >= 2``.
    """
    a, b = a.double().flatten(), b.double().flatten()
    n = a.numel()
    if n < 2:
        return math.nan
    r = a.sum() / b.sum()
    return float(((a - r * b).pow(2).sum() * n / (n - 1)).sqrt() / b.sum())
