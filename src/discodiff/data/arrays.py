"""Tabular data from a local ``.npy``, ``.npz`` or ``.csv`` file: one example per row, float
features.

A fixed seeded permutation splits the rows into train / val / test, unless the file gives its own
test (and validation) split: an ``.npz`` with named arrays (``key``, ``test_key``, ``val_key``)
and labels in their own arrays (``labels_key``, ...); see :mod:`.array_files`. In a ``.npy`` or
``.csv`` table one column can hold integer class labels. Features can be standardized with the
training split's mean and std (stored in the run's data state so samples map back to the original
units). Likelihoods (through :meth:`ArrayData.unit_log_jacobian`) and W2 are reported in the
file's units.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from ..metrics.w2 import wasserstein2
from .array_files import read_splits
from .base import DATASETS, DataInfo, DataSource, TensorStream, TrainStream

W2_MAX_POINTS = 5000
"""Exact W2 costs O(n^2) memory; larger sample sets are subsampled to this many points."""
MIN_TRAIN_ROWS = 2
"""Training rows needed to estimate a standard deviation (standardize: true)."""
FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class ArrayConfig:
    """``data: {name: array, path: data.csv}`` or ``{name: array, path: f.npz, key: x, test_key:
    x_test, labels_key: y, test_labels_key: y_test}``."""

    path: str = ""  # .npy (2D float array), .npz (named arrays) or .csv (numeric, comma separated)
    key: str | None = None  # .npz: the examples' array (None: the file's only array)
    test_key: str | None = None  # .npz: a given test split (else test_fraction of the rows)
    val_key: str | None = None  # .npz: a given validation split (else val_fraction of the rows)
    labels_key: str | None = None  # .npz: integer class labels of the `key` rows, in their own array
    test_labels_key: str | None = None  # .npz: labels of the test_key rows
    val_labels_key: str | None = None  # .npz: labels of the val_key rows
    label_column: int | None = None  # .npy / .csv: column of integer class labels (removed from features)
    skip_header: bool = False  # .csv: the first line is a header
    standardize: bool = True  # scale features to zero mean, unit std (training split statistics)
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("data.path is required: a .npy, .npz or .csv file with one example per row")
        if not (
            0 <= self.val_fraction < 1
            and 0 < self.test_fraction < 1
            and self.val_fraction + self.test_fraction < 1
        ):
            raise ValueError("data.val_fraction and data.test_fraction must be in [0, 1) and sum below 1")
        for name in ("test", "val"):
            if getattr(self, f"{name}_labels_key") is not None and getattr(self, f"{name}_key") is None:
                raise ValueError(f"data.{name}_labels_key needs data.{name}_key (the {name} examples)")


def _standardize(train: Tensor, path: str) -> tuple[Tensor, Tensor]:
    """Mean and std of the training rows, refusing columns whose variance overflows float64."""
    mean, std = train.mean(0), train.std(0).clamp_min(torch.finfo(torch.float64).eps)
    bad = (~torch.isfinite(mean) | ~torch.isfinite(std)).nonzero().flatten()
    if len(bad):
        j = int(bad[0])
        raise DataError(
            f"data file {path}: column {j} (values up to {float(train[:, j].abs().max()):.3g}) is too large "
            "to standardize (its variance overflows float64); rescale the data"
        )
    return mean, std


class ArrayData(DataSource):
    """Rows of a numeric table as vectors ``(N, D)`` float32."""

    def __init__(self, config: ArrayConfig, state: dict | None = None) -> None:
        self.config = config
        raw = read_splits(config)  # name -> (examples (n, D) float64, labels (n,) long or None)
        train = raw["train"][0]
        needed = MIN_TRAIN_ROWS if config.standardize and not state else 1
        if len(train) < needed:
            why = " to standardize (or set data.standardize: false)" if needed > 1 else ""
            raise DataError(
                f"data file {config.path}: {len(train)} rows remain for training after the test and "
                f"validation rows; at least {needed} are needed{why}"
            )
        if state:
            mean, std = torch.tensor(state["mean"]), torch.tensor(state["std"])
        elif config.standardize:
            mean, std = _standardize(train, config.path)
        else:
            mean, std = torch.zeros(train_dims(raw)), torch.ones(train_dims(raw))
        self.mean, self.std = mean.double(), std.double()
        self._splits = {k: (self._scaled(x), y) for k, (x, y) in raw.items()}
        labels = [y for _, y in raw.values() if y is not None]
        classes = max(int(y.max()) for y in labels) + 1 if labels else 0
        self.info = DataInfo(event_shape=(train_dims(raw),), num_classes=classes)

    def _scaled(self, x: Tensor) -> Tensor:
        """Standardized float32 features, refusing values float32 cannot hold."""
        scaled = (x - self.mean) / self.std
        if len(scaled) and scaled.abs().max() > FLOAT32_MAX:
            fix = "rescale the data" + ("" if self.config.standardize else " or set data.standardize: true")
            raise DataError(
                f"data file {self.config.path}: values up to {float(scaled.abs().max()):.3g} do not fit "
                f"in float32 (largest {FLOAT32_MAX:.3g}); {fix}"
            )
        return scaled.float()

    def state_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    def train_stream(self, seed: int) -> TrainStream:
        x, cond = self._splits["train"]
        return TensorStream(x, cond, seed)

    def split(self, name: Literal["val", "test"]) -> tuple[Tensor, Tensor | None]:
        return self._splits[name]

    def unit_log_jacobian(self) -> float:
        r""":math:`\sum_j \log s_j`: the standardization's log-Jacobian, so bits/dim are in the file's
        units (multiplying the data by c adds :math:`\log_2 c` bits per dimension)."""
        return float(torch.log(self.std).sum())

    def to_data_units(self, x: Tensor) -> Tensor:
        """Model-space vectors back in the file's units (standardization undone), float64."""
        return x.double().cpu() * self.std + self.mean

    def sample_metrics(self, samples: Tensor, cond: Tensor | None = None) -> dict[str, float]:
        """W2 to the test split, in the file's units."""
        ref = self._splits["test"][0]
        n = min(len(samples), len(ref), W2_MAX_POINTS)
        return {"w2": wasserstein2(self.to_data_units(samples[:n]), self.to_data_units(ref[:n]))}

    def save_samples(self, samples: Tensor, stem: Path, cond: Tensor | None = None) -> list[Path]:
        """Samples in the file's original units (standardization undone) as .npy."""
        path = stem.with_suffix(".npy")
        np.save(path, self.to_data_units(samples).numpy())
        return [path]


def train_dims(splits: dict[str, tuple[Tensor, Tensor | None]]) -> int:
    """Number of features per example."""
    return splits["train"][0].shape[1]


@DATASETS.register("array", config=ArrayConfig)
def build_array(config: ArrayConfig, state: dict | None = None) -> ArrayData:
    return ArrayData(config, state)
