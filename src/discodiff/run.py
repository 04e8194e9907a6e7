"""A training run from a config: build, train, and write samples, plots and metrics.

Run directory layout::

    config.yaml        the resolved configuration
    data_state.json    the data set's state (e.g. a vocabulary)
    metrics.jsonl      one JSON record per log line (kind: train | eval)
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
from pathlib import Path

import torch

from .build import build_run, read_data_state, save_run_files
from .config import ConfigError
from .evaluate import draw_samples, evaluate
from .plots import loss_curve
from .runconfig import EvalConfig, RunConfig
from .state import shape_of, to_device
from .train.checkpoint import latest_checkpoint
from .train.distributed import init_distributed, shutdown_distributed
from .train.loop import Trainer
from .utils import resolve_device

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
            with trainer.averaged() as model:
                samples, cond, _ = draw_samples(model, trainer.data, eval_cfg, PERIODIC_SAMPLES)
            trainer.data.save_samples(samples.x, out_dir / f"step_{trainer.step:08d}", cond)

    return hook


def final_outputs(trainer: Trainer, eval_cfg: EvalConfig, *, progress: bool) -> dict[str, float]:
    """Evaluate with the EMA weights and write metrics, samples and plots into the run dir."""
    run_dir = trainer.run_dir
    with trainer.averaged() as model:
        metrics, samples, cond = evaluate(model, trainer.data, eval_cfg, progress=progress)
    metrics = {"step": trainer.step, **metrics}
    trainer.log({"kind": "eval", **metrics})
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    if samples is not None:
        trainer.data.save_samples(samples.x, run_dir / "samples", cond)
        if samples.trajectory:
            trainer.data.plot_trajectory(samples.trajectory, run_dir / "trajectory.png")
    example = trainer.data.infilling_example(INFILL_EXAMPLES)
    if example is not None:
        known, mask = example
        with trainer.averaged() as model:
            out = model.sample(
                shape_of(known),
                known=to_device(known, model.device),
                known_mask=to_device(mask, model.device),
                steps=eval_cfg.steps,
                sampler=eval_cfg.sampler,
                generator=torch.Generator().manual_seed(eval_cfg.seed),
            )
        trainer.data.save_infilling(known, mask, to_device(out.x, "cpu"), run_dir / "infill")
    loss_curve(trainer.metrics_path, run_dir / "loss.png")
    return metrics


def train_run(
    config: RunConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    max_steps: int | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Train (or continue) a run and write its outputs; returns the final metrics (rank 0)."""
    run_dir = Path(run_dir)
    device = resolve_device(config.train.device)
    dist = init_distributed(device)
    if device.type == "cuda" and dist.world_size > 1:
        device = torch.device("cuda", dist.rank % torch.cuda.device_count())
    try:
        has_ckpt = latest_checkpoint(run_dir / "checkpoints") is not None if run_dir.exists() else False
        if has_ckpt and not resume:
            raise ConfigError(
                f"{run_dir} already holds checkpoints; pass --resume to continue it or choose another --out"
            )
        torch.manual_seed(config.seed)
        data, method = build_run(config, data_state=read_data_state(run_dir) if resume else None)
        data.use_directory(run_dir)
        method.to(device)
        if dist.is_main:
            save_run_files(run_dir, config, data)
        dist.barrier()
        trainer = Trainer(method, data, config.train, run_dir, seed=config.seed, device=device, dist=dist)
        if resume:
            trainer.resume()
        trainer.fit(
            max_steps=max_steps,
            progress=progress,
            on_eval=_periodic_eval(config.eval),
            on_sample=_periodic_samples(config.eval),
        )
        if not dist.is_main:
            return {}
        with trainer.stop_on_nonfinite(trainer.step, " (final evaluation)"):
            return final_outputs(trainer, config.eval, progress=progress)
    finally:
        shutdown_distributed()
