"""Moons: W2 of each sampler beside the arcs' mass split and the W2 after rebalancing that split.

Trains ``configs/toy2d/ddpm.yaml`` on moons into RUN_DIR (unless a run is there), draws 10,000
samples with ancestral (1,000 steps), DDIM (50) and PF-ODE Heun (100) from the same checkpoint,
and reports for each: exact W2 against 10,000 fresh points, the fraction of samples nearer the
inner arc, and the W2 after subsampling the samples to the fresh data's inner/outer split.

    python benchmarks/toy2d_arc_balance.py RUN_DIR [key=value ...]
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

from discodiff.build import load_run
from discodiff.data.toy2d import sample_toy2d
from discodiff.metrics.w2 import wasserstein2
from discodiff.run import train_run
from discodiff.runconfig import load_config

ROOT = Path(__file__).resolve().parents[1]
SAMPLERS = (("ancestral", 1000), ("ddim", 50), ("ode_heun", 100))


def arc_points(inner: bool) -> torch.Tensor:
    """A dense grid over one arc of the moons recipe (angle x shift), in data units."""
    angle, shift = torch.meshgrid(torch.linspace(0, math.pi, 600), torch.linspace(0, 0.2, 21), indexing="ij")
    if inner:
        pts = torch.stack([1 - torch.cos(angle) + shift, 0.5 - torch.sin(angle) + shift], -1)
    else:
        pts = torch.stack([torch.cos(angle) + shift, torch.sin(angle) + shift], -1)
    return pts.reshape(-1, 2) * 3 - 1


OUTER, INNER = arc_points(False), arc_points(True)


def nearer_inner(x: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x, INNER).min(1).values < torch.cdist(x, OUTER).min(1).values


def rebalanced_w2(x: torch.Tensor, ref: torch.Tensor, inner_fraction: float) -> float:
    """W2 after subsampling ``x`` to ``inner_fraction`` on the inner arc (as many points as fit)."""
    mask = nearer_inner(x)
    n = int(min(mask.sum() / inner_fraction, (~mask).sum() / (1 - inner_fraction)))
    n_inner = round(n * inner_fraction)
    kept = torch.cat([x[mask][:n_inner], x[~mask][: n - n_inner]])
    return wasserstein2(kept, ref[:n])


def main() -> None:
    run_dir, overrides = Path(sys.argv[1]), sys.argv[2:]
    if not run_dir.exists():
        cfg = load_config(
            ROOT / "configs" / "toy2d" / "ddpm.yaml",
            [
                "data.dataset=moons",
                "train.ckpt_every=1000000",
                "eval.num_samples=0",
                "eval.nll_examples=100",
                *overrides,
            ],
        )
        train_run(cfg, run_dir, progress=False)
    run = load_run(run_dir, device=torch.device("cpu"))
    fresh = sample_toy2d("moons", 10_000, torch.Generator().manual_seed(101))
    ref_inner = float(nearer_inner(fresh).float().mean())
    row = {"run": str(run_dir), "train_steps": run.step, "fresh_inner_fraction": ref_inner}
    for sampler, steps in SAMPLERS:
        x = run.method.sample(
            10_000, sampler=sampler, steps=steps, generator=torch.Generator().manual_seed(0)
        ).x
        row[sampler] = {
            "w2": wasserstein2(x, fresh),
            "inner_fraction": float(nearer_inner(x).float().mean()),
            "w2_rebalanced": rebalanced_w2(x, fresh, ref_inner),
            "max_abs": float(x.abs().max()),
        }
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
