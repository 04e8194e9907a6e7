"""Built-in 2D data sets, with the recipes used by torchcfm so W2 figures compare with theirs.

Each recipe draws i.i.d. points from a torch generator (the reference code uses numpy's global
state or evenly spaced angles; the distributions are the same):

- ``8gaussians``: torchcfm ``sample_8gaussians``: 8 centres at radius 5, covariance
  ``sqrt(0.1) * I`` (their ``MultivariateNormal(0, sqrt(var) * I)``, var = 0.1).
- ``moons``: torchcfm ``sample_moons``: torchdyn's two moons, each point shifted along (1, 1) by
  ``0.2 * U(0, 1)``, then ``3 x - 1``.
- ``scurve``: torchcfm runner's ``SKLearnDataModule``: sklearn's S-curve with noise 0.05,
  coordinates (x, z), times 1.5.
- ``circles``: the same module's ``make_circles(factor=0.5, noise=0.05)``, times 3.5.
- ``checkerboard`` and ``swissroll``: FFJORD's ``toy_data`` (which torchcfm's 2D module cites):
  the 4x4 checkerboard times 2; sklearn's swiss roll with noise 1.0, coordinates (x, z), over 5.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from ..metrics.w2 import wasserstein2
from .base import DATASETS, DataInfo, DataSource, GeneratedStream, TrainStream

Draw = Callable[[int, torch.Generator], Tensor]


def _eight_gaussians(n: int, g: torch.Generator) -> Tensor:
    r = 1 / math.sqrt(2)
    centers = 5.0 * torch.tensor([[1, 0], [-1, 0], [0, 1], [0, -1], [r, r], [r, -r], [-r, r], [-r, -r]])
    idx = torch.randint(0, 8, (n,), generator=g)
    return centers[idx] + torch.randn(n, 2, generator=g) * 0.1**0.25


def _moons(n: int, g: torch.Generator) -> Tensor:
    angle = torch.rand(n, generator=g) * math.pi
    inner = torch.rand(n, generator=g) < 0.5
    x = torch.where(inner, 1 - torch.cos(angle), torch.cos(angle))
    y = torch.where(inner, 1 - torch.sin(angle) - 0.5, torch.sin(angle))
    shift = torch.rand(n, 1, generator=g) * 0.2
    return (torch.stack([x, y], dim=1) + shift) * 3 - 1


def _scurve(n: int, g: torch.Generator) -> Tensor:
    t = 3 * math.pi * (torch.rand(n, generator=g) - 0.5)
    x = torch.sin(t)
    z = torch.sign(t) * (torch.cos(t) - 1)
    return (torch.stack([x, z], dim=1) + 0.05 * torch.randn(n, 2, generator=g)) * 1.5


def _circles(n: int, g: torch.Generator) -> Tensor:
    angle = torch.rand(n, generator=g) * 2 * math.pi
    radius = torch.where(torch.rand(n, generator=g) < 0.5, 0.5, 1.0)
    pts = radius[:, None] * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    return (pts + 0.05 * torch.randn(n, 2, generator=g)) * 3.5


def _checkerboard(n: int, g: torch.Generator) -> Tensor:
    x1 = torch.rand(n, generator=g) * 4 - 2
    x2 = torch.rand(n, generator=g) - torch.randint(0, 2, (n,), generator=g) * 2
    x2 = x2 + torch.floor(x1) % 2
    return torch.stack([x1, x2], dim=1) * 2


def _swissroll(n: int, g: torch.Generator) -> Tensor:
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g))
    pts = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1)
    return (pts + 1.0 * torch.randn(n, 2, generator=g)) / 5


RECIPES: dict[str, Draw] = {
    "8gaussians": _eight_gaussians,
    "moons": _moons,
    "scurve": _scurve,
    "circles": _circles,
    "checkerboard": _checkerboard,
    "swissroll": _swissroll,
}


def sample_toy2d(name: str, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` points ``(n, 2)`` float32 from the named 2D data set."""
    if name not in RECIPES:
        raise ConfigError(f"unknown 2D data set {name!r}; allowed: {', '.join(RECIPES)}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    return RECIPES[name](n, g).float()


@dataclass
class Toy2DConfig:
    """``data: {name: toy2d, dataset: moons}``."""

    dataset: Literal["8gaussians", "moons", "scurve", "circles", "checkerboard", "swissroll"] = "8gaussians"
    eval_size: int = 10_000  # points in each of the val and test splits
    eval_seed: int = 2024  # seed of the fixed val/test points

    def __post_init__(self) -> None:
        if self.eval_size < 1:
            raise ValueError(f"eval_size must be >= 1, got {self.eval_size}")


class Toy2D(DataSource):
    """An endless 2D data set: fresh points every batch, fixed val/test points."""

    def __init__(self, config: Toy2DConfig) -> None:
        self.config = config
        self.name = config.dataset
        self.info = DataInfo(event_shape=(2,))

    def train_stream(self, seed: int) -> TrainStream:
        return GeneratedStream(lambda n, g: (sample_toy2d(self.name, n, g), None), seed)

    def split(self, name: Literal["val", "test"]) -> tuple[Tensor, Tensor | None]:
        offset = {"val": 0, "test": 1}[name]
        g = torch.Generator().manual_seed(self.config.eval_seed + offset)
        return sample_toy2d(self.name, self.config.eval_size, g), None

    def sample_metrics(self, samples: Tensor, cond: Tensor | None = None) -> dict[str, float]:
        ref, _ = self.split("test")
        n = min(len(samples), len(ref))
        return {"w2": wasserstein2(samples[:n], ref[:n])}

    def save_samples(self, samples: Tensor, stem: Path, cond: Tensor | None = None) -> list[Path]:
        from ..plots import scatter_2d

        npy = stem.with_suffix(".npy")
        np.save(npy, samples.cpu().numpy())
        png = scatter_2d(samples, self.split("test")[0], stem.with_suffix(".png"), title=self.name)
        return [npy, png]

    def plot_trajectory(self, trajectory: list[tuple[float, Tensor]], path: Path) -> Path:
        from ..plots import trajectory_2d

        return trajectory_2d(trajectory, path)


@DATASETS.register("toy2d", config=Toy2DConfig)
def build_toy2d(config: Toy2DConfig, state: dict | None = None) -> Toy2D:
    return Toy2D(config)
