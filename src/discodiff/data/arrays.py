"""Tabular data from a local ``.npy`` or ``.csv`` file: one example per row, float features.

A fixed seeded permutation splits the rows into train / val / test. Optionally one column holds
integer class labels, and features can be standardized with the training split's mean and std
(stored in the run's data state so samples map back to the original units). Likelihoods (through
:meth:`ArrayData.unit_log_jacobian`) and W2 are reported in the file's units.
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
from .base import DATASETS, DataInfo, DataSource, TensorStream, TrainStream, check_finite

W2_MAX_POINTS = 5000
"""Exact W2 costs O(n^2) memory; larger sample sets are subsampled to this many points."""


@dataclass
class ArrayConfig:
    """``data: {name: array, path: data.csv}``."""

    path: str = ""  # .npy (2D float array) or .csv (numeric, comma separated)
    label_column: int | None = None  # column of integer class labels (removed from the features)
    skip_header: bool = False  # .csv: the first line is a header
    standardize: bool = True  # scale features to zero mean, unit std (training split statistics)
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("data.path is required: a .npy or .csv file with one example per row")
        if not (
            0 <= self.val_fraction < 1
            and 0 < self.test_fraction < 1
            and self.val_fraction + self.test_fraction < 1
        ):
            raise ValueError("data.val_fraction and data.test_fraction must be in [0, 1) and sum below 1")


def read_array(path: Path, *, skip_header: bool) -> np.ndarray:
    """A 2D float64 array from ``.npy`` (never pickled objects) or ``.csv``."""
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
    elif path.suffix == ".csv":
        try:
            arr = np.loadtxt(path, delimiter=",", skiprows=int(skip_header), ndmin=2)
        except ValueError as err:
            raise DataError(f"{path}: not a numeric CSV ({err}); set skip_header for a header line") from None
    else:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; allowed: .npy, .csv")
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{path}: expected a non-empty 2D array (rows = examples), got shape {arr.shape}")
    return arr.astype(np.float64)


class ArrayData(DataSource):
    """Rows of a numeric table as vectors ``(N, D)`` float32."""

    def __init__(self, config: ArrayConfig, state: dict | None = None) -> None:
        self.config = config
        arr = read_array(Path(config.path), skip_header=config.skip_header)
        labels = None
        if config.label_column is not None:
            if not -arr.shape[1] <= config.label_column < arr.shape[1]:
                raise DataError(
                    f"data.label_column {config.label_column} is outside the {arr.shape[1]} columns"
                )
            col = arr[:, config.label_column]
            if not np.all(col == np.round(col)) or col.min() < 0:
                raise DataError("data.label_column must hold non-negative integer labels")
            labels = torch.from_numpy(col.astype(np.int64))
            arr = np.delete(arr, config.label_column, axis=1)
        x = torch.from_numpy(arr)
        check_finite(x, f"data file {config.path}")
        n = len(x)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(config.split_seed))
        n_test, n_val = max(1, int(n * config.test_fraction)), int(n * config.val_fraction)
        parts = {"test": perm[:n_test], "val": perm[n_test : n_test + n_val], "train": perm[n_test + n_val :]}
        if len(parts["train"]) == 0:
            raise DataError(f"data file {config.path} has too few rows ({n}) for the splits")
        if state:
            mean, std = torch.tensor(state["mean"]), torch.tensor(state["std"])
        elif config.standardize:
            train = x[parts["train"]]
            mean, std = train.mean(0), train.std(0).clamp_min(torch.finfo(torch.float64).eps)
        else:
            mean, std = torch.zeros(x.shape[1]), torch.ones(x.shape[1])
        self.mean, self.std = mean.double(), std.double()
        x = ((x - self.mean) / self.std).float()
        self._splits = {k: (x[idx], None if labels is None else labels[idx]) for k, idx in parts.items()}
        classes = 0 if labels is None else int(labels.max()) + 1
        self.info = DataInfo(event_shape=(x.shape[1],), num_classes=classes)

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


@DATASETS.register("array", config=ArrayConfig)
def build_array(config: ArrayConfig, state: dict | None = None) -> ArrayData:
    return ArrayData(config, state)
