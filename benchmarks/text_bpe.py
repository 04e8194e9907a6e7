"""Subword against character text on the 42 works of Shakespeare: every method, same network,
same wall-clock budget, scored in bits per character of the same text.

For each config in ``configs/shakespeare_works/`` (a 4,096-token byte-level BPE) and for the same
config with characters (``data.tokenizer.type=chars``, 256-character windows): prepare the
corpus once per encoding (``discodiff prepare``: seconds and size are recorded), train for
``--budget`` seconds, then measure on ``--val-windows`` evenly spaced validation windows the
bits per token, bits per character of the decoded text (the unit that compares encodings) and
perplexity per token (each method's ``nll``: its bound, exact for the AR baseline). Each run's
learning-rate schedule is sized to the budget as in ``discodiff bench`` (calibrated steps, the
warm-up cut to a tenth of them). Runs
alternate encodings method by method. Needs ``../shared/data/text/shakespeare_works/``.

    python benchmarks/text_bpe.py [--methods ar,mdlm,sedd_absorb,udlm] [--encodings bpe,chars]
        [--budget 180] [--val-windows 64]

Writes ``text_bpe.json`` and ``text_bpe.md`` under ``--out`` (one run's rows; earlier rows are
replaced).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from discodiff.bench.runner import calibrate_config, planned_steps
from discodiff.build import build_run, load_run, save_run_files
from discodiff.evaluate import likelihood
from discodiff.prepare import prepare
from discodiff.runconfig import EvalConfig, load_config
from discodiff.train import Trainer
from discodiff.train.lr import sized_warmup

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "shakespeare_works"
METHODS = ["ar", "mdlm", "sedd_absorb", "udlm"]
ENCODINGS = {
    "bpe": [],  # the shipped configs
    "chars": [
        "data.tokenizer.type=chars",
        "data.tokenizer.vocab_size=null",
        "data.prepared=runs/prepared/shakespeare_works_chars",
    ],
}


def config(method: str, encoding: str, budget: float | None, steps: int = 1000000):
    overrides = list(ENCODINGS[encoding])
    if budget is not None:
        warmup = load_config(CONFIGS / f"{method}.yaml").train.warmup_steps
        overrides += [
            f"train.steps={steps}",
            f"train.warmup_steps={sized_warmup(warmup, steps)}",
            f"train.time_budget_s={budget}",
            "train.ckpt_every=1000000",
        ]
    return load_config(CONFIGS / f"{method}.yaml", overrides)


def sized_config(method: str, encoding: str, budget: float, work: Path):
    """The config with its learning-rate schedule sized to the budget (the bench's calibration:
    time the first steps on a throwaway model, plan the steps that fill the budget)."""
    step_s = calibrate_config(config(method, encoding, budget), budget, work)
    steps = planned_steps(budget, step_s)
    print(f"{method} {encoding}: {1000 * step_s:.0f} ms per step -> {steps} planned steps", flush=True)
    return config(method, encoding, budget, steps), steps


def train(config, run_dir: Path) -> None:
    """Train within the budget and checkpoint; no final samples or infilling (not measured here)."""
    torch.manual_seed(config.seed)
    data, method = build_run(config)
    save_run_files(run_dir, config, data)
    data.use_directory(run_dir)
    trainer = Trainer(method, data, config.train, run_dir, seed=config.seed, device=torch.device("cpu"))
    trainer.fit(progress=False)


def train_seconds(run_dir: Path) -> tuple[float, float]:
    """(training seconds, tokens per second) from the run's metrics log."""
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if r["kind"] == "train"]
    rates = [r["examples_per_s"] for r in train][1:] or [train[-1]["examples_per_s"]]
    return train[-1]["elapsed_s"], sum(rates) / len(rates)


def markdown(results: dict) -> str:
    meta = results["meta"]
    lines = [
        "# Shakespeare's 42 works: 4,096-token BPE against characters, "
        f"{meta['budget_s']:.0f} s CPU budget per run",
        "",
        f"Commit {meta['commit']}, {meta['machine']}, {meta['threads']} threads, torch {meta['torch']}, "
        f"load average {meta.get('load_average_at_start', float('nan')):.1f} at the start. "
        f"Command: `{meta['command']}`."
        + ("" if meta.get("complete", True) else " **Partial: the run stopped before its last rows.**")
        + (f" Note: {meta['note']}." if meta.get("note") else ""),
        "",
        "Same transformer (width 256, depth 4) and 256-id windows for every run; likelihood on "
        f"{meta['val_windows']} evenly spaced validation windows (the bound for diffusion models, exact "
        "for AR). Bits per character are over the decoded text, so rows compare across encodings.",
        "",
        "| method | encoding | steps (planned) | train s | tokens/s | bits/token | bits/char | perplexity |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        lines.append(
            f"| {row['method']} | {row['encoding']} | {row['steps']} ({row.get('planned_steps', '-')}) | "
            f"{row['train_s']:.0f} | "
            f"{row['tokens_per_s']:.0f} | {row['bits_per_token']:.3f} | {row['bits_per_char']:.3f} | "
            f"{row['perplexity']:.2f} |"
        )
    lines += ["", "## discodiff prepare", ""]
    lines += ["| encoding | seconds | MB | train tokens | characters per token |", "|---|---|---|---|---|"]
    for name, p in results["prepare"].items():
        lines.append(
            f"| {name} | {p['seconds']:.1f} | {p['bytes'] / 1e6:.2f} | {p['train_tokens']:,} | "
            f"{p['chars_per_token']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--encodings", default=",".join(ENCODINGS))
    parser.add_argument(
        "--budget", type=float, default=180.0, help="training seconds per run (as in results/text_char.md)"
    )
    parser.add_argument("--val-windows", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_text_bpe")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    results = {
        "meta": {
            "commit": commit.stdout.strip(),
            "machine": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "budget_s": args.budget,
            "val_windows": args.val_windows,
            "command": "python " + " ".join(sys.argv),
            "load_average_at_start": os.getloadavg()[0],
        },
        "prepare": {},
        "rows": [],
    }
    encodings, methods = args.encodings.split(","), args.methods.split(",")
    for encoding in encodings:
        report = prepare(config(methods[0], encoding, None), force=True, progress=False)
        split = report["meta"]["splits"]["train"]
        results["prepare"][encoding] = {
            "seconds": report["seconds"],
            "bytes": report["bytes"],
            "train_tokens": split["tokens"],
            "chars_per_token": split["characters"] / split["tokens"],
        }
        print(encoding, results["prepare"][encoding], flush=True)
    for method in methods:
        for encoding in encodings:  # alternate encodings within a method
            run_dir = args.work / f"{method}_{encoding}"
            shutil.rmtree(run_dir, ignore_errors=True)
            start = time.perf_counter()
            cfg, planned = sized_config(method, encoding, args.budget, args.work / "calibration")
            train(cfg, run_dir)
            run = load_run(run_dir, device=torch.device("cpu"))
            eval_cfg = EvalConfig(nll_examples=args.val_windows, batch_size=32)
            nll = likelihood(run.method, run.data, eval_cfg, split="val")
            seconds, examples_per_s = train_seconds(run_dir)
            row = {
                "method": method,
                "encoding": encoding,
                "steps": run.step,
                "planned_steps": planned,
                "warmup_steps": cfg.train.warmup_steps,
                "train_s": seconds,
                "tokens_per_s": examples_per_s * run.data.seq_len,
                "bits_per_token": nll["bits_per_token"],
                "bits_per_char": nll["bits_per_char"],
                "perplexity": nll["perplexity"],
                "wall_s": time.perf_counter() - start,
            }
            results["rows"].append(row)
            print(row, flush=True)
            write(results, args.out, complete=False)  # an interrupted run keeps its rows, marked partial
    write(results, args.out, complete=True)
    print(markdown(results))


def write(results: dict, out: Path, *, complete: bool) -> None:
    results["meta"]["complete"] = complete
    out.mkdir(parents=True, exist_ok=True)
    (out / "text_bpe.json").write_text(json.dumps(results, indent=1))
    (out / "text_bpe.md").write_text(markdown(results))


if __name__ == "__main__":
    main()
