"""The sequence transformer against a plain PyTorch pre-LN transformer of the same shape (issue 16,
Deliver 3): forward + backward of the whole network, fp32 and bf16 autocast, side by side.

Ours is the diffusion denoiser of the text configs (``net: transformer``: token embedding, RoPE,
time-conditioned adaLN-Zero blocks, head). The plain one has the same embedding, width, depth,
heads, MLP and head, learned absolute positions and plain pre-LN blocks
(``h += attn(LN(h)); h += mlp(LN(h))``, ``nn.Linear`` with biases, one fused qkv projection,
``scaled_dot_product_attention``, GELU). Both get the same tokens, and weight matrices and
embeddings drawn from N(0, 0.02) (ours starts with zero adaLN gates and head, which would make its
backward trivial); LayerNorm gains stay 1 and biases 0. (Drawing the gains from N(0, 0.02) too, as
this benchmark once did, shrinks the plain network's activations 50x, and the erf GELU is value
dependent: 9 ms against 46 ms per call on the same shape.) The loss is the mean square of the
output. Reported: the plain network's median time divided by ours (>= 1: ours at least as fast),
and both throughputs in GFLOP/s (matmul and attention FLOPs of forward + backward).

    python benchmarks/network.py --json OUT [--batch 32] [--length 256] [--width 256] [--depth 4]
        [--allocator keep|default]

``--allocator keep`` (the default, what the ``discodiff`` command does at start) keeps glibc's
freed memory for reuse (:mod:`discodiff.allocator`); ``default`` leaves glibc's thresholds, under
which whether a step faults its activations in depends on the allocation history. Both networks
run under the same one; the table gives each one's page faults per step (the most in a timed round).

On a CPU without bf16 instructions (AVX2 only: torch emulates bf16 matmuls, about 70x slower
than fp32) the bf16 pair runs at a 16x smaller batch and is marked emulated (``details``).

Writes ``{"fp32": r, "bf16": r}`` (plus ``meta`` and ``details``) to ``OUT``
(default ``benchmarks/results/network.json``) and a markdown table beside it.
"""

from __future__ import annotations

import argparse
import resource
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from discodiff.allocator import keep_freed_memory
from discodiff.nets import NetSpec
from discodiff.nets.transformer import Transformer, TransformerConfig
from discodiff.utils import native_bf16
from timing import add_options, alternate, apply_options, machine, median, meta, meta_lines, ratio, write


class PlainBlock(nn.Module):
    """Pre-LN block of plain PyTorch modules."""

    def __init__(self, width: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width)
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        B, L, C = h.shape
        q, k, v = self.qkv(self.ln1(h)).view(B, L, 3, self.heads, C // self.heads).unbind(2)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        h = h + self.proj(y.transpose(1, 2).reshape(B, L, C))
        return h + self.mlp(self.ln2(h))


class PlainTransformer(nn.Module):
    def __init__(self, vocab: int, out: int, length: int, width: int, depth: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.embed, self.pos = nn.Embedding(vocab, width), nn.Embedding(length, width)
        self.blocks = nn.ModuleList(PlainBlock(width, heads, mlp_ratio) for _ in range(depth))
        self.norm, self.head = nn.LayerNorm(width), nn.Linear(width, out)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        h = self.embed(x) + self.pos(torch.arange(x.shape[1], device=x.device))
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h))


def flops(batch: int, length: int, width: int, depth: int, vocab: int, mlp_ratio: int) -> float:
    """Matmul + attention FLOPs of one forward + backward (3x the forward)."""
    tokens = batch * length
    per_layer = 2 * tokens * (4 + 2 * mlp_ratio) * width**2 + 4 * tokens * length * width
    return 3 * (depth * per_layer + 2 * tokens * width * vocab)


def step(net: nn.Module, x: torch.Tensor, t: torch.Tensor, precision: str):
    def run():
        net.zero_grad(set_to_none=True)
        context = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
        with context:
            out = net(x, t)
        out.float().square().mean().backward()

    return run


def counted(fn, faults: list[int]):
    """``fn`` that appends its minor page faults to ``faults`` at every call."""

    def run():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        fn()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="output JSON (markdown beside it)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=66, help="output logits; inputs add one [MASK] id")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--allocator", choices=("keep", "default"), default="keep")
    parser.add_argument(
        "--warmup", type=int, default=6, help="untimed rounds first (the heap settles within about 6 steps)"
    )
    add_options(parser)
    args = parser.parse_args()
    apply_options(args)
    if args.allocator == "keep" and not keep_freed_memory():
        parser.error("--allocator keep needs glibc (and DISCODIFF_MALLOC unset)")
    started, start_machine = time.perf_counter(), machine()
    torch.manual_seed(0)
    spec = NetSpec((args.length,), args.vocab, input_vocab=args.vocab + 1)
    config = TransformerConfig(width=args.width, depth=args.depth, heads=args.heads)
    ours = Transformer(spec, config)
    # the same network without time conditioning: built as a causal one (no adaLN: affine
    # LayerNorms, plain residuals), then made bidirectional, to split the gap into adaLN's share
    bare = Transformer(NetSpec((args.length,), args.vocab, input_vocab=args.vocab + 1, causal=True), config)
    bare.causal = False
    plain = PlainTransformer(args.vocab + 1, args.vocab, args.length, args.width, args.depth, args.heads, 4)
    with torch.no_grad():  # the same non-degenerate weights for all (ours starts with zero gates)
        for p in [*ours.parameters(), *bare.parameters(), *plain.parameters()]:
            if p.dim() >= 2:  # matrices and embeddings; LayerNorm gains stay 1 and biases 0
                p.normal_(0.0, 0.02)
    native = native_bf16(torch.device("cpu"))
    results, details = {}, {}
    for precision in ("fp32", "bf16"):
        # emulated bf16 (no AVX-512 BF16 / AMX) runs at about 1/70 of fp32: a 16x smaller batch
        batch = args.batch if precision == "fp32" or native else max(1, args.batch // 16)
        x = torch.randint(0, args.vocab + 1, (batch, args.length))
        t = torch.rand(batch)
        work = flops(batch, args.length, args.width, args.depth, args.vocab, 4)
        nets = {"ours": ours, "ours_no_adaln": bare, "plain": plain}
        counts: dict[str, list[int]] = {name: [] for name in nets}
        cases = {name: counted(step(net, x, t, precision), counts[name]) for name, net in nets.items()}
        times = alternate(cases, args.repeats, warmup=args.warmup)
        results[precision] = ratio(times, "plain", "ours")
        faults = {name: max(c[args.warmup :]) for name, c in counts.items()}  # the timed rounds
        details[precision] = {
            "batch": batch,
            "plain_vs_ours_no_adaln": ratio(times, "plain", "ours_no_adaln"),
            "ours_no_adaln_vs_ours": ratio(times, "ours_no_adaln", "ours"),
            "native": precision == "fp32" or native,
            "seconds": {name: median(v) for name, v in times.items()},
            "gflops": {name: work / median(v) / 1e9 for name, v in times.items()},
            "page_faults_per_step": faults,
        }
    info = meta(started)
    info["machine"] = start_machine
    info["shape"] = vars(args) | {"json": str(args.json)}
    out = {**results, "meta": info, "details": details}
    lines = [
        "# Sequence transformer vs a plain PyTorch pre-LN transformer (forward + backward)",
        "",
        *meta_lines(info),
        "",
        f"Batch {args.batch} x length {args.length}, width {args.width}, depth {args.depth}, heads "
        f"{args.heads}, MLP 4x, vocabulary {args.vocab}; {args.warmup} untimed rounds, then {args.repeats} "
        f"alternating repeats, medians; allocator: {args.allocator}.",
        "",
        "*ours without adaLN*: the same network built without time conditioning (affine LayerNorms,"
        " plain residuals, RoPE kept); its ratios split the gap between adaLN and the rest. Page faults:"
        " the most in any timed round.",
        "",
        "| precision | batch | plain / ours | plain / ours without adaLN | ours without adaLN / ours "
        "| ours ms | ours without adaLN ms | plain ms | ours GFLOP/s | plain GFLOP/s "
        "| page faults ours / without adaLN / plain |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in ("fp32", "bf16"):
        d = details[p]
        name = p if d["native"] else f"{p} (emulated: no bf16 instructions on this CPU)"
        sec, pf = d["seconds"], d["page_faults_per_step"]
        lines.append(
            f"| {name} | {d['batch']} | {results[p]:.3f} | {d['plain_vs_ours_no_adaln']:.3f} | "
            f"{d['ours_no_adaln_vs_ours']:.3f} | {1e3 * sec['ours']:.1f} | "
            f"{1e3 * sec['ours_no_adaln']:.1f} | "
            f"{1e3 * sec['plain']:.1f} | {d['gflops']['ours']:.1f} | {d['gflops']['plain']:.1f} | "
            f"{pf['ours']} / {pf['ours_no_adaln']} / {pf['plain']} |"
        )
    write("network", out, "\n".join(lines) + "\n", json_path=args.json)


if __name__ == "__main__":
    main()
