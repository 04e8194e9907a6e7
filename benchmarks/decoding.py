"""Autoregressive decoding against the network's own forward passes (issue 16, Deliver 4).

The AR baseline of ``configs/shakespeare/ar.yaml`` (its transformer, the KV cache) samples one
sequence of ``--length`` tokens at batch 1; the reference replays exactly the network calls of that
decode (one new token per call into a fresh cache). Both run alternately in one process (medians of
``--repeats``); the ratio is the decode's time per token over the network's. Target <= 1.5.

    python benchmarks/decoding.py [--length 256] [--vocab 65] [--repeats 7]

Writes ``decoding.json`` and ``decoding.md`` under ``benchmarks/results`` (or ``--json``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from discodiff import build as _build  # noqa: F401  (registers every component)
from discodiff.base import METHODS
from discodiff.data import DataInfo
from discodiff.nets import NETS
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

TARGET = 1.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=65)
    parser.add_argument("--repeats", type=int, default=7)
    add_options(parser)
    parser.add_argument("--json", type=Path, default=None, help="output JSON (markdown beside it)")
    args = parser.parse_args()
    apply_options(args)
    started, start_machine = time.perf_counter(), machine()
    config = load_config(ROOT / "configs" / "shakespeare" / "ar.yaml")
    info = DataInfo((args.length,), kind="tokens", vocab_size=args.vocab)
    torch.manual_seed(0)
    method = METHODS.get(config.method.name)(
        config.method.config, info, lambda spec: NETS.get(config.net.name)(config.net.config, spec)
    )
    with torch.no_grad():
        for p in method.parameters():  # a non-degenerate network (the head starts at zero)
            p.normal_(0.0, 0.05)
    method.eval()
    net = method.net
    tokens = method.sample(1, generator=torch.Generator().manual_seed(0)).x  # (1, L)
    inputs = torch.cat([torch.full((1, 1), method.bos), tokens[:, :-1]], dim=1)
    t = torch.zeros(1)

    def decode() -> None:
        method.sample(1, generator=torch.Generator().manual_seed(0))

    def network() -> None:
        cache = net.init_cache(args.length)
        for i in range(args.length):
            net(inputs[:, i : i + 1], t, None, cache=cache)

    with torch.no_grad():
        times = alternate({"decode": decode, "network": network}, args.repeats)
    r = ratio(times, "decode", "network")
    per_token = {name: median(v) / args.length for name, v in times.items()}
    info = meta(started) | {"machine": start_machine}
    results = {"ratio_vs_network": r, "target": TARGET, "seconds_per_token": per_token, "meta": info}
    lines = [
        "# Autoregressive decoding vs the network's own forward passes (batch 1, KV cache)",
        "",
        *meta_lines(info),
        "",
        f"{args.length} tokens, vocabulary {args.vocab}, network of `configs/shakespeare/ar.yaml`; "
        f"{args.repeats} alternating repeats, medians.",
        "",
        "| decode ms / token | network ms / token | ratio | target | met |",
        "|---|---|---|---|---|",
        f"| {1e3 * per_token['decode']:.3f} | {1e3 * per_token['network']:.3f} | {r:.2f} | {TARGET} | "
        f"{'yes' if r <= TARGET else 'no'} |",
    ]
    write("decoding", results, "\n".join(lines) + "\n", json_path=args.json)


if __name__ == "__main__":
    main()
