"""Score entropy at closed-form cost: SEDD's loss and sampler steps against masked diffusion's on
identical network outputs (issue 16, Deliver 1).

Every method gets a "network" that returns one fixed ``(B, L, K)`` tensor (shared), so only the
method's own math is timed: the loss forward pass (with autograd recording), forward + backward
(to the output), and one sampler step from t = 0.5 to 0.5 - 1/steps given the output (MDLM: its
SUBS parameterization and ancestral step; SEDD: the Euler and analytic steps). SEDD absorbing uses
the log-linear schedule with ``scale_by_sigma`` (its default), SEDD uniform the geometric one.
Targets: SEDD absorbing loss within 1.2x of MDLM's, uniform within 1.5x; steps within 1.2x of the
masked step.

    python benchmarks/score_entropy.py [--vocab 66,50257] [--tokens 8192] [--length 1024] [--repeats 5]

Writes ``score_entropy.json`` and ``score_entropy.md`` under ``benchmarks/results`` (or ``--json``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

from discodiff.base import Batch
from discodiff.categorical import (
    SEDD,
    AbsorbingTransition,
    ContinuousTimeOptions,
    MaskedConfig,
    MaskedDiffusion,
    UniformTransition,
)
from discodiff.categorical.decoding import DecodeOptions, unmask_step
from discodiff.schedules import GeometricSchedule, LogLinearSchedule
from timing import add_options, alternate, apply_options, machine, median, meta, meta_lines, ratio, write

TARGETS = {"loss": {"sedd_absorbing": 1.2, "sedd_uniform": 1.5}, "step": 1.2}


class FixedOutput(nn.Module):
    """Returns the shared tensor ``z`` whatever the input."""

    def __init__(self, z: nn.Parameter) -> None:
        super().__init__()
        self.z = z

    def forward(self, x, t, cond=None):
        return self.z


def build(K: int, z: nn.Parameter, L: int) -> dict:
    loglinear = LogLinearSchedule(eps=0.0)
    mdlm = MaskedDiffusion(
        FixedOutput(z), AbsorbingTransition(loglinear, K), MaskedConfig(schedule=loglinear), event_shape=(L,)
    )
    options = ContinuousTimeOptions()
    absorbing = SEDD(
        FixedOutput(z), AbsorbingTransition(loglinear, K), options, scale_by_sigma=True, event_shape=(L,)
    )
    uniform = SEDD(FixedOutput(z), UniformTransition(GeometricSchedule(), K), options, event_shape=(L,))
    return {"mdlm": mdlm, "sedd_absorbing": absorbing, "sedd_uniform": uniform}


def loss_cases(methods: dict, x0: torch.Tensor, z: nn.Parameter) -> dict:
    def forward(method):
        def run():
            torch.manual_seed(1)
            method.loss(Batch(x0))

        return run

    def backward(method):
        def run():
            z.grad = None
            torch.manual_seed(1)
            method.loss(Batch(x0)).loss.backward()

        return run

    cases = {f"{name} forward": forward(m) for name, m in methods.items()}
    cases.update({f"{name} forward+backward": backward(m) for name, m in methods.items()})
    return cases


def step_cases(methods: dict, x0: torch.Tensor, steps: int) -> dict:
    B = x0.shape[0]
    t = torch.full((B,), 0.5, dtype=torch.float64)
    s = t - 1.0 / steps
    g = torch.Generator().manual_seed(0)
    mdlm = methods["mdlm"]
    u = torch.rand(*x0.shape, 2, generator=g, dtype=torch.float64)
    x_absorb = mdlm.transition.sample_marginal(x0, t, u)
    x_uniform = methods["sedd_uniform"].transition.sample_marginal(x0, t, u)
    opts = DecodeOptions("ancestral", steps, 1.0, 1.0, 1.0, x0.shape[1])

    def masked_step():
        unmask_step(mdlm, x_absorb, mdlm.denoise(x_absorb, t), s, t, opts, g)

    def sedd_step(name: str, x: torch.Tensor, sampler: str):
        method = methods[name]
        return lambda: method._step(x, s, t, None, 1.0, sampler, g, None)

    cases = {"mdlm ancestral step": masked_step}
    for name, x in (("sedd_absorbing", x_absorb), ("sedd_uniform", x_uniform)):
        for sampler in ("euler", "analytic"):
            cases[f"{name} {sampler} step"] = sedd_step(name, x, sampler)
    return cases


def run_vocab(K: int, tokens: int, L: int, repeats: int, steps: int) -> dict:
    B = tokens // L
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, K, (B, L), generator=g)
    z = nn.Parameter(2 * torch.randn(B, L, K, generator=g))
    methods = build(K, z, L)
    losses = alternate(loss_cases(methods, x0, z), repeats)
    with torch.no_grad():
        samplers = alternate(step_cases(methods, x0, steps), repeats)
    times = {**losses, **samplers}
    rows = {name: median(v) for name, v in times.items()}
    ratios = {}
    for name in ("sedd_absorbing", "sedd_uniform"):
        for part in ("forward", "forward+backward"):
            ratios[f"{name} loss {part}"] = ratio(times, f"{name} {part}", f"mdlm {part}")
        for sampler in ("euler", "analytic"):
            ratios[f"{name} {sampler} step"] = ratio(times, f"{name} {sampler} step", "mdlm ancestral step")
    return {"vocab": K, "tokens": B * L, "length": L, "seconds": rows, "ratio_vs_mdlm": ratios}


def markdown(results: dict) -> str:
    lines = [
        "# Score entropy and CTMC steps at closed-form cost (SEDD vs masked diffusion, same outputs)",
        "",
        *meta_lines(results["meta"]),
        "",
        "Ratios: median over repeats of SEDD's time / MDLM's time in the same repeat "
        f"(targets: absorbing loss <= {TARGETS['loss']['sedd_absorbing']}, uniform loss <= "
        f"{TARGETS['loss']['sedd_uniform']}, steps <= {TARGETS['step']}).",
        "",
        "| K | tokens | case | ratio vs MDLM | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        for case, r in run["ratio_vs_mdlm"].items():
            name = case.split()[0]
            target = TARGETS["step"] if case.endswith("step") else TARGETS["loss"][name]
            lines.append(
                f"| {run['vocab']} | {run['tokens']} | {case} | {r:.2f} | {target} | "
                f"{'yes' if r <= target else 'no'} |"
            )
    lines += ["", "Median seconds per call:", "", "| K | case | seconds |", "|---|---|---|"]
    for run in results["runs"]:
        lines += [f"| {run['vocab']} | {case} | {sec:.4f} |" for case, sec in run["seconds"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", default="66,50257", help="comma-separated vocabulary sizes")
    parser.add_argument("--tokens", type=int, default=8192, help="B x L")
    parser.add_argument("--length", type=int, default=1024, help="L")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=128, help="sampler steps (step length 1 / steps)")
    add_options(parser)
    parser.add_argument("--json", type=Path, default=None, help="output JSON (markdown beside it)")
    args = parser.parse_args()
    apply_options(args)
    started, start_machine = time.perf_counter(), machine()
    runs = [
        run_vocab(int(K), args.tokens, args.length, args.repeats, args.steps) for K in args.vocab.split(",")
    ]
    info = meta(started)
    info["machine"] = start_machine
    results = {"meta": info, "runs": runs}
    write("score_entropy", results, markdown(results), json_path=args.json)


if __name__ == "__main__":
    main()
