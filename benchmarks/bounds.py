"""Likelihood bounds against the network calls they make (issue 16, Deliver 5): the discrete-time
Gaussian bound (toy2d and digits) and the D3PM bound (digits, uniform and absorbing).

For each config, ``method.nll(batch, estimator="bound")`` on the evaluation batch is timed against
a replay of exactly the network calls it made (recorded once with a forward pre-hook, replayed
under ``no_grad``), alternately in one process (medians of ``--repeats``). The ratio is the
bound's time over its network calls' time; target <= 1.3. Networks are freshly initialized (the
time does not depend on the weights); ``--timesteps`` shortens T for a quick run.

    python benchmarks/bounds.py [--configs toy2d/ddpm,digits/ddpm,digits/d3pm_uniform,digits/d3pm_absorbing]
        [--repeats 5] [--timesteps 1000]

Writes ``bounds.json`` and ``bounds.md`` under ``benchmarks/results`` (or ``--json``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from discodiff.base import Batch
from discodiff.build import build_run
from discodiff.runconfig import load_config
from timing import (
    ROOT,
    add_options,
    alternate,
    apply_options,
    machine,
    median,
    meta,
    meta_lines,
    ratio,
    write,
)

DEFAULT_CONFIGS = "toy2d/ddpm,digits/ddpm,digits/d3pm_uniform,digits/d3pm_absorbing"
TARGET = 1.3


def evaluation_batch(config, data) -> Batch:
    """The first evaluation batch of the test split (toy2d: 2,000 points; digits: all 364)."""
    x, cond = data.split("test")
    n = min(len(x), config.eval.batch_size)
    return Batch(x[:n], None if cond is None else cond[:n])


def recorded_calls(method, batch: Batch) -> list:
    """Every network call of one bound evaluation, in order: (network, args, kwargs)."""
    calls = []

    def grab(module, args, kwargs):
        calls.append((module, [a.detach() if torch.is_tensor(a) else a for a in args], dict(kwargs)))

    nets = list(method.networks().values())
    handles = [net.register_forward_pre_hook(grab, with_kwargs=True) for net in nets]
    method.nll(batch, estimator="bound")
    for handle in handles:
        handle.remove()
    return calls


def run_config(name: str, repeats: int, timesteps: int | None) -> dict:
    path = ROOT / "configs" / f"{name}.yaml"
    overrides = []
    if timesteps:  # a shorter chain; sampling steps (unused here) may not exceed it
        overrides.append(f"method.timesteps={timesteps}")
        steps = getattr(load_config(path).method.config, "sample_steps", None)
        if steps is not None and steps > timesteps:
            overrides.append(f"method.sample_steps={timesteps}")
    config = load_config(path, overrides)
    torch.manual_seed(0)
    data, method = build_run(config)
    method.eval()
    batch = evaluation_batch(config, data)
    calls = recorded_calls(method, batch)

    def bound() -> None:
        torch.manual_seed(1)
        method.nll(batch, estimator="bound")

    def network() -> None:
        for net, args, kwargs in calls:
            net(*args, **kwargs)

    with torch.no_grad():
        times = alternate({"bound": bound, "network": network}, repeats)
    return {
        "config": name,
        "examples": batch.size,
        "network_calls": len(calls),
        "seconds": {k: median(v) for k, v in times.items()},
        "ratio_vs_network": ratio(times, "bound", "network"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="config paths under configs/, no .yaml")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--timesteps", type=int, default=None, help="override T (default: the config's)")
    parser.add_argument("--json", type=Path, default=None, help="output JSON (markdown beside it)")
    add_options(parser)
    args = parser.parse_args()
    apply_options(args)
    started, start_machine = time.perf_counter(), machine()
    rows = [run_config(name, args.repeats, args.timesteps) for name in args.configs.split(",")]
    info = meta(started) | {"machine": start_machine}
    results = {"configs": rows, "target": TARGET, "meta": info}
    lines = [
        "# Likelihood bounds against the network calls they make",
        "",
        *meta_lines(info),
        "",
        f"{args.repeats} alternating repeats, medians; target: bound <= {TARGET}x its network calls.",
        "",
        "| config | examples | network calls | bound s | network s | ratio | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["seconds"]
        lines.append(
            f"| {r['config']} | {r['examples']} | {r['network_calls']} | {s['bound']:.2f} | "
            f"{s['network']:.2f} | {r['ratio_vs_network']:.2f} | "
            f"{'yes' if r['ratio_vs_network'] <= TARGET else 'no'} |"
        )
    write("bounds", results, "\n".join(lines) + "\n", json_path=args.json)


if __name__ == "__main__":
    main()
