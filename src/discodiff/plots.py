"""Figures written into run directories (matplotlib, no screen needed)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from torch import Tensor

SCATTER_POINTS = 5000
"""Points drawn per cloud in 2D scatter plots (more only hides the density)."""


def loss_curve(
    metrics_jsonl: Path, path: Path, *, label: str = "loss", window: int | None = None
) -> Path | None:
    """Training loss against step, from the run's metrics log (each value the mean over one
    logging window of ``window`` steps), with a running mean; ``label`` names the quantity and
    its unit on the y-axis."""
    steps, losses = [], []
    for line in Path(metrics_jsonl).read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "train":
            steps.append(rec["step"])
            losses.append(rec["loss"])
    if not steps:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    each = f"mean over each {window} steps" if window else "logged value"
    ax.plot(steps, losses, lw=0.8, alpha=0.5, label=each)
    if len(losses) >= 10:
        w = max(len(losses) // 20, 2)
        smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1 :], smooth, lw=1.5, label=f"running mean of {w} points")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(f"training loss: {label}")
    if min(losses) > 0 and max(losses) / min(losses) > 20:
        ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


AXIS_MARGIN = 0.1
"""Scatter axes span the data's range plus this fraction of it on each side."""


def scatter_limits(samples: Tensor, data: Tensor) -> tuple[np.ndarray, np.ndarray, int]:
    """Axis limits ``(low (2,), high (2,))`` from the data's range with a margin, and how many
    samples fall outside them (a few far outliers no longer squeeze the picture into a corner)."""
    d = data.detach().cpu().double().numpy()
    lo, hi = d.min(0), d.max(0)
    span = np.maximum(hi - lo, np.finfo(np.float64).eps)
    lo, hi = lo - AXIS_MARGIN * span, hi + AXIS_MARGIN * span
    s = samples.detach().cpu().double().numpy()
    inside = np.all((s >= lo) & (s <= hi), axis=1)
    return lo, hi, int((~inside).sum())


def scatter_2d(samples: Tensor, data: Tensor, path: Path, *, title: str = "") -> Path:
    """Samples drawn over data points, on axes fitted to the data; the title says how many
    samples lie outside them."""
    lo, hi, outside = scatter_limits(samples, data)
    s = samples[:SCATTER_POINTS].cpu().numpy()
    d = data[:SCATTER_POINTS].cpu().numpy()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(d[:, 0], d[:, 1], s=2, alpha=0.3, c="gray", label="data")
    ax.scatter(s[:, 0], s[:, 1], s=2, alpha=0.5, c="tab:blue", label="samples")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=4)
    note = f"{outside} of {len(samples)} samples outside the axes" if outside else ""
    ax.set_title("\n".join(part for part in (title, note) if part), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


TRAJECTORY_QUANTILE = 0.995
"""The trajectory's axes reach 1.3 times this quantile of the final samples' coordinates."""


def trajectory_2d(trajectory: list[tuple[float, Tensor]], path: Path) -> Path:
    """A row of scatter plots of x_t, from noise (left) to data (right)."""
    n = len(trajectory)
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.4))
    axes = np.atleast_1d(axes)
    final = trajectory[-1][1][:SCATTER_POINTS].detach().cpu().abs().double().numpy()
    lim = float(np.quantile(final, TRAJECTORY_QUANTILE)) * 1.3  # a few outliers do not set the scale
    for ax, (t, x) in zip(axes, trajectory):
        pts = x[:SCATTER_POINTS].cpu().numpy()
        ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.4)
        ax.set_title(f"t = {t:.3g}", fontsize=9)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
