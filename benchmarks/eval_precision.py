"""Evaluation precision: sampling and likelihood with the networks in fp32 and in bf16 autocast.

For each model (a config, built with its seed, or a trained run directory): the bound on
``--nll-examples`` test examples and ``--samples`` samples at ``--steps`` steps of ``--sampler``
(where the method has it, else its default), once per precision per repeat, alternating which
goes first; medians and the fp32/bf16 time ratio, plus the bits in each (same seed, so the
difference is the networks' rounding alone; it is zero for a config's fresh weights, whose output
layers start at zero: pass trained run directories for it).

    python benchmarks/eval_precision.py [--models configs/shakespeare/mdlm_demo.yaml ...]
        [--repeats 3] [--nll-examples 64] [--samples 16] [--steps 64] [--sampler ancestral]
        [--out benchmarks/results]

Writes ``eval_precision.json`` and ``eval_precision.md`` under ``--out``. About 3 minutes with
the defaults on 2 idle cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from discodiff.build import build_run, load_run
from discodiff.evaluate import draw_samples, likelihood
from discodiff.precision import network_precision
from discodiff.provenance import git_commit
from discodiff.runconfig import load_config

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = (
    "configs/shakespeare/mdlm_demo.yaml",
    "configs/digits/ddpm.yaml",
    "configs/toy2d/ddpm.yaml",
)


def _model(source: str):
    path = Path(source) if Path(source).is_absolute() else ROOT / source
    if path.is_dir():
        run = load_run(path, device=torch.device("cpu"))
        return run.config, run.data, run.method
    config = load_config(path)
    torch.manual_seed(config.seed)
    data, method = build_run(config)
    return config, data, method.eval()


def _timed(fn) -> tuple[float, dict]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench_model(source: str, args: argparse.Namespace) -> dict:
    config, data, method = _model(source)
    sampler = args.sampler if args.sampler in method.samplers else method.default_sampler
    cfg = dataclasses.replace(
        config.eval,
        nll_examples=args.nll_examples,
        batch_size=args.nll_examples,
        estimators=["bound"],
        num_samples=args.samples,
        steps=min(args.steps, method.sampler_info(sampler).max_steps or args.steps),
        sampler=sampler,
    )
    times: dict[str, dict[str, list[float]]] = {p: {"nll": [], "sample": []} for p in ("fp32", "bf16")}
    bits: dict[str, float] = {}
    for r in range(args.repeats):
        order = ("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")
        for precision in order:
            with torch.no_grad(), network_precision(method, precision):
                seconds, nll = _timed(lambda: likelihood(method, data, cfg))
                times[precision]["nll"].append(seconds)
                seconds, _ = _timed(lambda: draw_samples(method, data, cfg, args.samples))
                times[precision]["sample"].append(seconds)
            bits[precision] = nll[data.info.unit]
    row = {
        "model": source,
        "method": config.method.name,
        "net": config.net.name,
        "sampler": sampler,
        "steps": cfg.steps,
        "unit": data.info.unit,
        "bits_fp32": bits["fp32"],
        "bits_bf16": bits["bf16"],
    }
    for part in ("nll", "sample"):
        fp32, bf16 = (statistics.median(times[p][part]) for p in ("fp32", "bf16"))
        row[f"{part}_seconds_fp32"], row[f"{part}_seconds_bf16"] = fp32, bf16
        row[f"{part}_speedup"] = fp32 / bf16
    return row


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Evaluation precision: networks in fp32 vs bf16 autocast",
        "",
        f"Command: `{meta['command']}`  ",
        f"Commit: {meta['commit']}; machine: {meta['machine']}; torch {meta['torch']}, "
        f"{meta['threads']} threads; medians of {meta['repeats']} alternating repeats; load average "
        f"{meta.get('load_before', float('nan')):.1f} before, {meta.get('load_after', float('nan')):.1f} "
        "after (times on a busy machine are provisional).",
        "",
        "| model | sampler (steps) | likelihood s fp32 / bf16 (speed-up) | sampling s fp32 / bf16 "
        "(speed-up) | bits fp32 / bf16 |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['sampler']} ({r['steps']}) | {r['nll_seconds_fp32']:.2f} / "
            f"{r['nll_seconds_bf16']:.2f} ({r['nll_speedup']:.2f}x) | {r['sample_seconds_fp32']:.2f} / "
            f"{r['sample_seconds_bf16']:.2f} ({r['sample_speedup']:.2f}x) | {r['bits_fp32']:.4f} / "
            f"{r['bits_bf16']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), help="configs or run directories")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--nll-examples", type=int, default=64)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument(
        "--sampler", default="ancestral", help="sampler where the method has it (one network call per step)"
    )
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    meta = {
        "command": "python " + " ".join(sys.argv),
        "commit": git_commit(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "load_before": os.getloadavg()[0],
    }
    print(meta["command"], flush=True)
    rows = []
    for source in args.models:
        rows.append(bench_model(source, args))
        print(json.dumps(rows[-1]), flush=True)
    meta["load_after"] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "eval_precision.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (args.out / "eval_precision.md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))


if __name__ == "__main__":
    main()
