"""Toy 2D benchmark: W2 from N(0, I) to 8gaussians, moons and scurve after a fixed CPU budget.

For each data set: train ``configs/toy2d/ddpm.yaml`` for ``--budget`` seconds of wall-clock time,
then draw 10,000 samples (ancestral, 1000 steps; and PF-ODE Heun, 100 steps) and compute the exact
W2 (POT, squared-Euclidean cost, square root) against 10,000 fresh data points, beside the
data-vs-data floor (two fresh 10k sets) and the published [SF]2M values (Tong et al. 2024,
Table 2). Likelihood: the variational bound and the PF-ODE NLL on 2,000 test points.

    python benchmarks/toy2d.py [--budget 180] [--out benchmarks/results]

Writes ``toy2d.json`` and ``toy2d.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from discodiff.build import load_run
from discodiff.data.toy2d import sample_toy2d
from discodiff.evaluate import likelihood
from discodiff.metrics.w2 import wasserstein2
from discodiff.run import train_run
from discodiff.runconfig import EvalConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED_SF2M = {"8gaussians": 0.303, "moons": 0.130, "scurve": 0.144}
N = 10_000


def bench_one(name: str, budget: float, work: Path) -> dict:
    cfg = load_config(
        ROOT / "configs" / "toy2d" / "ddpm.yaml",
        [
            f"data.dataset={name}",
            "train.steps=1000000",
            f"train.time_budget_s={budget}",
            "train.ckpt_every=1000000",
            "eval.num_samples=0",
            "eval.nll_examples=100",
        ],
    )
    run_dir = work / name
    t0 = time.perf_counter()
    train_run(cfg, run_dir, progress=False)
    train_seconds = time.perf_counter() - t0
    run = load_run(run_dir, device=torch.device("cpu"))
    fresh = sample_toy2d(name, N, torch.Generator().manual_seed(101))
    floor = wasserstein2(sample_toy2d(name, N, torch.Generator().manual_seed(202)), fresh)
    row = {
        "dataset": name,
        "train_steps": run.step,
        "train_seconds": train_seconds,
        "w2_floor": floor,
        "w2_published_sf2m": PUBLISHED_SF2M[name],
    }
    for sampler, steps in (("ancestral", 1000), ("ode_heun", 100)):
        t0 = time.perf_counter()
        out = run.method.sample(N, sampler=sampler, steps=steps, generator=torch.Generator().manual_seed(0))
        row[f"sample_seconds_{sampler}"] = time.perf_counter() - t0
        row[f"nfe_{sampler}"] = out.nfe
        row[f"w2_{sampler}"] = wasserstein2(out.x, fresh)
    nll = likelihood(
        run.method, run.data, EvalConfig(nll_examples=2000, batch_size=2000, estimators=["bound", "ode"])
    )
    row["nll_nats_bound"] = nll["nll_nats"]
    row["nll_nats_ode"] = nll["nll_nats_ode"]
    return row


def markdown(rows: list[dict], budget: float) -> str:
    lines = [
        f"# Toy 2D: N(0, I) -> data, DDPM (configs/toy2d/ddpm.yaml), {budget:.0f} s CPU budget per set",
        "",
        "W2: exact, 10k samples vs 10k fresh points (lower is better).",
        "NLL in nats per point on 2k test points.",
        "",
        "| data | steps | W2 ancestral (1000) | W2 PF-ODE Heun (100) | data-vs-data floor | [SF]2M published "
        "| NLL bound | NLL PF-ODE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['train_steps']} | {r['w2_ancestral']:.3f} | {r['w2_ode_heun']:.3f} | "
            f"{r['w2_floor']:.3f} | {r['w2_published_sf2m']:.3f} | {r['nll_nats_bound']:.3f} | "
            f"{r['nll_nats_ode']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=180.0, help="training seconds per data set")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_toy2d")
    args = parser.parse_args()
    rows = [bench_one(name, args.budget, args.work) for name in PUBLISHED_SF2M]
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "budget_s": args.budget,
    }
    (args.out / "toy2d.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (args.out / "toy2d.md").write_text(markdown(rows, args.budget))
    print(markdown(rows, args.budget))


if __name__ == "__main__":
    main()
