"""Command line: ``discodiff train | sample | eval``.

::

    discodiff train CONFIG.yaml [--out RUN_DIR] [--max-steps N] [--resume] [key=value ...]
    discodiff sample RUN_DIR [--num N] [--steps S] [--sampler NAME] [--out FILE]
    discodiff eval RUN_DIR [--json] [eval.key=value ...]
    discodiff classifier RUN_DIR [--force]      (image runs: the sample-metric classifier)
    discodiff bench SUITE [--budget S] [--methods a,b] [--out DIR]   (compare methods: discodiff.bench)

User errors (:class:`~discodiff.errors.UserError`: bad config, data or arguments, corrupted
checkpoint, diverged training; a missing or unreadable file; a non-finite value a model produced)
print one clear line and exit with status 2; ``--debug`` (or ``DISCODIFF_DEBUG=1``) shows the
traceback instead. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from .bench.cli import add_parser as bench_parser
from .bench.cli import command as _bench
from .config import ConfigError, apply_overrides, from_dict, to_dict
from .errors import UsageError, UserError
from .runconfig import EvalConfig, load_config
from .state import to_device
from .utils import resolve_device

USER_ERRORS = (UserError, FileNotFoundError, PermissionError, FloatingPointError)
"""What the command line reports in one line. ``FloatingPointError`` is what a method raises on a
non-finite value it detects (network output, loss, samples): a property of the model or sampler,
not a bug."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="discodiff", description="Diffusion models for continuous and discrete data."
    )
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model from a YAML config")
    t.add_argument("config", type=Path, help="YAML run config (see configs/)")
    t.add_argument("--out", type=Path, help="run directory (default: runs/<config name>)")
    t.add_argument("--max-steps", type=int, help="stop after this many steps in this call")
    t.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=3e-4")
    t.set_defaults(overrides=[])

    s = sub.add_parser("sample", help="draw samples from a trained run")
    s.add_argument("run_dir", type=Path)
    s.add_argument("--num", type=int, default=64, help="number of samples (default 64)")
    s.add_argument("--steps", type=int, help="sampler steps (default: the method's)")
    s.add_argument("--sampler", help="sampler name (default: the method's)")
    s.add_argument("--out", type=Path, help="output file (default: RUN_DIR/samples/sample.*)")
    s.add_argument("--guidance-scale", type=float, default=1.0, help="classifier-free guidance scale")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")

    e = sub.add_parser("eval", help="evaluate a trained run (likelihood and sample metrics)")
    e.add_argument("run_dir", type=Path)
    e.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    e.add_argument("--device", default="auto")
    e.add_argument("--progress", action="store_true", help="progress bars on stderr")
    e.add_argument(
        "overrides", nargs="*", metavar="key=value", help="eval overrides, e.g. eval.num_samples=10000"
    )
    c = sub.add_parser("classifier", help="train (or reuse) the evaluation classifier of an image run")
    c.add_argument("run_dir", type=Path)
    c.add_argument("--force", action="store_true", help="train again even if a checkpoint exists")
    bench_parser(sub)
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    for command in sub.choices.values():  # also accepted after the command
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    return p


def _classifier(args: argparse.Namespace) -> int:
    from .build import build_data, read_data_state
    from .runconfig import parse_config

    cfg_path = args.run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(f"{args.run_dir} is not a run directory: config.yaml is missing")
    import yaml

    data = build_data(parse_config(yaml.safe_load(cfg_path.read_text())), read_data_state(args.run_dir))
    data.use_directory(args.run_dir)
    paths = data.prepare_metrics(force=args.force)
    if not paths:
        raise ConfigError("this run's data set has no evaluation classifier (set data.classifier for images)")
    for path in paths:
        print(path)
    return 0


def _train(args: argparse.Namespace) -> int:
    from .run import train_run

    config = load_config(args.config, args.overrides)
    run_dir = args.out or Path("runs") / args.config.stem
    if args.max_steps is not None and args.max_steps < 1:
        raise UsageError(f"--max-steps must be >= 1, got {args.max_steps}")
    metrics = train_run(
        config, run_dir, resume=args.resume, max_steps=args.max_steps, progress=not args.no_progress
    )
    if metrics:
        print(f"run directory: {run_dir}")
        for key, value in metrics.items():
            print(f"  {key}: {value:.6g}" if isinstance(value, float) else f"  {key}: {value}")
        for path in sorted({*run_dir.glob("samples.*"), *run_dir.glob("infill.*"), *run_dir.glob("*.png")}):
            print(f"  wrote {path}")
            if path.suffix == ".txt":
                print(_preview(path.read_text(encoding="utf-8")))
    return 0


TEXT_PREVIEW_CHARS = 1200
"""How much of a text output ``discodiff train`` prints."""


def _preview(text: str) -> str:
    cut = text[:TEXT_PREVIEW_CHARS]
    return cut + ("\n[...]" if len(text) > TEXT_PREVIEW_CHARS else "")


def _sample(args: argparse.Namespace) -> int:
    from .build import load_run
    from .evaluate import sample_labels

    if args.num < 1:
        raise UsageError(f"--num must be >= 1, got {args.num}")
    run = load_run(args.run_dir, device=resolve_device(args.device))
    cond = sample_labels(run.data, args.num)
    out = run.method.sample(
        args.num,
        steps=args.steps,
        sampler=args.sampler,
        cond=None if cond is None else cond.to(run.method.device),
        guidance_scale=args.guidance_scale,
        generator=torch.Generator().manual_seed(args.seed),
        progress=True,
    )
    stem = (args.out or args.run_dir / "samples" / "sample").with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    for path in run.data.save_samples(to_device(out.x, "cpu"), stem, cond):
        print(path)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .build import load_run
    from .evaluate import evaluate

    run = load_run(args.run_dir, device=resolve_device(args.device))
    eval_dict = apply_overrides({"eval": to_dict(run.config.eval)}, args.overrides)
    unknown = set(eval_dict) - {"eval"}
    if unknown:
        raise ConfigError(f"eval overrides must start with 'eval.', got {', '.join(sorted(unknown))}")
    eval_cfg = from_dict(EvalConfig, eval_dict["eval"], "eval")
    metrics, _, _ = evaluate(run.method, run.data, eval_cfg, progress=args.progress)
    metrics = {"step": run.step, **metrics}
    (args.run_dir / "eval.json").write_text(json.dumps(metrics, indent=1))
    if args.json:
        print(json.dumps(metrics))
    else:
        for key, value in metrics.items():
            print(f"{key}: {value:.6g}" if isinstance(value, float) else f"{key}: {value}")
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse, letting ``key=value`` overrides appear anywhere among the options."""
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    extra = [a for a in rest if "=" in a and not a.startswith("-")]
    if len(extra) != len(rest) or (extra and not hasattr(args, "overrides")):
        parser.error(
            f"unrecognized arguments: {' '.join(a for a in rest if a not in extra) or ' '.join(extra)}"
        )
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    command = {"train": _train, "sample": _sample, "eval": _eval, "classifier": _classifier, "bench": _bench}[
        args.command
    ]
    try:
        return command(args)
    except USER_ERRORS as err:
        if args.debug or os.environ.get("DISCODIFF_DEBUG"):
            raise
        print(f"discodiff {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
