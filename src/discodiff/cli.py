"""Command line: ``discodiff train | sample | eval | list | export``.

::

    discodiff train CONFIG.yaml [--out RUN_DIR] [--max-steps N] [--resume] [--print-config] [key=value ...]
    discodiff sample RUN_DIR [--num N] [--steps S] [--sampler NAME] [--out FILE] [--prompt TEXT] ...
    discodiff eval RUN_DIR [--json] [eval.key=value ...] [data.path=OTHER_CORPUS ...]
    discodiff prepare CONFIG.yaml [--force] [key=value ...]   (text: encode the corpus once to disk)
    discodiff list {methods,samplers,datasets,schedules,nets,configs} [CONFIG_OR_RUN] [--json]
    discodiff export RUN_DIR OUT_DIR      (inference bundle: model.safetensors + JSON)
    discodiff classifier RUN_DIR [--force]      (image runs: the sample-metric classifier)
    discodiff bench SUITE [--budget S] [--methods a,b] [--out DIR]   (compare methods: discodiff.bench)
    discodiff --version

Options must be spelt out in full (no abbreviations: ``--max-step`` is refused).

User errors (:class:`~discodiff.errors.UserError`: bad config, data or arguments, corrupted
checkpoint, diverged training; a missing or unreadable file; a non-finite value a model produced)
print one clear line and exit with status 2; ``--debug`` (or ``DISCODIFF_DEBUG=1``) shows the
traceback instead. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import warnings
from pathlib import Path

import yaml

from .allocator import keep_freed_memory
from .bench.cli import add_parser as bench_parser
from .bench.cli import command as _bench
from .commands import export as export_command
from .commands import listing as list_command
from .commands import sample as sample_command
from .config import ConfigError, apply_overrides, from_dict, to_dict
from .errors import UsageError, UserError
from .prepare import add_parser as add_prepare_parser
from .prepare import run as prepare_command
from .runconfig import EvalConfig, load_config
from .train.checkpoint import CheckpointWarning
from .utils import resolve_device

USER_ERRORS = (UserError, FileNotFoundError, PermissionError, FloatingPointError)
"""What the command line reports in one line. ``FloatingPointError`` is what a method raises on a
non-finite value it detects (network output, loss, samples): a property of the model or sampler,
not a bug."""


class _VersionAction(argparse.Action):
    """``--version``: the version and, for a git checkout, the commit (looked up only when asked)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from .provenance import version_string

        print(version_string())
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="discodiff", description="Diffusion models for continuous and discrete data.", allow_abbrev=False
    )
    p.add_argument("--version", action=_VersionAction, help="print the version (and git commit) and exit")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model from a YAML config", allow_abbrev=False)
    t.add_argument("config", type=Path, help="YAML run config (see configs/)")
    t.add_argument("--out", type=Path, help="run directory (default: runs/<config name>)")
    t.add_argument("--max-steps", type=int, help="stop after this many steps in this call")
    t.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    t.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config, every default filled in, and exit",
    )
    t.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=3e-4")
    t.set_defaults(overrides=[])

    sample_command.add_parser(sub)

    e = sub.add_parser(
        "eval", help="evaluate a trained run (likelihood and sample metrics)", allow_abbrev=False
    )
    e.add_argument("run_dir", type=Path)
    e.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    e.add_argument("--device", default="auto")
    e.add_argument("--progress", action="store_true", help="progress bars on stderr")
    e.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="eval overrides, e.g. eval.num_samples=10000; data.path=OTHER scores another corpus "
        "with the run's encoding (zero-shot)",
    )
    add_prepare_parser(sub)
    c = sub.add_parser(
        "classifier", help="train (or reuse) the evaluation classifier of an image run", allow_abbrev=False
    )
    c.add_argument("run_dir", type=Path)
    c.add_argument("--force", action="store_true", help="train again even if a checkpoint exists")
    list_command.add_parser(sub)
    export_command.add_parser(sub)
    bench_parser(sub)
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    for command in sub.choices.values():  # also accepted after the command
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    return p


def _classifier(args: argparse.Namespace) -> int:
    from .build import build_data, read_data_state, read_run_config

    data = build_data(read_run_config(args.run_dir), read_data_state(args.run_dir))
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
    if args.print_config:
        print(yaml.safe_dump(to_dict(config), sort_keys=False), end="")
        return 0
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
                print(sample_command.preview(path.read_text(encoding="utf-8")))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .build import load_run
    from .evaluate import evaluate

    data_overrides = [o for o in args.overrides if o.strip().startswith("data.")]
    eval_overrides = [o for o in args.overrides if o not in data_overrides]
    run = load_run(
        args.run_dir, device=resolve_device(args.device, "--device"), data_overrides=data_overrides
    )
    eval_dict = apply_overrides({"eval": to_dict(run.config.eval)}, eval_overrides)
    unknown = set(eval_dict) - {"eval"}
    if unknown:
        raise ConfigError(
            f"eval overrides must start with 'eval.' or 'data.', got {', '.join(sorted(unknown))}"
        )
    eval_cfg = from_dict(EvalConfig, eval_dict["eval"], "eval")
    if eval_cfg.precision is None:
        eval_cfg = dataclasses.replace(eval_cfg, precision=run.config.train.precision)
    metrics, _, _ = evaluate(run.method, run.data, eval_cfg, progress=args.progress)
    metrics = {"step": run.step, **metrics}
    if data_overrides:  # zero-shot: another corpus, recorded apart from the run's own evaluation
        metrics["data_overrides"] = data_overrides
    name = "eval_zero_shot.json" if data_overrides else "eval.json"
    (args.run_dir / name).write_text(json.dumps(metrics, indent=1))
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
    command = {
        "train": _train,
        "sample": sample_command.run,
        "eval": _eval,
        "classifier": _classifier,
        "list": list_command.run,
        "export": export_command.run,
        "prepare": prepare_command,
        "bench": _bench,
    }[args.command]
    keep_freed_memory()  # a step reuses the last step's pages instead of faulting them in anew
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(args.command, warnings.showwarning)
            return command(args)
    except USER_ERRORS as err:
        if args.debug or os.environ.get("DISCODIFF_DEBUG"):
            raise
        print(f"discodiff {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _one_line_warnings(command: str, show):
    """Print discodiff's own warnings (a damaged checkpoint skipped, leftovers removed) as one
    ``discodiff <command>: warning: ...`` line; others as Python prints them."""

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, CheckpointWarning):
            print(f"discodiff {command}: warning: {message}", file=sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    return showwarning


if __name__ == "__main__":
    sys.exit(main())
