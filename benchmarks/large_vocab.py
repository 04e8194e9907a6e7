"""Every token method at a large vocabulary (GPT-2's K = 50,257): the training step against the
network's head + cross-entropy alone, and peak memory (issue 16, Deliver 2).

Each method is built from its ``configs/shakespeare/*.yaml`` method section on token data of the
given vocabulary, with the same one-layer transformer (``--width``, ``--depth``) for all; one
training step is ``method.loss(batch).loss.backward()`` on ``--tokens`` tokens. The reference is
the head alone: a ``Linear(width, K)`` on fixed hidden states, cross-entropy on every token,
backward. Timing alternates all cases in one process (medians of ``--repeats``); peak memory is
the growth of the process's peak resident set during one step (``VmHWM`` after a reset through
``/proc/self/clear_refs``), in units of one ``(tokens, K)`` float32 logits tensor and relative to
head + CE's own peak. Minor page faults per step are counted too (a fresh 1.65 GB tensor costs
about 400,000 faults of 4 KB under glibc's mmap; ``--allocator thp`` sets PyTorch's
``THP_MEM_ALLOC_ENABLE=1``, 2 MB pages, and reruns in a child process).

    python benchmarks/large_vocab.py --vocab 50257 --tokens 8192 --repeats 5 --json OUT

Writes ``{"methods": {NAME: {"ratio_vs_head_ce": r, "peak_vs_head_ce": m, "peak_logits": p}}}``
(plus per-method seconds and faults, and ``meta``) to ``OUT`` (default
``benchmarks/results/large_vocab.json``) and a markdown table beside it.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from discodiff import build as _build  # noqa: F401  (registers every component)
from discodiff.base import METHODS, Batch
from discodiff.data import DataInfo
from discodiff.nets.transformer import Transformer, TransformerConfig
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
    peak_rss_growth,
    ratio,
    write,
)

CONFIGS = ROOT / "configs" / "shakespeare"
DEFAULT_METHODS = "d3pm_uniform,d3pm_absorbing,mdlm,ctmc_uniform,udlm,sedd_absorb,sedd_uniform,ar"
TARGETS = {"ratio_vs_head_ce": 1.2, "peak_vs_head_ce": 1.25}
HEAD_CE = "head+ce"


def build_method(name: str, vocab: int, length: int, net: TransformerConfig):
    config = load_config(CONFIGS / f"{name}.yaml").method
    info = DataInfo((length,), kind="tokens", vocab_size=vocab)
    return METHODS.get(config.name)(config.config, info, lambda spec: Transformer(spec, net))


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--tokens", type=int, default=8192, help="tokens per step (batch x length)")
    parser.add_argument("--length", type=int, default=1024, help="sequence length")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", default=DEFAULT_METHODS, help="config names in configs/shakespeare")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=1)
    add_options(parser)
    parser.add_argument("--allocator", choices=("default", "thp"), default="default")
    parser.add_argument("--json", type=Path, default=None, help="output JSON (markdown beside it)")
    args = parser.parse_args()
    if args.allocator == "thp" and os.environ.get("THP_MEM_ALLOC_ENABLE") != "1":
        env = {**os.environ, "THP_MEM_ALLOC_ENABLE": "1"}
        sys.exit(subprocess.run([sys.executable, *sys.argv], env=env).returncode)
    apply_options(args)
    started, start_machine = time.perf_counter(), machine()
    torch.manual_seed(0)
    K, L = args.vocab, args.length
    B = max(1, args.tokens // L)
    net = TransformerConfig(width=args.width, depth=args.depth, heads=4)
    methods = {name: build_method(name, K, L, net) for name in args.methods.split(",")}
    x0 = torch.randint(0, K, (B, L), generator=torch.Generator().manual_seed(0))
    head = torch.nn.Linear(args.width, K)
    hidden = torch.randn(B * L, args.width, requires_grad=True)
    targets = x0.reshape(-1)

    def head_ce() -> None:
        head.zero_grad(set_to_none=True)
        hidden.grad = None
        F.cross_entropy(head(hidden), targets).backward()

    def train_step(method):
        def run() -> None:
            method.zero_grad(set_to_none=True)
            torch.manual_seed(1)
            method.loss(Batch(x0)).loss.backward()

        return run

    cases = {HEAD_CE: head_ce, **{name: train_step(m) for name, m in methods.items()}}
    times = alternate(cases, args.repeats)
    logits = B * L * K * 4
    peaks, fault_counts = {}, {}
    for name, fn in cases.items():
        before = faults()
        peaks[name] = peak_rss_growth(fn)
        fault_counts[name] = faults() - before
    rows = {}
    for name in methods:
        rows[name] = {
            "ratio_vs_head_ce": ratio(times, name, HEAD_CE),
            "peak_vs_head_ce": peaks[name] / max(peaks[HEAD_CE], 1),
            "peak_logits": peaks[name] / logits,
            "seconds": median(times[name]),
            "page_faults": fault_counts[name],
        }
    reference = {
        "seconds": median(times[HEAD_CE]),
        "peak_logits": peaks[HEAD_CE] / logits,
        "page_faults": fault_counts[HEAD_CE],
    }
    info = meta(started) | {"machine": start_machine, "allocator": args.allocator}
    info["setup"] = {"vocab": K, "tokens": B * L, "length": L, "width": args.width, "depth": args.depth}
    results = {"methods": rows, "head_ce": reference, "targets": TARGETS, "meta": info}
    write("large_vocab", results, markdown(results), json_path=args.json)


def markdown(results: dict) -> str:
    s, ref = results["meta"]["setup"], results["head_ce"]
    lines = [
        f"# Token methods at K = {s['vocab']}: training step and peak memory against head + cross-entropy",
        "",
        *meta_lines(results["meta"]),
        "",
        f"{s['tokens']} tokens per step (length {s['length']}), transformer width {s['width']}, depth "
        f"{s['depth']}, float32, allocator: {results['meta']['allocator']}. Head + CE alone: "
        f"{ref['seconds']:.2f} s, peak {ref['peak_logits']:.2f} logits, {ref['page_faults']} page faults. "
        f"Targets: step <= {TARGETS['ratio_vs_head_ce']}x, peak <= {TARGETS['peak_vs_head_ce']}x "
        "head + CE's.",
        "",
        "| method (config) | step / head+CE | peak / head+CE's | peak (logits) | s / step | page faults |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results["methods"].items():
        lines.append(
            f"| {name} | {r['ratio_vs_head_ce']:.2f} | {r['peak_vs_head_ce']:.2f} | {r['peak_logits']:.2f} | "
            f"{r['seconds']:.2f} | {r['page_faults']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
