"""Molecule benchmark: DiGress on QM9 after a fixed CPU budget, beside DiGress's published figures.

1. Unconditional: train ``configs/molecules/qm9.yaml`` for ``--budget`` seconds, then measure the
   NLL bound on the test split (bits per graph, with -log p(n); ``--nll-examples`` molecules) and,
   on ``--samples`` molecules (ancestral sampling, ``--steps`` steps), validity (DiGress's, largest
   fragment kept), strict validity (one connected molecule), uniqueness, novelty and FCD against
   the test split. DiGress (Vignac et al. 2023, Table 2, QM9 without hydrogens, 1,000 epochs on a
   GPU) reports validity 99.0% and uniqueness 96.3%.
2. Guidance: for each property of ``--properties`` (QED, logP), the same config conditioned on
   it in 4 quantile bins with label dropout 0.1 (classifier-free guidance), trained for
   ``--guidance-budget`` seconds; at guidance 0 (unconditional), 1, 2 and 4, the mean absolute
   error of the valid samples' property to the value their label requests, and their validity,
   beside the test molecules' own-bin and random-bin MAE.

    PYTHONPATH=src python benchmarks/molecules.py [--budget 1800] [--guidance-budget 1200]
        [--properties qed,logp]

Writes ``molecules.json`` and ``molecules.md`` under ``--out`` (each with the commit, machine,
command and budgets). These are CPU figures for a budget of minutes, not DiGress's training.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from discodiff.build import load_run
from discodiff.evaluate import likelihood, sample_labels
from discodiff.run import train_run
from discodiff.runconfig import EvalConfig, load_config
from discodiff.state import cat

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "molecules" / "qm9.yaml"
DIGRESS = {"validity": 0.990, "uniqueness": 0.963}
"""DiGress's QM9 (no hydrogens) figures, Vignac et al. 2023, Table 2."""
GUIDANCE = [0.0, 1.0, 2.0, 4.0]
NAMES = {"qed": "QED", "logp": "logP"}
BATCH = 500


def train(overrides: list[str], budget: float, run_dir: Path, data_path: str | None) -> int:
    extra = [f"data.path={data_path}"] if data_path else []
    cfg = load_config(
        CONFIG,
        [
            *overrides,
            *extra,
            "train.steps=1000000",
            f"train.time_budget_s={budget}",
            "eval.num_samples=0",
            "eval.nll_examples=2",
        ],
    )
    start = time.perf_counter()
    train_run(cfg, run_dir, progress=False)
    return time.perf_counter() - start


def draw(run, n: int, steps: int, cond, w: float) -> tuple:
    """``n`` samples in batches (one generator, seed 0) and the seconds they took."""
    out = []
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for i in range(0, n, BATCH):
        c = None if cond is None else cond[i : i + BATCH]
        out.append(
            run.method.sample(min(BATCH, n - i), steps=steps, cond=c, guidance_scale=w, generator=gen).x
        )
    return cat(out), time.perf_counter() - start


def unconditional(args, work: Path) -> dict:
    run_dir = work / "qm9"
    train_seconds = train([], args.budget, run_dir, args.data_path)
    run = load_run(run_dir, device=torch.device("cpu"))
    run.data.prepare_metrics()
    row: dict = {"train_steps": run.step, "train_seconds": train_seconds}
    start = time.perf_counter()
    nll = likelihood(run.method, run.data, EvalConfig(nll_examples=args.nll_examples, batch_size=BATCH))
    row.update(nll, likelihood_seconds=time.perf_counter() - start)
    samples, seconds = draw(run, args.samples, args.steps, None, 1.0)
    row["sample_seconds_per_molecule"] = seconds / args.samples
    start = time.perf_counter()
    row.update(run.data.sample_metrics(samples))
    row["metric_seconds"] = time.perf_counter() - start
    run.data.save_samples(samples, work / "qm9_samples")
    return row


def guided(args, work: Path, prop: str) -> dict:
    run_dir = work / f"qm9_{prop}"
    overrides = [f"data.condition={prop}", "data.condition_bins=4", "method.cond_drop_prob=0.1"]
    train_seconds = train(overrides, args.guidance_budget, run_dir, args.data_path)
    run = load_run(run_dir, device=torch.device("cpu"))
    cond = sample_labels(run.data, args.samples)
    row: dict = {
        "train_steps": run.step,
        "train_seconds": train_seconds,
        "targets": run.data.corpus.bins.targets,
    }
    for w in GUIDANCE:
        samples, seconds = draw(run, args.samples, args.steps, cond, w)
        metrics = run.data.sample_metrics(samples, cond)
        row[f"mae_w{w:g}"] = metrics[f"{prop}_mae"]
        row[f"validity_w{w:g}"] = metrics["validity"]
        row[f"sample_seconds_w{w:g}"] = seconds
        row["mae_test_own_bin"] = metrics[f"{prop}_mae_test_own_bin"]
        row["mae_test_random_bin"] = metrics[f"{prop}_mae_test_random_bin"]
        if w == 2.0:
            run.data.save_samples(samples, work / f"qm9_{prop}_w2_samples", cond)
    return row


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def markdown(result: dict) -> str:
    m, u = result["meta"], result["unconditional"]
    lines = [
        f"# Molecules: DiGress on QM9, {m['budget_s']:.0f} s CPU budget",
        "",
        f"Commit {m['commit']}, {m['machine']}, torch {m['torch']} ({m['threads']} threads); "
        f"command `{m['command']}`; {m['wall_seconds'] / 60:.0f} minutes in all, load average "
        f"{m.get('load_average_at_start', float('nan')):.1f} at the start. CPU figures after minutes of "
        "training; DiGress trains 1,000 epochs on a GPU." + (f" Note: {m['note']}." if m.get("note") else ""),
        "",
        f"{u['train_steps']} training steps in {u['train_seconds']:.0f} s; {m['samples']} samples, "
        f"ancestral, {m['steps']} steps ({1000 * u['sample_seconds_per_molecule']:.0f} ms per molecule).",
        "",
        "| | validity | strict validity | uniqueness | novelty | FCD | NLL bound (bits/graph) |",
        "|---|---|---|---|---|---|---|",
        f"| ours | {pct(u['validity'])} | {pct(u['validity_strict'])} | {pct(u['uniqueness'])} | "
        f"{pct(u['novelty'])} | {u['fcd']:.2f} | {u['bits_per_graph']:.1f} |",
        f"| DiGress (GPU, Table 2) | {pct(DIGRESS['validity'])} | | {pct(DIGRESS['uniqueness'])} | | | |",
        "",
        "Validity keeps the largest fragment (DiGress's definition); strict validity asks for one "
        "connected molecule. Uniqueness is over the valid samples, novelty over the unique valid ones.",
    ]
    if m.get("figure"):
        lines += [
            "",
            f"![unconditional samples]({m['figure']}) (the run's RDKit grid; invalid molecules labelled)",
        ]
    for prop, g in result.get("guided", {}).items():
        name = NAMES.get(prop, prop)
        lines += [
            "",
            f"## {name} guidance ({m['guidance_budget_s']:.0f} s budget, {g['train_steps']} steps; "
            "4 bins, targets " + ", ".join(f"{t:.3f}" for t in g["targets"]) + ")",
            "",
            "| guidance | 0 (unconditional) | 1 | 2 | 4 |",
            "|---|---|---|---|---|",
            f"| {name} MAE | " + " | ".join(f"{g[f'mae_w{w:g}']:.4f}" for w in GUIDANCE) + " |",
            "| validity | " + " | ".join(pct(g[f"validity_w{w:g}"]) for w in GUIDANCE) + " |",
            "",
            f"Test molecules against their own bin's target: MAE {g['mae_test_own_bin']:.4f}; "
            f"against a random bin's: {g['mae_test_random_bin']:.4f}.",
        ]
    return "\n".join(lines) + "\n"


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=1800.0, help="training seconds, unconditional")
    parser.add_argument(
        "--guidance-budget", type=float, default=1200.0, help="training seconds per property (0: skip)"
    )
    parser.add_argument("--properties", default="qed,logp", help="properties to guide, comma-separated")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=100, help="sampling steps (of the T = 500 grid)")
    parser.add_argument("--nll-examples", type=int, default=1000)
    parser.add_argument("--data-path", help="the QM9 CSV (default: the config's ../shared/data path)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_molecules")
    args = parser.parse_args()
    unknown = sorted(set(p for p in args.properties.split(",") if p) - set(NAMES))
    if unknown:
        parser.error(f"--properties: unknown {', '.join(unknown)} (allowed: {', '.join(NAMES)})")
    start = time.perf_counter()
    meta = {
        "commit": commit(),
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "command": "python benchmarks/molecules.py " + " ".join(sys.argv[1:]),
        "budget_s": args.budget,
        "guidance_budget_s": args.guidance_budget,
        "properties": args.properties,
        "samples": args.samples,
        "steps": args.steps,
        "load_average_at_start": os.getloadavg()[0],
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }
    print(meta["command"], flush=True)

    def save(result: dict) -> None:
        """Write both files after every part, so a stopped run keeps what it finished."""
        meta["wall_seconds"] = time.perf_counter() - start
        meta["load_average_at_end"] = os.getloadavg()[0]
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "molecules.json").write_text(json.dumps(result, indent=1))
        (args.out / "molecules.md").write_text(markdown(result))

    result = {"meta": meta, "unconditional": unconditional(args, args.work)}
    save(result)
    if args.guidance_budget > 0:
        result["guided"] = {}
        for p in (p for p in args.properties.split(",") if p):
            result["guided"][p] = guided(args, args.work, p)
            save(result)
    print(markdown(result))


if __name__ == "__main__":
    main()
