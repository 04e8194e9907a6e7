"""A training run from a config: build, train, and write samples, plots and metrics.

Run directory layout::

    config.yaml        the resolved configuration
    data_state.json    the data set's state (e.g. a vocabulary)
    .lock              held while a process trains into the directory (its pid and host)
    metrics.jsonl      one JSON record per log line (kind: train | eval), each step once
    metrics.json       the final evaluation
    checkpoints/       atomic safetensors + JSON checkpoints; ``latest`` names the newest
    samples.*          final samples (.npy + .png, or .txt for text)
    infill.*           test examples with a part hidden, completed by the model (where defined)
    loss.png           the loss curve
    trajectory.png     x_t at several t while sampling (where a picture fits)
    samples/           periodic samples during training
"""

from __future__ import annotations

import json
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch

from .build import build_run, read_data_state, save_run_files
from .errors import CheckpointError
from .evaluate import draw_samples, evaluate
from .memory import check_training_memory
from .plots import loss_curve
from .precision import network_precision, resolved_eval
from .provenance import git_commit
from .runconfig import EvalConfig, RunConfig
from .state import shape_of, to_device
from .train.checkpoint import CheckpointWarning, read_latest, remove_temporary, step_dirs
from .train.distributed import init_distributed, shutdown_distributed
from .train.loop import Trainer, TrainingError
from .train.rundir import RunLock
from .utils import format_bytes, resolve_device

PERIODIC_SAMPLES = 64
"""Samples drawn for the periodic figures during training."""

INFILL_EXAMPLES = 4
"""Test examples completed from a partial input at the end of a run (where the data allows)."""


def _periodic_eval(eval_cfg: EvalConfig):
    def hook(trainer: Trainer) -> None:
        if trainer.dist.is_main:
            with trainer.averaged() as model:
                metrics, _, _ = evaluate(model, trainer.data, eval_cfg)
            trainer.log({"kind": "eval", "step": trainer.step, **metrics})

    return hook


def _periodic_samples(eval_cfg: EvalConfig):
    def hook(trainer: Trainer) -> None:
        if trainer.dist.is_main:
            out_dir = trainer.run_dir / "samples"
            out_dir.mkdir(exist_ok=True)
            with trainer.averaged() as model, network_precision(model, eval_cfg.precision):
                samples, cond, _ = draw_samples(model, trainer.data, eval_cfg, PERIODIC_SAMPLES)
            trainer.data.save_samples(samples.x, out_dir / f"step_{trainer.step:08d}", cond)

    return hook


def run_record(trainer: Trainer, stopped_by: str) -> dict:
    """What metrics.json says about the training itself: the step reached of the planned steps,
    why training stopped (``steps``, ``time_budget`` or ``nan``), its wall-clock seconds (over
    every resume) and the code's git commit when known."""
    record = {
        "step": trainer.step,
        "planned_steps": trainer.config.steps,
        "stopped_by": stopped_by,
        "train_seconds": trainer.train_seconds,
    }
    commit = git_commit()
    if commit:
        record["commit"] = commit
    return record


def final_outputs(trainer: Trainer, eval_cfg: EvalConfig, *, progress: bool) -> dict[str, float]:
    """Evaluate with the EMA weights and write metrics, samples and plots into the run dir."""
    run_dir = trainer.run_dir
    with trainer.averaged() as model:
        metrics, samples, cond = evaluate(model, trainer.data, eval_cfg, progress=progress)
    metrics = {**run_record(trainer, trainer.stopped_by), **metrics}
    trainer.log({"kind": "eval", **metrics})
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    if samples is not None:
        trainer.data.save_samples(samples.x, run_dir / "samples", cond)
        if samples.trajectory:
            trainer.data.plot_trajectory(samples.trajectory, run_dir / "trajectory.png")
    example = trainer.data.infilling_example(INFILL_EXAMPLES)
    if example is not None and trainer.method.known_semantics != "none":  # e.g. discrete flows
        known, mask = example
        with trainer.averaged() as model, network_precision(model, eval_cfg.precision):
            out = model.sample(
                shape_of(known),
                known=to_device(known, model.device),
                known_mask=to_device(mask, model.device),
                steps=eval_cfg.steps,
                sampler=eval_cfg.sampler,
                generator=torch.Generator().manual_seed(eval_cfg.seed),
            )
        trainer.data.save_infilling(known, mask, to_device(out.x, "cpu"), run_dir / "infill")
    loss_curve(
        trainer.metrics_path,
        run_dir / "loss.png",
        label=trainer.method.loss_label,
        window=trainer.config.log_every,
    )
    return metrics


def _claim(run_dir: Path, lock: RunLock | None, resume: bool) -> None:
    """As the run's one writer: note a stale lock taken over, remove what interrupted saves left,
    and refuse to start over in a directory that holds checkpoints."""
    ckpt_root = run_dir / "checkpoints"
    if lock is not None:
        if lock.stale_message():
            warnings.warn(lock.stale_message(), CheckpointWarning, stacklevel=3)
        removed = remove_temporary(ckpt_root)
        if removed:
            names = ", ".join(p.name for p, _ in removed)
            size = format_bytes(sum(n for _, n in removed))
            warnings.warn(
                f"removed what an interrupted save left in {ckpt_root}: {names} ({size})",
                CheckpointWarning,
                stacklevel=3,
            )
    dirs = step_dirs(ckpt_root)
    if dirs and not resume:
        missing = "" if read_latest(ckpt_root) else f", but {ckpt_root / 'latest'} is missing"
        raise CheckpointError(
            f"{run_dir} already holds checkpoints (the newest is {dirs[-1].name}{missing}); pass --resume "
            "to continue from the newest intact one, or choose another --out"
        )


def train_run(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Train (or continue) a run and write its outputs; returns the final metrics (rank 0).
    Only one process at a time trains into ``run_dir`` (:class:`~discodiff.train.rundir.RunLock`)."""
    run_dir = Path(run_dir)
    device = resolve_device(config.train.device, "train.device")
    dist = init_distributed(device)
    if device.type == "cuda" and dist.world_size > 1:
        device = torch.device("cuda", dist.rank % torch.cuda.device_count())
    try:
        with RunLock(run_dir) if dist.is_main else nullcontext() as lock:
            _claim(run_dir, lock, resume)
            torch.manual_seed(config.seed)
            data, method = build_run(
                config, data_state=read_data_state(run_dir) if resume else None, training=True
            )
            data.use_directory(run_dir)
            method.to(device)
            check_training_memory(
                method, data, config.train, device, world_size=dist.world_size, seed=config.seed
            )
            if dist.is_main:
                save_run_files(run_dir, config, data)
            dist.barrier()
            trainer = Trainer(method, data, config.train, run_dir, seed=config.seed, device=device, dist=dist)
            if resume:
                trainer.resume()
            eval_cfg = resolved_eval(config)  # eval.precision: None -> the training precision
            seconds_before, fit_start = trainer.train_seconds, time.perf_counter()
            try:
                trainer.fit(
                    max_steps=max_steps,
                    progress=progress,
                    on_eval=_periodic_eval(eval_cfg),
                    on_sample=_periodic_samples(eval_cfg),
                )
            except TrainingError:
                if dist.is_main:
                    trainer.train_seconds = seconds_before + time.perf_counter() - fit_start
                    record = run_record(trainer, "nan")
                    (run_dir / "metrics.json").write_text(json.dumps(record, indent=1))
                raise
            if not dist.is_main:
                return {}
            with trainer.stop_on_nonfinite(trainer.step, " (final evaluation)"):
                return final_outputs(trainer, eval_cfg, progress=progress)
    finally:
        shutdown_distributed()
