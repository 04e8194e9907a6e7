"""Reading tabular data files into train / val / test splits, for :mod:`discodiff.data.arrays`.

Three file types, never unpickled:

- ``.npy``: one 2D float array, rows = examples;
- ``.csv``: numeric, comma separated (``skip_header`` for a header line);
- ``.npz``: named arrays, as users keep data sets: ``key`` names the examples (the training rows
  when a test array is given), ``test_key`` / ``val_key`` a given test / validation split, and
  ``labels_key`` (``test_labels_key``, ``val_labels_key``) integer class labels in their own
  arrays.

Without a given split, a fixed permutation (``split_seed``) cuts the rows into test, val and train
by ``test_fraction`` and ``val_fraction``; with a given test array, validation rows come from
``val_key`` or else ``val_fraction`` of the training rows.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, DataError
from .base import check_finite

NPY_MAGIC = b"\x93NUMPY"
"""The first bytes of every ``.npy`` file (NumPy's format specification)."""

Split = tuple[Tensor, "Tensor | None"]
"""Examples ``(n, D)`` float64 and their labels ``(n,)`` long (or ``None``)."""


class SplitOptions(Protocol):
    """The fields of ``ArrayConfig`` this module reads."""

    path: str
    key: str | None
    test_key: str | None
    val_key: str | None
    labels_key: str | None
    test_labels_key: str | None
    val_labels_key: str | None
    label_column: int | None
    skip_header: bool
    val_fraction: float
    test_fraction: float
    split_seed: int


def _check_2d(arr: np.ndarray, where: str) -> np.ndarray:
    """A non-empty 2D array of real numbers (bool, integer or float) as float64."""
    if arr.dtype.kind not in "biuf":
        lost = " (its imaginary part would be lost)" if arr.dtype.kind == "c" else ""
        raise DataError(f"{where} holds {arr.dtype} values{lost}; expected real numbers (integer or float)")
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{where}: expected a non-empty 2D array (rows = examples), got shape {arr.shape}")
    return arr.astype(np.float64)


def read_array(path: Path, *, skip_header: bool) -> np.ndarray:
    """A 2D float64 array from ``.npy`` (never pickled objects) or ``.csv``; errors name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    if path.suffix == ".npy":
        with open(path, "rb") as f:
            if f.read(len(NPY_MAGIC)) != NPY_MAGIC:
                raise DataError(
                    f"{path} is not a NumPy .npy file (it lacks the .npy header); save arrays with "
                    "numpy.save, or name a comma-separated text file .csv"
                )
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, EOFError, OSError) as err:
            if "allow_pickle" in str(err):
                raise DataError(
                    f"{path} holds Python objects (dtype object), which are never unpickled; save a "
                    "numeric array"
                ) from None
            raise DataError(f"{path}: cannot read the .npy file ({err})") from None
    elif path.suffix == ".csv":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # numpy's "input contained no data"
                arr = np.loadtxt(path, delimiter=",", skiprows=int(skip_header), ndmin=2)
        except ValueError as err:
            raise DataError(f"{path}: not a numeric CSV ({err}); set skip_header for a header line") from None
    else:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; allowed: .npy, .npz, .csv")
    return _check_2d(arr, str(path))


class _Npz:
    """The named arrays of an ``.npz`` file, read one at a time with errors naming the key."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"data file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as npz:
                self.arrays = {name: npz[name] for name in npz.files}
        except ValueError as err:
            raise DataError(f"{path}: not a plain numeric .npz archive ({err})") from None
        self.path = path

    def get(self, key: str, field: str) -> np.ndarray:
        if key not in self.arrays:
            raise ConfigError(
                f"data.{field}: {self.path} has no array {key!r}; it holds: {', '.join(sorted(self.arrays))}"
            )
        return self.arrays[key]

    def features(self, key: str, field: str) -> Tensor:
        return torch.from_numpy(_check_2d(self.get(key, field), f"{self.path}[{key!r}] (data.{field})"))

    def labels(self, key: str, field: str, rows: int) -> Tensor:
        y = self.get(key, field)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or len(y) != rows:
            raise ConfigError(
                f"data.{field}: {self.path}[{key!r}] has shape {y.shape}; expected ({rows},), "
                "one label per row"
            )
        return _as_labels(y, f"{self.path}[{key!r}] (data.{field})")


def _as_labels(y: np.ndarray, where: str) -> Tensor:
    if not np.issubdtype(y.dtype, np.number) or not np.all(y == np.round(y)) or y.min() < 0:
        raise DataError(f"{where} must hold non-negative integer labels")
    return torch.from_numpy(y.astype(np.int64))


def _split_rows(n: int, fractions: tuple[float, float], seed: int) -> dict[str, Tensor]:
    """Row indices of (test, val, train) under a fixed permutation; ``fractions`` = (test, val)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = max(1, int(n * fractions[0])) if fractions[0] > 0 else 0
    n_val = int(n * fractions[1])
    return {"test": perm[:n_test], "val": perm[n_test : n_test + n_val], "train": perm[n_test + n_val :]}


def _take(split: Split, idx: Tensor) -> Split:
    x, y = split
    return x[idx], None if y is None else y[idx]


def _single_table(config: SplitOptions, path: Path) -> Split:
    """All rows of a ``.npy`` / ``.csv`` file, with labels from ``label_column``."""
    arr = read_array(path, skip_header=config.skip_header)
    labels = None
    if config.label_column is not None:
        if not -arr.shape[1] <= config.label_column < arr.shape[1]:
            raise DataError(
                f"data.label_column {config.label_column} is outside the {arr.shape[1]} columns of {path}"
            )
        labels = _as_labels(arr[:, config.label_column], f"data.label_column {config.label_column} of {path}")
        arr = np.delete(arr, config.label_column, axis=1)
    return torch.from_numpy(arr), labels


def _npz_split(npz: _Npz, key: str, field: str, labels_key: str | None, labels_field: str) -> Split:
    x = npz.features(key, field)
    return x, None if labels_key is None else npz.labels(labels_key, labels_field, len(x))


def _examples_key(npz: _Npz, key: str | None) -> str:
    if key is not None:
        return key
    if len(npz.arrays) != 1:
        raise ConfigError(
            f"data.key: {npz.path} holds {len(npz.arrays)} arrays ({', '.join(sorted(npz.arrays))}); "
            "name the one with the examples"
        )
    return next(iter(npz.arrays))


def read_splits(config: SplitOptions) -> dict[str, Split]:
    """``{"train", "val", "test"}`` -> (examples float64, labels or None); see the module docstring."""
    path = Path(config.path).expanduser()
    given: dict[str, Split] = {}
    if path.suffix != ".npz":
        used = [f for f in ("key", "test_key", "val_key", "labels_key") if getattr(config, f) is not None]
        if used:
            raise ConfigError(f"data.{used[0]} names an array inside an .npz file; {path} is {path.suffix}")
        whole = _single_table(config, path)
    else:
        if config.label_column is not None:
            raise ConfigError("data.label_column is for .npy / .csv tables; in an .npz use data.labels_key")
        npz = _Npz(path)
        whole = _npz_split(npz, _examples_key(npz, config.key), "key", config.labels_key, "labels_key")
        for name in ("test", "val"):
            key, labels_key = getattr(config, f"{name}_key"), getattr(config, f"{name}_labels_key")
            if key is None:
                continue
            if (labels_key is None) != (config.labels_key is None):
                raise ConfigError(
                    f"data.{name}_labels_key and data.labels_key must be given together: labels are "
                    "needed for every split or none"
                )
            given[name] = _npz_split(npz, key, f"{name}_key", labels_key, f"{name}_labels_key")
    check_finite(whole[0], f"data file {path}")
    dims = whole[0].shape[1]
    for name, (x, _) in given.items():
        check_finite(x, f"data file {path}, the {name} array")
        if x.shape[1] != dims:
            raise DataError(
                f"data.{name}_key: the {name} array has {x.shape[1]} columns, the examples {dims}"
            )
    splits = dict(given)
    rows = _split_rows(
        len(whole[0]),
        (0.0 if "test" in splits else config.test_fraction, 0.0 if "val" in splits else config.val_fraction),
        config.split_seed,
    )
    for name, idx in rows.items():
        if name not in splits:
            splits[name] = _take(whole, idx)
    if len(splits["train"][0]) == 0:
        raise DataError(f"data file {path} has too few rows ({len(whole[0])}) for the splits")
    return {name: splits[name] for name in ("train", "val", "test")}
