"""``discodiff sample RUN_DIR``: draw samples from a trained run, optionally from known values
(a text prompt, suffix or infilling template; an image to inpaint), and write them with a
``.json`` record beside them (sampler, steps, seed, guidance, prompt, network calls, seconds).

::

    discodiff sample RUN_DIR [--num N] [--steps S] [--sampler NAME] [--out FILE] [--seed S]
        [--guidance-scale W] [--precision fp32|bf16] [--no-progress]
        [--prompt TEXT] [--suffix TEXT] [--infill FILE [--marker C]] [--inpaint FILE.npy]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ..errors import UsageError
from ..prompting import INFILL_MARKER, SEMANTICS_NOTES, Known, image_known, text_known

DEFAULT_NUM = 64
"""Samples drawn when ``--num`` is not given (and no inpainting file sets the number)."""

TEXT_PREVIEW_CHARS = 1200
"""How much of a text output is printed."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("sample", help="draw samples from a trained run", allow_abbrev=False)
    s.add_argument("run_dir", type=Path)
    s.add_argument("--num", type=int, help=f"number of samples (default {DEFAULT_NUM})")
    s.add_argument("--steps", type=int, help="sampler steps (default: the sampler's)")
    s.add_argument(
        "--length", type=int, help="sequence runs: sample this many tokens (longer: semi-autoregressive)"
    )
    s.add_argument("--sampler", help="sampler name (default: the method's; see `discodiff list samplers`)")
    s.add_argument("--out", type=Path, help="output file (default: RUN_DIR/samples/sample.*)")
    s.add_argument("--guidance-scale", type=float, default=1.0, help="classifier-free guidance scale")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.add_argument(
        "--precision", choices=("fp32", "bf16"), help="network precision (default: the run's eval precision)"
    )
    s.add_argument("--no-progress", action="store_true", help="no progress display")
    text = s.add_argument_group("known values (text runs)")
    text.add_argument("--prompt", help="every sample starts with this text")
    text.add_argument("--suffix", help="every sample ends with this text")
    text.add_argument(
        "--infill", type=Path, help=f"a template: each {INFILL_MARKER!r} marks a character to generate"
    )
    text.add_argument(
        "--marker", default=INFILL_MARKER, help=f"the --infill marker (default {INFILL_MARKER!r})"
    )
    image = s.add_argument_group("known values (image runs)")
    image.add_argument("--inpaint", type=Path, help="a .npy of pixel levels with NaN at the pixels to fill")


def _known(args: argparse.Namespace, data) -> Known | None:
    if args.inpaint is not None:
        if args.prompt or args.suffix or args.infill:
            raise UsageError("--inpaint is for images; --prompt, --suffix and --infill for text")
        return image_known(data, args.num, args.inpaint)
    if args.prompt is None and args.suffix is None and args.infill is None:
        return None
    return text_known(
        data,
        args.num or DEFAULT_NUM,
        length=args.length,
        prompt=args.prompt,
        suffix=args.suffix,
        infill=args.infill,
        marker=args.marker,
    )


def preview(text: str) -> str:
    """The start of a text output, as printed."""
    cut = text[:TEXT_PREVIEW_CHARS]
    return cut + ("\n[...]" if len(text) > TEXT_PREVIEW_CHARS else "")


def run(args: argparse.Namespace) -> int:
    from ..build import load_run
    from ..evaluate import sample_labels
    from ..precision import network_precision, resolved_eval
    from ..provenance import git_commit
    from ..state import to_device
    from ..utils import resolve_device

    if args.num is not None and args.num < 1:
        raise UsageError(f"--num must be >= 1, got {args.num}")
    run_ = load_run(args.run_dir, device=resolve_device(args.device))
    method, data = run_.method, run_.data
    known = _known(args, data)
    if known is not None and method.known_semantics == "none":
        raise UsageError(f"method {run_.config.method.name!r} cannot sample from known values")
    num = len(known.known) if known is not None else args.num or DEFAULT_NUM
    shape: int | tuple[int, ...] = num
    if args.length is not None:
        if len(method.event_shape) != 1:
            raise UsageError("--length is for sequence runs (one-dimensional examples)")
        if args.inpaint is not None:
            raise UsageError("--length does not apply to --inpaint")
        shape = (num, args.length)
    sampler = args.sampler or method.default_sampler
    steps = args.steps if args.steps is not None else method.sampler_info(sampler).default_steps
    precision = args.precision or resolved_eval(run_.config).precision
    cond = sample_labels(data, num)
    start = time.perf_counter()
    with network_precision(method, precision):
        out = method.sample(
            shape,
            steps=steps,
            sampler=sampler,
            cond=None if cond is None else cond.to(method.device),
            guidance_scale=args.guidance_scale,
            known=None if known is None else known.known.to(method.device),
            known_mask=None if known is None else known.mask.to(method.device),
            generator=torch.Generator().manual_seed(args.seed),
            progress=not args.no_progress,
        )
    seconds = time.perf_counter() - start
    stem = (args.out or args.run_dir / "samples" / "sample").with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = data.save_samples(to_device(out.x, "cpu"), stem, cond)
    record = {
        "run": str(args.run_dir),
        "step": run_.step,
        "method": run_.config.method.name,
        "sampler": sampler,
        "steps": steps,
        "num": num,
        "length": args.length,
        "seed": args.seed,
        "guidance_scale": args.guidance_scale,
        "precision": precision,
        "device": str(method.device),
        "known": None if known is None else known.source,
        "known_semantics": method.known_semantics if known is not None else None,
        "nfe": out.nfe,
        "seconds": seconds,
        "files": [str(p) for p in paths],
        "commit": git_commit(),
    }
    record_path = stem.parent / f"{stem.name}.json"
    record_path.write_text(json.dumps(record, indent=1))
    for path in [*paths, record_path]:
        print(path)
    if known is not None:
        print(f"known values: {SEMANTICS_NOTES[method.known_semantics]}")
    for path in paths:
        if path.suffix == ".txt":
            print(preview(path.read_text(encoding="utf-8")))
    return 0
