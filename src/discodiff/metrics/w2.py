"""Exact 2-Wasserstein distance between two point clouds (POT's network simplex)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

EMD_MAX_ITERATIONS = 10_000_000
"""Network-simplex iteration cap, as torchcfm's ``wasserstein`` uses (enough for 10k x 10k)."""


def wasserstein2(x: Tensor, y: Tensor) -> float:
    r""":math:`W_2` between the empirical measures of ``x`` (N, D) and ``y`` (M, D).

    Uniform weights, squared Euclidean ground cost, exact optimal transport, then the square root;
    the same definition as torchcfm's ``wasserstein(..., method="exact", power=2)``, which the
    [SF]2M paper's Table 2 reports.
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"need two (N, D) point clouds of the same D, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    import ot  # imported here: POT (with scikit-learn) takes seconds to import, every CLI call paid it

    xs = x.detach().double().cpu()
    ys = y.detach().double().cpu()
    cost = (torch.cdist(xs, ys) ** 2).numpy()
    a = np.full(len(xs), 1 / len(xs))
    b = np.full(len(ys), 1 / len(ys))
    return math.sqrt(float(ot.emd2(a, b, cost, numItermax=EMD_MAX_ITERATIONS)))
