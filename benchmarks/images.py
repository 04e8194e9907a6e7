"""Image benchmark: digits (and MNIST-5k) after a fixed CPU budget.

For each data set: train the class-conditional config (``configs/<set>/ddpm_cfg.yaml``; hybrid
loss, learned variances, label dropout 0.1) for ``--budget`` seconds, then measure

- bits/dim on the test split by the variational bound (discretized-Gaussian decoder) and by the
  probability-flow ODE with uniform dequantization (both conditional on the label);
- the classifier Frechet distance (penultimate features of a small CNN trained on the same data;
  not comparable with Inception FID) and the accuracy of guided samples on their requested class,
  at guidance 1, 2 and 4 (DDIM, 100 steps);
- sampling time per image at 10, 50 and 250 steps for ancestral, DDIM and Heun PF-ODE sampling.

    python benchmarks/images.py [--sets digits,mnist] [--budget 600]

Writes ``images.json`` and ``images.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from discodiff.build import load_run
from discodiff.evaluate import likelihood, sample_labels
from discodiff.run import train_run
from discodiff.runconfig import EvalConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
GUIDANCE = [1.0, 2.0, 4.0]
SAMPLERS = ["ancestral", "ddim", "ode_heun"]
STEPS = [10, 50, 250]
QUALITY_SAMPLES = 500
TIMING_SAMPLES = 100


def bench(name: str, budget: float, work: Path) -> dict:
    cfg = load_config(
        ROOT / "configs" / name / "ddpm_cfg.yaml",
        [
            "train.steps=1000000",
            f"train.time_budget_s={budget}",
            "train.ckpt_every=1000000",
            "eval.num_samples=0",
            "eval.nll_examples=2",
        ],
    )
    run_dir = work / name
    train_run(cfg, run_dir, progress=False)
    run = load_run(run_dir, device=torch.device("cpu"))
    run.data.prepare_metrics()
    row = {"dataset": name, "train_steps": run.step, "test_images": len(run.data.split("test")[0])}
    t0 = time.perf_counter()
    nll = likelihood(
        run.method,
        run.data,
        EvalConfig(
            nll_examples=cfg.eval.nll_examples, batch_size=cfg.eval.batch_size, estimators=["bound", "ode"]
        ),
    )
    row.update(
        bits_per_dim_bound=nll["bits_per_dim"],
        bits_per_dim_ode=nll["bits_per_dim_ode"],
        likelihood_seconds=time.perf_counter() - t0,
    )
    cond = sample_labels(run.data, QUALITY_SAMPLES)
    for w in GUIDANCE:
        out = run.method.sample(
            QUALITY_SAMPLES,
            sampler="ddim",
            steps=100,
            cond=cond,
            guidance_scale=w,
            generator=torch.Generator().manual_seed(0),
        )
        metrics = run.data.sample_metrics(out.x, cond)
        row[f"classifier_fd_w{w:g}"] = metrics["classifier_fd"]
        row[f"class_accuracy_w{w:g}"] = metrics["classifier_accuracy"]
    timing_cond = cond[:TIMING_SAMPLES]
    for sampler in SAMPLERS:
        for steps in STEPS:
            t0 = time.perf_counter()
            out = run.method.sample(
                TIMING_SAMPLES,
                sampler=sampler,
                steps=steps,
                cond=timing_cond,
                generator=torch.Generator().manual_seed(1),
            )
            row[f"ms_per_image_{sampler}_{steps}"] = 1000 * (time.perf_counter() - t0) / TIMING_SAMPLES
            row[f"nfe_{sampler}_{steps}"] = out.nfe
    return row


def markdown(rows: list[dict], budget: float) -> str:
    lines = [
        f"# Images: class-conditional DDPM (hybrid loss, learned variances), {budget:.0f} s CPU budget",
        "",
        "Bits/dim on the test split (conditional on the label). classifier FD: Frechet distance in a small "
        "CNN's features (not Inception FID); accuracy: guided samples classified as their requested class "
        f"({QUALITY_SAMPLES} samples, DDIM 100 steps).",
        "",
        "| data | steps | bits/dim bound | bits/dim PF-ODE | FD w=1 | FD w=2 | FD w=4 "
        "| acc w=1 | acc w=2 | acc w=4 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fds = " | ".join(f"{r[f'classifier_fd_w{w:g}']:.1f}" for w in GUIDANCE)
        accs = " | ".join(f"{100 * r[f'class_accuracy_w{w:g}']:.1f}%" for w in GUIDANCE)
        lines.append(
            f"| {r['dataset']} | {r['train_steps']} | {r['bits_per_dim_bound']:.3f} | "
            f"{r['bits_per_dim_ode']:.3f} | {fds} | {accs} |"
        )
    lines += [
        "",
        f"Sampling time per image (ms, batches of {TIMING_SAMPLES}; Heun uses 2 network calls per step):",
        "",
        "| data | sampler | " + " | ".join(f"{s} steps" for s in STEPS) + " |",
        "|---|---|" + "---|" * len(STEPS),
    ]
    for r in rows:
        for sampler in SAMPLERS:
            cells = " | ".join(f"{r[f'ms_per_image_{sampler}_{s}']:.2f}" for s in STEPS)
            lines.append(f"| {r['dataset']} | {sampler} | {cells} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="digits")
    parser.add_argument("--budget", type=float, default=600.0, help="training seconds per data set")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_images")
    args = parser.parse_args()
    rows = [bench(name, args.budget, args.work) for name in args.sets.split(",")]
    meta = {
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "budget_s": args.budget,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "images.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (args.out / "images.md").write_text(markdown(rows, args.budget))
    print(markdown(rows, args.budget))


if __name__ == "__main__":
    main()
