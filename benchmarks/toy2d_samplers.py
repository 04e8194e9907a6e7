"""Toy 2D sampler diagnostic: W2 from N(0, I) to 8gaussians, moons and scurve, stochastic and
deterministic samplers from the same checkpoint (the method comparison is ``discodiff bench toy2d``).

For each data set: train ``configs/toy2d/ddpm.yaml`` for ``--budget`` seconds of wall-clock time
(or exactly ``--steps`` steps; a finished run already in ``--work`` is reused), then draw 10,000
samples with ancestral sampling (1,000 steps), DDIM (50 steps, eta = 0) and PF-ODE Heun (100
steps), ``--sample-draws`` times (seed i), and compute the exact W2 (POT, squared-Euclidean cost,
square root) of each draw against its own 10,000 fresh data points (seed 1000 + i, shared by the
samplers), mean +- sd over the draws, beside the data-vs-data floor (mean +- sd over
``--floor-draws`` pairs of fresh 10k sets) and the published [SF]2M values (Tong et al. 2024,
Table 2). Each sampler's largest |x| is checked against 3x the data's (``range_check``).
Likelihood: the variational bound and the PF-ODE NLL on 2,000 test points.

    python benchmarks/toy2d_samplers.py [--budget 180 | --steps 4000] [--seed 0] [--out benchmarks/results]

Writes ``toy2d.json`` and ``toy2d.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import torch

from discodiff.build import load_run
from discodiff.data.toy2d import sample_toy2d
from discodiff.evaluate import likelihood
from discodiff.metrics.w2 import range_check, wasserstein2, wasserstein2_floor
from discodiff.run import train_run
from discodiff.runconfig import EvalConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED_SF2M = {"8gaussians": 0.303, "moons": 0.130, "scurve": 0.144}
N = 10_000
SAMPLERS = (("ancestral", 1000), ("ddim", 50), ("ode_heun", 100))


def bench_one(
    name: str, budget: float, steps: int | None, floor_draws: int, sample_draws: int, work: Path, seed: int
) -> dict:
    training = [f"train.steps={steps}"] if steps else ["train.steps=1000000", f"train.time_budget_s={budget}"]
    cfg = load_config(
        ROOT / "configs" / "toy2d" / "ddpm.yaml",
        [
            f"data.dataset={name}",
            f"seed={seed}",
            *training,
            "train.ckpt_every=1000000",
            "eval.num_samples=0",
            "eval.nll_examples=100",
        ],
    )
    run_dir = work / name
    if (run_dir / "metrics.json").exists():  # a finished run from an earlier call: sample from it
        train_seconds = json.loads((run_dir / "metrics.json").read_text())["train_seconds"]
    else:
        t0 = time.perf_counter()
        train_run(cfg, run_dir, progress=False)
        train_seconds = time.perf_counter() - t0
    run = load_run(run_dir, device=torch.device("cpu"))
    floor_mean, floor_sd = wasserstein2_floor(partial(sample_toy2d, name), N, draws=floor_draws, seed=202)
    row = {
        "dataset": name,
        "train_seed": seed,
        "train_steps": run.step,
        "train_seconds": train_seconds,
        "w2_floor_mean": floor_mean,
        "w2_floor_sd": floor_sd,
        "floor_draws": floor_draws,
        "sample_draws": sample_draws,
        "w2_published_sf2m": PUBLISHED_SF2M[name],
    }
    # one fresh reference per draw, shared by the samplers (a paired comparison); on moons W2 is
    # dominated by the arcs' mass split, whose draw-to-draw sd (0.5% per 10k set) moves a single
    # draw's W2 between 0.11 and 0.28 for one checkpoint
    refs = [sample_toy2d(name, N, torch.Generator().manual_seed(1000 + i)) for i in range(sample_draws)]
    for sampler, sampler_steps in SAMPLERS:
        w2s, seconds, reach, outside = [], 0.0, 0.0, 0
        for i, ref in enumerate(refs):
            t0 = time.perf_counter()
            out = run.method.sample(
                N, sampler=sampler, steps=sampler_steps, generator=torch.Generator().manual_seed(i)
            )
            seconds += time.perf_counter() - t0
            w2s.append(wasserstein2(out.x, ref))
            spread = range_check(out.x, ref)
            reach, outside = max(reach, spread["max_abs"]), outside + spread["outside"]
            row["limit_3x"] = spread["limit"]
        row[f"sample_seconds_{sampler}"] = seconds / sample_draws
        row[f"nfe_{sampler}"] = out.nfe
        row[f"w2_{sampler}_draws"] = w2s
        row[f"w2_{sampler}"] = statistics.mean(w2s)
        row[f"w2_{sampler}_sd"] = statistics.stdev(w2s) if len(w2s) > 1 else 0.0
        row[f"max_abs_{sampler}"] = reach
        row[f"outside_3x_{sampler}"] = outside
    nll = likelihood(
        run.method, run.data, EvalConfig(nll_examples=2000, batch_size=2000, estimators=["bound", "ode"])
    )
    row["nll_nats_bound"] = nll["nll_nats"]
    row["nll_nats_ode"] = nll["nll_nats_ode"]
    return row


def markdown(rows: list[dict], meta: dict) -> str:
    training = f"{meta['steps']} steps" if meta["steps"] else f"{meta['budget_s']:.0f} s CPU budget"
    lines = [
        f"# Toy 2D: N(0, I) -> data, DDPM (configs/toy2d/ddpm.yaml), {training} per set",
        "",
        f"Command: `{meta['command']}`; commit {meta['commit']}; {meta['machine']}, "
        f"{meta['threads']} threads, torch {meta['torch']}; training seed {rows[0]['train_seed']}.",
        "",
        "W2: exact, 10k samples vs 10k fresh points (lower is better), mean +- sd over "
        f"{rows[0]['sample_draws']} draws (sample seed i against fresh points of seed 1000 + i, the same "
        "references for every sampler); the floor is two fresh 10k sets, "
        f"mean +- sd over {rows[0]['floor_draws']} pairs. Steps of each sampler in brackets; all three "
        "from the same checkpoint. max |x|: the samples' largest coordinate, against 3x the data's. "
        "NLL in nats per point on 2k test points.",
        "",
        "| data | train steps | W2 ancestral (1000) | W2 DDIM (50) | W2 PF-ODE Heun (100) "
        "| data-vs-data floor | [SF]2M published | max abs(x) anc / DDIM / Heun | 3x data "
        "| NLL bound | NLL PF-ODE |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        reach = " / ".join(f"{r[f'max_abs_{s}']:.1f}" for s, _ in SAMPLERS)

        def w2(sampler: str, r: dict = r) -> str:
            return f"{r[f'w2_{sampler}']:.3f} +- {r[f'w2_{sampler}_sd']:.3f}"

        lines.append(
            f"| {r['dataset']} | {r['train_steps']} | {w2('ancestral')} | {w2('ddim')} | "
            f"{w2('ode_heun')} | {r['w2_floor_mean']:.3f} +- {r['w2_floor_sd']:.3f} | "
            f"{r['w2_published_sf2m']:.3f} | {reach} | {r['limit_3x']:.1f} | {r['nll_nats_bound']:.3f} | "
            f"{r['nll_nats_ode']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=180.0, help="training seconds per data set")
    parser.add_argument("--steps", type=int, help="train exactly this many steps instead of a time budget")
    parser.add_argument("--floor-draws", type=int, default=5, help="pairs of fresh sets for the W2 floor")
    parser.add_argument("--sample-draws", type=int, default=3, help="sample draws per sampler")
    parser.add_argument("--seed", type=int, default=0, help="training seed (the config's is 0)")
    parser.add_argument("--sets", default=",".join(PUBLISHED_SF2M), help="comma-separated data sets")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_toy2d")
    args = parser.parse_args()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    meta = {
        "command": "python " + " ".join(["benchmarks/toy2d_samplers.py", *sys.argv[1:]]),
        "commit": commit or "unknown",
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "budget_s": None if args.steps else args.budget,
        "steps": args.steps,
    }
    print(meta["command"], flush=True)
    rows = [
        bench_one(name, args.budget, args.steps, args.floor_draws, args.sample_draws, args.work, args.seed)
        for name in args.sets.split(",")
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "toy2d.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (args.out / "toy2d.md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))


if __name__ == "__main__":
    main()
