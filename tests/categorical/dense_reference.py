"""Brute-force references for the categorical tests: every transition as explicit dense matrices,
built here from the papers' definitions, independently of the library's matrix-free code."""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import torch

from discodiff.categorical import (
    AbsorbingTransition,
    DenseTransition,
    DiscretizedGaussianTransition,
    MarginalTransition,
    RateMatrixTransition,
    UniformTransition,
)
from discodiff.schedules import CosineSchedule, GeometricSchedule, LogLinearSchedule

K = 4  # data ids in the dense checks
T = 6  # steps in the dense checks

RATE = np.array(
    [
        [-1.0, 0.6, 0.3, 0.1],
        [0.2, -0.5, 0.3, 0.0],
        [0.0, 0.4, -0.9, 0.5],
        [0.3, 0.0, 0.7, -1.0],
    ]
)


def random_step_matrices(num_steps: int, k: int, seed: int = 0) -> np.ndarray:
    """Row-stochastic matrices leaning to the diagonal, with some exact zeros."""
    rng = np.random.default_rng(seed)
    mats = rng.random((num_steps, k, k)) * (rng.random((num_steps, k, k)) > 0.3)
    mats += 3 * np.eye(k)
    return mats / mats.sum(axis=-1, keepdims=True)


def mixing_steps(schedule, pi: np.ndarray, num_steps: int) -> np.ndarray:
    """D3PM's Q_i = (1 - beta_i) I + beta_i 1 pi^T with beta_i from the schedule (App. A.2)."""
    alpha = schedule.alpha_bar(torch.arange(num_steps + 1, dtype=torch.float64) / num_steps).numpy()
    out = []
    for i in range(1, num_steps + 1):
        beta = 1 - alpha[i] / alpha[i - 1]
        out.append((1 - beta) * np.eye(len(pi)) + beta * np.outer(np.ones(len(pi)), pi))
    return np.stack(out)


def gaussian_steps(schedule, k: int, num_steps: int) -> np.ndarray:
    """D3PM App. A.2.2, entry by entry."""
    betas = schedule.betas(num_steps).numpy()
    out = []
    for beta in betas:
        z = sum(math.exp(-4 * n**2 / ((k - 1) ** 2 * beta)) for n in range(-(k - 1), k))
        q = np.zeros((k, k))
        for i in range(k):
            for j in range(k):
                if i != j:
                    q[i, j] = math.exp(-4 * (i - j) ** 2 / ((k - 1) ** 2 * beta)) / z
            q[i, i] = 1 - q[i].sum()
        out.append(q)
    return np.stack(out)


def rate_steps(schedule, rate: np.ndarray, num_steps: int) -> np.ndarray:
    sb = schedule.sigma_bar(torch.arange(num_steps + 1, dtype=torch.float64) / num_steps).numpy()
    return np.stack([scipy.linalg.expm((sb[i] - sb[i - 1]) * rate) for i in range(1, num_steps + 1)])


def cases():
    """(name, transition, dense step matrices (T, S, S), continuous-time?) for every kind."""
    cosine = CosineSchedule()
    loglinear = LogLinearSchedule(eps=0.0)
    marginal = np.array([0.1, 0.2, 0.3, 0.4])
    absorbing_pi = np.eye(K + 1)[K]
    dense = random_step_matrices(T, K)
    return [
        ("uniform", UniformTransition(cosine, K), mixing_steps(cosine, np.full(K, 1 / K), T), True),
        ("absorbing", AbsorbingTransition(loglinear, K), mixing_steps(loglinear, absorbing_pi, T), True),
        (
            "marginal",
            MarginalTransition(cosine, torch.tensor(marginal)),
            mixing_steps(cosine, marginal, T),
            True,
        ),
        ("gaussian", DiscretizedGaussianTransition(cosine, K, T), gaussian_steps(cosine, K, T), False),
        ("dense", DenseTransition(torch.tensor(dense)), dense, False),
        (
            "rate",
            RateMatrixTransition(torch.tensor(RATE), GeometricSchedule(0.01, 5.0)),
            rate_steps(GeometricSchedule(0.01, 5.0), RATE, T),
            True,
        ),
    ]


def span(steps: np.ndarray, j: int, k: int) -> np.ndarray:
    """Q(t_j, t_k) = Q_{j+1} ... Q_k (row convention)."""
    out = np.eye(steps.shape[1])
    for i in range(j + 1, k + 1):
        out = out @ steps[i - 1]
    return out
