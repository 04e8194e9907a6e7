"""Brute-force references for the categorical tests: every transition as explicit dense matrices,
built here from the papers' definitions, independently of the library's matrix-free code."""

from __future__ import annotations

import itertools
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


def dense_d3pm_bound(steps: np.ndarray, log_table: np.ndarray, sequences: np.ndarray, k: int) -> np.ndarray:
    """Per-sequence D3PM bound (nats) of the exact per-token denoiser in the "average" form, from dense
    step matrices ``(T, S, S)`` and a table over ``sequences`` ``(N, L)`` of ids < k: prior
    :math:`KL(q(x_T|x_0)\\|p(x_T))`, :math:`p(x_T) = u\\bar Q_T` with u uniform on the data ids; the
    steps :math:`E_{q(x_i|x_0)}KL(q(x_{i-1}|x_i,x_0)\\|p(x_{i-1}|x_i))`, i >= 2, with
    :math:`p = \\prod_j\\sum_{x_0^j} p(x_0^j|x_i)\\,q(x_{i-1}^j|x_i^j,x_0^j)` and :math:`p(x_0^j|x_i)`
    the table's exact posterior marginal; and :math:`-E\\log\\prod_j p(x_0^j|x_1)` (Austin et al.
    2021, Eq. 3-5), every sum written out over enumerated states."""

    def xlogy_ratio(q, p):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(q > 0, q * (np.log(q) - np.log(p)), 0.0)

    num_steps, s, _ = steps.shape
    length = sequences.shape[1]
    qbar = [np.eye(s)]
    for i in range(num_steps):
        qbar.append(qbar[-1] @ steps[i])
    states = np.array(list(itertools.product(range(s), repeat=length)))  # (S^L, L)
    p_data = np.exp(log_table)
    prior = np.full(k, 1 / k) @ qbar[-1][:k]  # (S,)
    per_seq = sum(xlogy_ratio(qbar[-1][sequences[:, j]], prior).sum(-1) for j in range(length))
    for i in range(1, num_steps + 1):
        lik = qbar[i][:k]  # (k, S): q(x_i^j | x_0^j)
        q_x = np.prod([lik[sequences[:, j]][:, states[:, j]] for j in range(length)], axis=0)  # (N, S^L)
        joint = p_data[:, None] * q_x
        with np.errstate(divide="ignore", invalid="ignore"):
            post = np.where(joint.sum(0) > 0, joint / joint.sum(0), 0.0)  # p(x_0 | x_i)
        term = np.zeros_like(q_x)
        for j in range(length):
            onehot = np.eye(k)[sequences[:, j]]  # (N, k)
            p_hat = onehot.T @ post  # (k, S^L): p(x_0^j = . | x_i)
            b = states[:, j]
            if i == 1:
                with np.errstate(divide="ignore"):
                    term -= np.log(p_hat[sequences[:, j]])  # (N, S^L)
                continue
            # q(x_{i-1}^j = a | x_i^j = b, x_0^j = c): (k, S^L, S)
            with np.errstate(divide="ignore", invalid="ignore"):
                q_post = steps[i - 1][:, b].T[None] * qbar[i - 1][:k][:, None, :] / lik[:, b][:, :, None]
            q_post = np.nan_to_num(q_post, nan=0.0, posinf=0.0)
            p_step = np.einsum("ks,ksa->sa", p_hat, q_post)  # (S^L, S)
            kl = xlogy_ratio(q_post, p_step[None]).sum(-1)  # (k, S^L)
            term += kl[sequences[:, j]]
        with np.errstate(invalid="ignore"):  # unreachable states: 0 * inf, dropped by the where
            per_seq = per_seq + np.where(q_x > 0, q_x * term, 0.0).sum(1)
    return per_seq
