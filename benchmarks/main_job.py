"""The README's main job, measured: what you should see, and that a slower machine sees the same.

Runs the two training commands of the README's main job (toy 2D DDPM, then the masked diffusion
demo on tiny-shakespeare) as subprocesses, times each, and reads their ``metrics.json``. With
``--slow``, runs them again while ``--slow`` CPU-bound processes compete for the cores (a machine
about half as fast with one), and compares every metric except the timings.

    python benchmarks/main_job.py [--slow 2] [--work /tmp/main_job] [--out benchmarks/results]
        [--readme]

Writes ``main_job.json`` and ``main_job.md`` (the README's "What you should see" rows) under
``--out``; ``--readme`` also puts the rows into README.md's table. Each row has a reference to
judge the value by: the W2 between two fresh draws of the data of the same size (what a perfect
model scores), the data's own entropy in bits/dim (the best possible likelihood), and the
bits/char of a unigram model of the training text and of a uniform guess. About 5 minutes on 2
idle cores, twice that and more with ``--slow``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = {"demo-ddpm": "configs/toy2d/ddpm.yaml", "demo-mdlm": "configs/shakespeare/mdlm_demo.yaml"}
TIMING_KEYS = {"train_seconds", "sample_seconds_per_example"}
PROVENANCE_KEYS = {"commit"}  # not a result: a tree edited between the two runs is "-dirty" in one
SHOWN = {  # run -> (metric key, what the README calls it)
    "demo-ddpm": [
        ("w2", "W2, 2,000 samples vs test points"),
        ("bits_per_dim", "bits/dim, variational bound"),
        ("bits_per_dim_ode", "bits/dim, PF-ODE (exact likelihood)"),
    ],
    "demo-mdlm": [
        ("bits_per_char", "bits/char, bound (validation)"),
        ("sample_nfe", "network calls per sample"),
    ],
}


def references() -> dict[str, str]:
    """Metric key -> what to compare it with, computed from the data alone (no training)."""
    import math

    import torch

    from discodiff.build import build_data
    from discodiff.data.toy2d import RECIPES
    from discodiff.metrics.w2 import wasserstein2_floor
    from discodiff.runconfig import load_config

    toy, text = (load_config(ROOT / RUNS[name]) for name in RUNS)
    draw = RECIPES[toy.data.config.dataset]
    floor, spread = wasserstein2_floor(draw, toy.eval.num_samples)
    # The 8 components lie 5 apart with std 0.1 ** 0.25 = 0.56: their overlap is negligible, so
    # the density's entropy is log 8 + that of one 2D Gaussian.
    var = 0.1**0.5
    entropy_bits = (math.log(8) + math.log(2 * math.pi * math.e * var)) / 2 / math.log(2)
    data = build_data(text)
    train_ids = torch.as_tensor(data.parts["train"]).long()
    counts = torch.bincount(train_ids, minlength=data.info.vocab_size).double() + 1
    log_p = torch.log2(counts / counts.sum())
    windows, _ = data.split("test")
    unigram = float(-log_p[torch.as_tensor(windows[: text.eval.nll_examples]).long()].mean())
    return {
        "w2": f"two fresh draws of {toy.eval.num_samples:,} points: {floor:.3f} +- {spread:.3f}",
        "bits_per_dim": f"the data's entropy: {entropy_bits:.2f}",
        "bits_per_dim_ode": f"the data's entropy: {entropy_bits:.2f}",
        "bits_per_char": f"unigram {unigram:.2f}, uniform {math.log2(data.info.vocab_size):.2f}",
        "sample_nfe": f"{text.method.config.sample_steps} sampling steps",
    }


README_TABLE_HEADER = "| run | metric | value | time on 2 cores | for reference |"


def table_rows(result: dict) -> list[str]:
    """The "What you should see" table: header, rule and one row per shown metric."""
    normal, refs = result["normal"], result.get("references", {})
    lines = [README_TABLE_HEADER, "|---|---|---|---|---|"]
    for name, shown in SHOWN.items():
        seconds = normal[name]["seconds"]
        for i, (key, label) in enumerate(shown):
            value = normal[name]["metrics"].get(key)
            time_cell = f"{seconds:.0f} s (train + evaluation)" if i == 0 else ""
            lines.append(f"| {name} | {label} | {value:.3g} | {time_cell} | {refs.get(key, '')} |")
    return lines


def update_readme(result: dict, readme: Path = ROOT / "README.md") -> None:
    """Replace the table under README.md's "What you should see" line with this run's rows."""
    text = readme.read_text()
    head, sep, rest = text.partition("What you should see")
    if not sep:
        raise SystemExit(f"{readme}: no 'What you should see' section")
    lines = rest.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("| run | metric"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    lines[start:end] = table_rows(result)
    readme.write_text(head + sep + "\n".join(lines))


def _busy(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x += 1


def run_main_job(work: Path) -> dict:
    """Train both runs (the README's commands) into ``work``; metrics and wall seconds per run."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = {}
    for name, config in RUNS.items():
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "discodiff", "train", str(ROOT / config), "--out", str(work / name)]
        subprocess.run(
            cmd, check=True, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        out[name] = {
            "seconds": time.perf_counter() - start,
            "metrics": json.loads((work / name / "metrics.json").read_text()),
        }
    return out


def identical(result: dict) -> bool:
    """Whether the slow runs' metrics equal the normal runs', timings and provenance aside."""
    skip = TIMING_KEYS | PROVENANCE_KEYS

    def kept(run: dict) -> dict:
        return {k: v for k, v in run["metrics"].items() if k not in skip}

    return all(kept(result["slow"][n]) == kept(result["normal"][n]) for n in RUNS)


def markdown(result: dict) -> str:
    meta, normal = result["meta"], result["normal"]
    lines: list[str] = [
        "# The README's main job",
        "",
        f"Command: `{meta['command']}`  ",
        f"Commit: {meta['commit']}; machine: {meta['machine']}, {meta['cpus']} CPUs; load average "
        f"{meta.get('load_before', float('nan')):.1f} before, {meta.get('load_after', float('nan')):.1f} "
        "after (times on a busy machine are provisional).",
        "",
        *table_rows(result),
    ]
    if "slow" in result:
        slow = result["slow"]
        lines += [
            "",
            f"With {meta['slow']} competing CPU-bound processes: "
            + ", ".join(f"{n} {slow[n]['seconds']:.0f} s (vs {normal[n]['seconds']:.0f} s)" for n in RUNS)
            + f"; every metric except timings identical: {result['identical']}.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slow", type=int, default=0, help="also run with this many competing busy processes")
    p.add_argument("--work", type=Path, default=Path("/tmp/main_job"))
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--readme", action="store_true", help="also write the rows into README.md's table")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from discodiff.provenance import git_commit

    meta = {
        "command": "python " + " ".join(sys.argv),
        "commit": git_commit(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "slow": args.slow,
        "load_before": os.getloadavg()[0],
    }
    print(meta["command"], flush=True)
    result = {"meta": meta, "references": references(), "normal": run_main_job(args.work / "normal")}
    if args.slow:
        stop_at = time.time() + 24 * 3600
        hogs = [multiprocessing.Process(target=_busy, args=(stop_at,), daemon=True) for _ in range(args.slow)]
        for h in hogs:
            h.start()
        try:
            result["slow"] = run_main_job(args.work / "slow")
        finally:
            for h in hogs:
                h.terminate()
        result["identical"] = identical(result)
    meta["load_after"] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "main_job.json").write_text(json.dumps(result, indent=1))
    (args.out / "main_job.md").write_text(markdown(result))
    if args.readme:
        update_readme(result)
    print(markdown(result))


if __name__ == "__main__":
    main()
