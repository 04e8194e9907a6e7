"""Exact 2-Wasserstein distance between two point clouds (POT's network simplex), its data-vs-data
floor, and the range check that goes with it for samplers."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import ot
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
    xs = x.detach().double().cpu()
    ys = y.detach().double().cpu()
    cost = (torch.cdist(xs, ys) ** 2).numpy()
    a = np.full(len(xs), 1 / len(xs))
    b = np.full(len(ys), 1 / len(ys))
    return math.sqrt(float(ot.emd2(a, b, cost, numItermax=EMD_MAX_ITERATIONS)))


def wasserstein2_floor(
    draw: Callable[[int, torch.Generator], Tensor], n: int, *, draws: int = 5, seed: int = 0
) -> tuple[float, float]:
    r"""Mean and standard deviation (ddof 1) of :math:`W_2` between two independent n-point draws
    of the data, over ``draws`` pairs: what a perfect model scores with n samples (one draw of it
    varies by tens of percent for clustered data, so compare against the mean +- sd)."""
    if draws < 2:
        raise ValueError(f"the floor's spread needs draws >= 2, got {draws}")
    values = [
        wasserstein2(
            draw(n, torch.Generator().manual_seed(seed + 2 * k)),
            draw(n, torch.Generator().manual_seed(seed + 2 * k + 1)),
        )
        for k in range(draws)
    ]
    return float(np.mean(values)), float(np.std(values, ddof=1))


def range_check(samples: Tensor, reference: Tensor, factor: float = 3.0) -> dict[str, float]:
    r"""How far samples reach against the data: ``max_abs`` (largest :math:`|x_j|` of any sample),
    ``limit`` (``factor`` times the reference's largest :math:`|x_j|`) and ``outside`` (how many
    samples have a coordinate beyond the limit). A sampler that diverges on a few points shows up
    here before it moves :math:`W_2` much."""
    reach = samples.detach().reshape(len(samples), -1).abs().amax(dim=1).double()
    limit = factor * float(reference.detach().abs().max())
    return {"max_abs": float(reach.max()), "limit": limit, "outside": int((reach > limit).sum())}
