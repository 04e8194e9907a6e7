"""Image figures: a sample grid (one row per class when labels are given), a denoising strip
(x_t at several t) and an inpainting figure (masked input, samples, original).

Images are ``(N, C, H, W)`` tensors with values in [-1, 1] and C = 1 (grey) or 3 (RGB); values
outside [-1, 1] are clipped for display, and NaN pixels (unknown or masked) are drawn in
:data:`MISSING_COLOR`. Each figure is one mosaic drawn with a single ``imshow``, so grids of
hundreds of images stay fast.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor

from .base import NULL_LABEL

MISSING_COLOR = (0.85, 0.25, 0.25)
"""Colour of NaN pixels: unknown pixels of an inpainting input, [MASK] tokens."""

GRID_MAX_IMAGES = 100
"""Images drawn in an unlabelled sample grid."""

GRID_MAX_PER_CLASS = 10
"""Images per row (class) in a labelled sample grid."""

STRIP_MAX_ROWS = 8
"""Samples drawn in a denoising strip."""

PAD = 1
"""Pixels between tiles of a mosaic."""

FIGURE_INCHES = 8.0
"""Target size of a mosaic's longer side (at 100 dpi), within the per-pixel bounds below."""

MIN_INCHES_PER_PIXEL, MAX_INCHES_PER_PIXEL = 0.02, 0.08
"""Each image pixel is drawn 2 to 8 figure pixels wide."""


def _mosaic(tiles: list[list[Tensor | None]]) -> np.ndarray:
    """Rows of (C, H, W) tiles (``None``: empty) -> an (rows*(H+PAD), cols*(W+PAD), 3) RGB array in
    [0, 1] with NaN where pixels are missing; the gaps between tiles are white."""
    shape = next(t.shape for row in tiles for t in row if t is not None)
    _, h, w = shape
    cols = max(len(row) for row in tiles)
    out = np.ones((len(tiles) * (h + PAD) - PAD, cols * (w + PAD) - PAD, 3))
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            if tile is None:
                continue
            img = ((tile.detach().cpu().double().clamp(-1, 1) + 1) / 2).numpy()  # NaN stays NaN
            rgb = np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img[:3]
            out[r * (h + PAD) : r * (h + PAD) + h, c * (w + PAD) : c * (w + PAD) + w] = rgb.transpose(1, 2, 0)
    return out


def _draw(mosaic: np.ndarray, path: Path, *, row_names: list[str], col_names: list[str], title: str) -> Path:
    """Save a mosaic with optional row and column names; NaN pixels in :data:`MISSING_COLOR`."""
    rgb = np.where(np.isnan(mosaic), np.array(MISSING_COLOR), mosaic)
    height, width = rgb.shape[:2]
    scale = min(max(FIGURE_INCHES / max(width, height), MIN_INCHES_PER_PIXEL), MAX_INCHES_PER_PIXEL)
    fig, ax = plt.subplots(figsize=(width * scale + 1.2, height * scale + 0.6))
    ax.imshow(rgb, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    n_rows, n_cols = len(row_names), len(col_names)
    if n_rows:
        step = (height + PAD) / n_rows
        ax.set_yticks([(i + 0.5) * step - PAD for i in range(n_rows)], row_names, fontsize=8)
        ax.tick_params(axis="y", length=0)
    if n_cols:
        step = (width + PAD) / n_cols
        ax.set_xticks([(i + 0.5) * step - PAD for i in range(n_cols)], col_names, fontsize=8)
        ax.xaxis.tick_top()
        ax.tick_params(axis="x", length=0)
    if title:
        ax.set_title(title, fontsize=10, pad=14 if n_cols else 4)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def _class_name(label: int) -> str:
    return "null" if label == NULL_LABEL else str(label)


def image_grid(images: Tensor, path: Path, *, labels: Tensor | None = None, title: str = "") -> Path:
    """Sample grid: the first :data:`GRID_MAX_IMAGES` images in a square, or with ``labels`` (N,)
    one row per class (the null class last) of up to :data:`GRID_MAX_PER_CLASS` images."""
    if labels is None:
        shown = images[:GRID_MAX_IMAGES]
        cols = math.ceil(math.sqrt(len(shown)))
        tiles = [list(shown[i : i + cols]) for i in range(0, len(shown), cols)]
        return _draw(_mosaic(tiles), path, row_names=[], col_names=[], title=title)
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {tuple(labels.shape)}")
    classes = sorted(set(labels.tolist()), key=lambda c: (c == NULL_LABEL, c))
    tiles = [list(images[labels == c][:GRID_MAX_PER_CLASS]) for c in classes]
    return _draw(_mosaic(tiles), path, row_names=[_class_name(c) for c in classes], col_names=[], title=title)


def denoising_strip(frames: list[tuple[float, Tensor]], path: Path, *, title: str = "") -> Path:
    """x_t at several t (columns, from noise to data) for up to :data:`STRIP_MAX_ROWS` samples (rows)."""
    if not frames:
        raise ValueError("a denoising strip needs at least one (t, x_t) frame")
    rows = min(STRIP_MAX_ROWS, len(frames[0][1]))
    tiles = [[x[i] for _, x in frames] for i in range(rows)]
    names = [f"t={t:.3g}" for t, _ in frames]
    return _draw(_mosaic(tiles), path, row_names=[], col_names=names, title=title)


def inpainting_figure(
    original: Tensor, known_mask: Tensor, samples: list[Tensor], path: Path, *, title: str = ""
) -> Path:
    """One row per image: the masked input (unknown pixels in :data:`MISSING_COLOR`), each of the
    ``samples`` (a list of (N, C, H, W) completions), and the original.

    Args:
        original: ``(N, C, H, W)`` images in [-1, 1].
        known_mask: bool, same shape; True where the sampler was given the pixel.
        samples: completions, each ``(N, C, H, W)``.
    """
    if known_mask.shape != original.shape or any(s.shape != original.shape for s in samples):
        raise ValueError("original, known_mask and every sample must have the same shape")
    masked = torch.where(known_mask.cpu(), original.detach().cpu().float(), torch.nan)
    tiles = [[masked[i], *(s[i] for s in samples), original[i]] for i in range(len(original))]
    names = ["input", *(f"sample {k + 1}" for k in range(len(samples))), "original"]
    return _draw(_mosaic(tiles), path, row_names=[], col_names=names, title=title)
