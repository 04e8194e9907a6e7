"""Graph benchmark: DiGress on community-small, ego-small, planar-64-200 and SBM-200 after a fixed
CPU budget each, beside the published figures.

For each set: train ``configs/graphs/<set>.yaml`` for ``--budget`` seconds of wall-clock time
(``train.time_budget_s``), then the run's own evaluation (``discodiff.run.train_run``): the bound
in bits per graph and per entry on the test split, and ``eval.num_samples`` samples scored by the
data set's metrics (MMDs in the config's kernel protocol, ratios to the train-vs-test MMD, V.U.N.
for planar and SBM). The training split scored as if it were a sample gives the floor of each
metric on the same number of graphs. Published: GDSS (Jo et al. 2022, Table 1; EMD kernels, mean of
degree / clustering / orbit MMD) 0.046 on community-small and 0.017 on ego-small; DiGress (Vignac
et al. 2023) as quoted by DeFoG (Qin et al. 2025; TV kernels): planar V.U.N. 77.5%, ratio 5.1; SBM
V.U.N. 60%, ratio 1.7. Ours are CPU-budget figures (minutes on 2 cores, against days on a GPU).

    python benchmarks/graphs.py [--budget 600] [--sets community_small ego_small planar sbm]
                                [--threads 2] [--out benchmarks/results] [--work runs/bench_graphs]

Writes ``graphs.json`` and ``graphs.md`` under ``--out`` (with the commit, machine and command).
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

from discodiff.build import build_data
from discodiff.run import train_run
from discodiff.runconfig import load_config

ROOT = Path(__file__).resolve().parents[1]
SETS = ("community_small", "ego_small", "planar", "sbm")
PUBLISHED = {
    "community_small": {"source": "GDSS", "mmd_average": 0.046},
    "ego_small": {"source": "GDSS", "mmd_average": 0.017},
    "planar": {"source": "DiGress (via DeFoG)", "vun": 0.775, "mmd_ratio": 5.1},
    "sbm": {"source": "DiGress (via DeFoG)", "vun": 0.60, "mmd_ratio": 1.7},
}
KEYS = (
    "bits_per_graph",
    "bits_per_entry",
    "mmd_degree",
    "mmd_clustering",
    "mmd_orbit",
    "mmd_spectral",
    "mmd_average",
    "mmd_ratio",
    "validity",
    "uniqueness",
    "novelty",
    "vun",
)


def bench_one(name: str, budget: float, work: Path) -> dict:
    overrides = [
        f"train.time_budget_s={budget}",
        "train.steps=10000000",
        "train.ckpt_every=10000000",
        "train.log_every=100",
    ]
    cfg = load_config(ROOT / "configs" / "graphs" / f"{name}.yaml", overrides)
    run_dir = work / name
    if run_dir.exists():  # a fresh run each time (the work directory holds only benchmark runs)
        shutil.rmtree(run_dir)
    t0 = time.perf_counter()
    metrics = train_run(cfg, run_dir, progress=False)
    total = time.perf_counter() - t0
    train_seconds = max(
        (
            json.loads(line).get("elapsed_s", 0.0)
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        ),
        default=0.0,
    )
    data = build_data(cfg)
    floor = data.graph_metrics(data.graphs["train"][: cfg.eval.num_samples])
    return {
        "set": name,
        "steps": metrics["step"],
        "train_seconds": train_seconds,
        "total_seconds": total,
        "mmd_protocol": cfg.data.config.mmd,
        "num_samples": cfg.eval.num_samples,
        **{k: metrics.get(k) for k in KEYS},
        "train_floor": {k: floor.get(k) for k in KEYS if k in floor},
        "published": PUBLISHED[name],
    }


def fmt(value, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        f"# Graphs: DiGress (configs/graphs/*.yaml), {meta['budget_s']:.0f} s CPU budget per set",
        "",
        f"commit {meta['commit']}, {meta['machine']}, {meta['threads']} threads, torch {meta['torch']},"
        f" load average {meta.get('load_average')} at the end, {meta['wall_seconds']:.0f} s in all;"
        f" command: `{meta['command']}`",
        "",
        "Squared MMDs against the test split (community/ego: EMD kernels, GDSS's protocol; planar/SBM: TV",
        "kernels, SPECTRE/DiGress's). `avg` = mean of degree, clustering, orbit (GDSS's Avg.); `ratio` =",
        "mean over the four statistics of MMD(samples, test) / MMD(train, test) (DeFoG's also has wavelet).",
        "`floor`: the training graphs scored as a sample. Bits: the bound with -log p(n), per graph / per",
        "entry (node pairs, plus nodes when labelled). CPU-budget figures, not a reproduction.",
        "",
        "| set | steps | bits/graph | bits/entry | degree | clustering | orbit | spectral | avg | ratio "
        "| V.U.N. | floor avg / V | published |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        pub = r["published"]
        published = ", ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else str(v) for k, v in pub.items() if k != "source"
        )
        floor = r["train_floor"]
        floor_text = f"{fmt(floor.get('mmd_average'))} / {fmt(floor.get('validity'), '.2f')}"
        lines.append(
            f"| {r['set']} | {r['steps']} | {fmt(r['bits_per_graph'], '.1f')} | "
            f"{fmt(r['bits_per_entry'], '.3f')} | "
            f"{fmt(r['mmd_degree'])} | {fmt(r['mmd_clustering'])} | {fmt(r['mmd_orbit'])} | "
            f"{fmt(r['mmd_spectral'])} | {fmt(r['mmd_average'])} | {fmt(r['mmd_ratio'], '.2f')} | "
            f"{fmt(r['vun'], '.3f')} | {floor_text} | {pub['source']}: {published} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=600.0, help="training seconds per set")
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_graphs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = [bench_one(name, args.budget, args.work) for name in args.sets]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    meta = {
        "commit": commit.stdout.strip() or "unknown",
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],  # at the end (load slows every row)
        "torch": torch.__version__,
        "budget_s": args.budget,
        "command": " ".join(["python", *sys.argv]),
        "wall_seconds": time.perf_counter() - start,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "graphs.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (args.out / "graphs.md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))


if __name__ == "__main__":
    main()
