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


def loss_curve(metrics_jsonl: Path, path: Path) -> Path | None:
    """Training loss (and its running mean) against step, from the run's metrics log."""
    steps, losses = [], []
    for line in Path(metrics_jsonl).read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "train":
            steps.append(rec["step"])
            losses.append(rec["loss"])
    if not steps:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, losses, lw=0.8, alpha=0.5, label="loss")
    if len(losses) >= 10:
        w = max(len(losses) // 20, 2)
        smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1 :], smooth, lw=1.5, label=f"running mean ({w})")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if min(losses) > 0 and max(losses) / min(losses) > 20:
        ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def scatter_2d(samples: Tensor, data: Tensor, path: Path, *, title: str = "") -> Path:
    """Samples drawn over data points."""
    s = samples[:SCATTER_POINTS].cpu().numpy()
    d = data[:SCATTER_POINTS].cpu().numpy()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(d[:, 0], d[:, 1], s=2, alpha=0.3, c="gray", label="data")
    ax.scatter(s[:, 0], s[:, 1], s=2, alpha=0.5, c="tab:blue", label="samples")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=4)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def trajectory_2d(trajectory: list[tuple[float, Tensor]], path: Path) -> Path:
    """A row of scatter plots of x_t, from noise (left) to data (right)."""
    n = len(trajectory)
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.4))
    axes = np.atleast_1d(axes)
    lim = float(max(abs(x[:SCATTER_POINTS]).max() for _, x in trajectory[-1:])) * 1.3
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
