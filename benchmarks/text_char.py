"""Character-level text benchmark on tiny-shakespeare: every method, same network, same CPU budget.

For each method config in ``configs/shakespeare/``: train for ``--budget`` seconds of wall-clock
time (the configs share one transformer size), then measure

- validation bits/char (each method's ``nll``: the bound, summed over all T steps for D3PM; exact
  for the AR baseline) on ``--val-windows`` evenly spaced 256-character windows;
- training throughput (tokens/s, from the run's metrics log) and the network's share of a training
  step (forward + backward of the network alone, divided by the whole step);
- with ``--sampling``: for 256-character sequences, generative perplexity under the AR baseline
  trained here, per-sample entropy, wall time and network calls at 8 ... 256 steps (16, 64, 256
  for the embedding methods) for every sampler of the method (CTMC Euler and predictor-corrector
  only with ``--all-samplers``), beside the AR baseline's own sampling time.

    python benchmarks/text_char.py [--methods ar,d3pm_uniform,...] [--budget 600] [--sampling]

Writes ``text_char.json`` and ``text_char.md`` under ``--out`` (rows merge with earlier results).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from discodiff.base import Batch
from discodiff.build import load_run
from discodiff.evaluate import likelihood
from discodiff.metrics.text import generative_perplexity, sample_entropy
from discodiff.run import train_run
from discodiff.runconfig import EvalConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "shakespeare"
DEFAULT_METHODS = ["ar", "d3pm_uniform", "d3pm_absorbing"]
SAMPLING_STEPS = [8, 16, 32, 64, 128, 256]
EMBEDDING_STEPS = [16, 64, 256]
EMBEDDING_METHODS = {"diffusion_lm", "cdcd", "simplex"}
SKIPPED_SAMPLERS = {"euler", "pc"}  # CTMC samplers run with --all-samplers only
SAMPLES = 8


def train(name: str, budget: float, work: Path) -> Path:
    cfg = load_config(
        CONFIGS / f"{name}.yaml",
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
    return run_dir


def throughput(run_dir: Path, seq_len: int) -> float:
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["examples_per_s"] for r in recs if r["kind"] == "train"]
    rates = rates[1:] or rates  # skip the first window (warm-up) when there are others
    return sum(rates) / len(rates) * seq_len


def network_share(method, batch: Batch, repeats: int = 5) -> float:
    """Time of the network alone over the time of the whole ``loss`` + backward (medians of
    ``repeats``). Every network call that ``loss`` makes is replayed on its own inputs: forward +
    backward for calls with gradients, forward only for calls under ``no_grad`` (e.g. CDCD's
    self-conditioning pass on a share of the batch)."""
    calls = []

    def grab(module, args, kwargs):
        detach = lambda a: a.detach() if torch.is_tensor(a) else a  # noqa: E731
        calls.append(
            ([detach(a) for a in args], {k: detach(v) for k, v in kwargs.items()}, torch.is_grad_enabled())
        )

    handle = method.net.register_forward_pre_hook(grab, with_kwargs=True)
    method.loss(batch)
    handle.remove()

    def replay_network() -> None:
        for args, kwargs, grad in calls:
            if grad:
                method.net(*args, **kwargs).float().square().mean().backward()
            else:
                with torch.no_grad():
                    method.net(*args, **kwargs)

    def timed(fn) -> float:
        times = []
        for _ in range(repeats):
            method.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return sorted(times)[repeats // 2]

    with torch.autocast("cpu", dtype=torch.bfloat16):
        whole = timed(lambda: method.loss(batch).loss.backward())
        net = timed(replay_network)
    return net / whole


def sampling_rows(name: str, run, reference, all_samplers: bool) -> list[dict]:
    rows = []
    L = run.method.event_shape[0]
    ctmc = "tau_leaping" in run.method.samplers
    samplers = [s for s in run.method.samplers if all_samplers or not ctmc or s not in SKIPPED_SAMPLERS]
    grid = [L] if name == "ar" else EMBEDDING_STEPS if name in EMBEDDING_METHODS else SAMPLING_STEPS
    for sampler in samplers:
        for steps in grid:
            gen = torch.Generator().manual_seed(0)
            t0 = time.perf_counter()
            try:
                out = run.method.sample(SAMPLES, steps=steps, sampler=sampler, generator=gen)
            except ValueError as err:  # e.g. more steps than a discrete-time model has
                rows.append({"method": name, "sampler": sampler, "steps": steps, "error": str(err)})
                continue
            seconds = time.perf_counter() - t0
            ppl = generative_perplexity(reference, out.x, batch_size=SAMPLES)
            rows.append(
                {
                    "method": name,
                    "sampler": sampler,
                    "steps": steps,
                    "seconds_per_sequence": seconds / SAMPLES,
                    "nfe": out.nfe,
                    "gen_ppl": ppl["gen_ppl"],
                    "entropy": sample_entropy(out.x, run.data.info.vocab_size),
                }
            )
    return rows


def markdown(results: dict) -> str:
    meta = results["meta"]
    lines = [
        f"# Tiny-shakespeare, character level: {meta['budget_s']:.0f} s CPU budget per method",
        "",
        f"Same transformer for every method; bits/char on {meta['val_windows']} validation windows of 256 "
        "characters (bound for diffusion models, exact for AR).",
        "",
        "| method | steps trained | val bits/char | train tokens/s | network share of step |",
        "|---|---|---|---|---|",
    ]
    for name, r in results["train"].items():
        lines.append(
            f"| {name} | {r['train_steps']} | {r['bits_per_char']:.3f} | {r['tokens_per_s']:.0f} | "
            f"{100 * r['network_share']:.0f}% |"
        )
    if results.get("sampling"):
        lines += [
            "",
            f"## Sampling {SAMPLES} sequences of 256 characters",
            "",
            "| method | sampler | steps | s / sequence | network calls | gen. ppl (AR) | entropy (nats) |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in results["sampling"]:
            if "error" in r:
                continue
            lines.append(
                f"| {r['method']} | {r['sampler']} | {r['steps']} | {r['seconds_per_sequence']:.3f} | "
                f"{r['nfe']} | {r['gen_ppl']:.2f} | {r['entropy']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    parser.add_argument("--budget", type=float, default=600.0, help="training seconds per method")
    parser.add_argument("--val-windows", type=int, default=32)
    parser.add_argument("--sampling", action="store_true", help="also run the sampling benchmark")
    parser.add_argument("--all-samplers", action="store_true", help="also CTMC Euler and PC sampling")
    parser.add_argument(
        "--share-only", action="store_true", help="only re-measure the network's share of a step"
    )
    parser.add_argument("--retrain", action="store_true", help="train again even if a run exists")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_text")
    args = parser.parse_args()
    names = args.methods.split(",")
    if args.sampling and "ar" not in names:
        names = ["ar", *names]
    path = args.out / "text_char.json"
    results = json.loads(path.read_text()) if path.is_file() else {"train": {}, "sampling": []}
    meta = {
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "budget_s": args.budget,
        "val_windows": args.val_windows,
    }
    runs = {}
    for name in names:
        run_dir = args.work / name
        if args.retrain or not (run_dir / "checkpoints" / "latest").is_file():
            train(name, args.budget, args.work)
            results["meta"] = meta  # the budget of the runs in the table
        results.setdefault("meta", meta)
        run = runs[name] = load_run(run_dir, device=torch.device("cpu"))
        x, _ = run.data.split("val")
        if args.share_only:
            run.method.train()
            results["train"][name]["network_share"] = network_share(run.method, Batch(x[:32]))
            run.method.eval()
            print(name, results["train"][name], flush=True)
            continue
        nll = likelihood(
            run.method, run.data, EvalConfig(nll_examples=args.val_windows, batch_size=32), split="val"
        )
        run.method.train()
        share = network_share(run.method, Batch(x[:32]))
        run.method.eval()
        results["train"][name] = {
            "train_steps": run.step,
            "bits_per_char": nll["bits_per_char"],
            "tokens_per_s": throughput(run_dir, x.shape[1]),
            "network_share": share,
        }
        print(name, results["train"][name], flush=True)
    if args.sampling:
        reference = runs["ar"].method
        results["sampling"] = [r for r in results.get("sampling", []) if r["method"] not in names]
        for name in names:
            results["sampling"] += sampling_rows(name, runs[name], reference, args.all_samplers)
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    (args.out / "text_char.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
