r"""A 2D discrete toy with an exact likelihood: a quantized ring of Gaussians on a K x K grid.

The data of Tran et al. 2019 (Discrete Flows, Sec. 4.1 and Fig. 2; edward2's
``sample_quantized_gaussian_mixture``), a quantized version of the mixture of Gaussians of Metz
et al. 2017: ``components`` equally weighted isotropic Gaussians with standard deviation ``std``
centred on a circle of radius ``radius``, each coordinate clipped to
:math:`\pm` ``half_width`` and rounded to the grid, :math:`v = \mathrm{round}(20 c) + 45` for the
defaults (K = 91 values per coordinate). Each example is 2 tokens in ``[0, K)``.

**Exact probabilities.** The coordinates of each component are independent, so the probability
of a cell is :math:`\sum_m \frac1M P_m(v_1)\,P_m(v_2)` with :math:`P_m(v)` the normal mass of the
interval that rounds to v (the clipped tails fall into the edge values). :meth:`DiscreteRing.log_pmf`
gives the K x K table in float64, :meth:`entropy` its entropy: the lower bound that any model's
bits per dimension approach (a model's test NLL minus it estimates KL(data || model)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ..utils import LN2
from .base import DATASETS, DataInfo, DataSource, GeneratedStream, TrainStream


@dataclass
class DiscreteRingConfig:
    """``data: {name: discrete_ring}``: Tran et al.'s quantized ring of Gaussians."""

    levels: int = 91  # K values per coordinate (odd: the grid is centred)
    components: int = 8  # Gaussians on the ring
    radius: float = 2.0  # ring radius (continuous units)
    std: float = 0.1  # standard deviation of each Gaussian
    half_width: float = 2.25  # coordinates are clipped to [-half_width, half_width]
    eval_size: int = 10_000  # examples in each of the val and test splits
    eval_seed: int = 2019  # seed of the fixed val / test examples

    def __post_init__(self) -> None:
        if self.levels < 3 or self.levels % 2 == 0:
            raise ValueError(f"levels must be an odd number >= 3, got {self.levels}")
        if self.components < 1 or self.radius < 0 or self.std <= 0 or self.half_width <= 0:
            raise ValueError("need components >= 1, radius >= 0, std > 0 and half_width > 0")
        if self.eval_size < 1:
            raise ValueError(f"eval_size must be >= 1, got {self.eval_size}")

    @property
    def scale(self) -> float:
        """Grid steps per continuous unit: the clip range maps onto the K values."""
        return (self.levels // 2) / self.half_width


class DiscreteRing(DataSource):
    """Endless draws from the quantized ring, fixed val / test draws, and the exact table."""

    def __init__(self, config: DiscreteRingConfig) -> None:
        self.config = config
        self.info = DataInfo(event_shape=(2,), kind="tokens", vocab_size=config.levels)
        angles = torch.arange(config.components, dtype=torch.float64) * 2 * math.pi / config.components
        self.means = config.radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` examples ``(n, 2)`` long."""
        c = self.config
        k = torch.randint(0, c.components, (n,), generator=generator)
        points = self.means[k] + c.std * torch.randn(n, 2, generator=generator, dtype=torch.float64)
        clipped = points.clamp(-c.half_width, c.half_width)
        return (torch.round(clipped * c.scale) + c.levels // 2).long()

    def log_pmf(self) -> Tensor:
        """The exact ``(K, K)`` table of log-probabilities (row: first coordinate), float64."""
        c = self.config
        v = torch.arange(c.levels, dtype=torch.float64) - c.levels // 2
        edges = torch.cat([v - 0.5, v[-1:] + 0.5]) / c.scale  # cell edges in continuous units
        edges[0], edges[-1] = -math.inf, math.inf  # clipping puts the tails into the edge cells
        normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), c.std)
        cdf = normal.cdf(edges[None, None, :] - self.means[:, :, None])  # (M, 2, K + 1)
        mass = cdf[..., 1:] - cdf[..., :-1]  # (M, 2, K)
        table = torch.einsum("mi,mj->ij", mass[:, 0], mass[:, 1]) / c.components
        return torch.log(table)

    def entropy(self) -> float:
        """Entropy of the table in nats per example."""
        log_p = self.log_pmf()
        p = log_p.exp()
        return float(-(p * torch.where(p > 0, log_p, 0.0)).sum())

    def train_stream(self, seed: int) -> TrainStream:
        return GeneratedStream(lambda n, g: (self.sample(n, g), None), seed)

    def split(self, name: Literal["val", "test"]) -> tuple[Tensor, Tensor | None]:
        offset = {"val": 0, "test": 1}[name]
        return self.sample(
            self.config.eval_size, torch.Generator().manual_seed(self.config.eval_seed + offset)
        ), None

    def sample_metrics(self, samples: Tensor, cond: Tensor | None = None) -> dict[str, float]:
        """Total variation between the samples' histogram and the exact table, beside the same
        figure for as many fresh data draws (the sampling-noise floor), and the data entropy."""
        K = self.config.levels
        p = self.log_pmf().exp().flatten()

        def tv(x: Tensor) -> float:
            counts = torch.bincount(x[:, 0] * K + x[:, 1], minlength=K * K).double()
            return 0.5 * float((counts / counts.sum() - p).abs().sum())

        reference = self.sample(len(samples), torch.Generator().manual_seed(self.config.eval_seed + 2))
        return {
            "tv": tv(samples.cpu().long()),
            "tv_data_floor": tv(reference),
            "data_entropy_bits_per_dim": self.entropy() / 2 / LN2,
        }

    def save_samples(self, samples: Tensor, stem: Path, cond: Tensor | None = None) -> list[Path]:
        npy = stem.with_suffix(".npy")
        np.save(npy, samples.cpu().numpy())
        K = self.config.levels
        counts = torch.bincount(samples[:, 0].cpu() * K + samples[:, 1].cpu(), minlength=K * K)
        tables = {"data (exact)": self.log_pmf().exp(), f"samples ({len(samples)})": counts.reshape(K, K)}
        return [npy, grid_histograms(tables, stem.with_suffix(".png"))]


def grid_histograms(tables: dict[str, Tensor], path: Path) -> Path:
    """Side-by-side heat maps of ``(K, K)`` tables (first coordinate horizontal)."""
    from ..plots import plt

    fig, axes = plt.subplots(1, len(tables), figsize=(3.2 * len(tables), 3.4))
    for ax, (title, table) in zip(np.atleast_1d(axes), tables.items()):
        ax.imshow(table.double().T.numpy(), origin="lower", cmap="Blues", interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@DATASETS.register("discrete_ring", config=DiscreteRingConfig)
def build_discrete_ring(config: DiscreteRingConfig, state: dict | None = None) -> DiscreteRing:
    return DiscreteRing(config)
