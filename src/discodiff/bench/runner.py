"""Training one method of a suite to a wall-clock budget, with its learning-rate schedule sized to it.

The schedule (warm-up, cosine decay to ``min_lr_ratio``) is planned for ``train.steps`` steps. A
time budget alone with a large ``steps`` leaves the learning rate flat for the whole run; so the
bench first times a short calibration of the first steps on a throwaway copy of the model,
plans ``steps = floor(CALIBRATION_HEADROOM * budget / seconds_per_step)`` and trains a fresh
model (same seed) with that schedule, the budget staying a hard stop. The row records the
planned steps, the steps trained, what stopped training and the training seconds.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..base import Method
from ..build import build_run, save_run_files
from ..data.base import DataSource
from ..train.loop import Trainer
from .suite import Suite

CALIBRATION_WARMUP = 1
"""Steps run before timing the calibration (first-call allocation and kernel selection)."""

CALIBRATION_FRACTION = 0.03
"""Share of the budget spent timing calibration steps (at least CALIBRATION_MIN_STEPS steps)."""

CALIBRATION_MIN_STEPS, CALIBRATION_MAX_STEPS = 2, 200

CALIBRATION_HEADROOM = 0.95
"""The planned steps fill this share of the budget: logging, the curve points' checkpoints and a
machine a little slower than during calibration still end the run by steps, not by the budget."""


@dataclass
class TrainedMethod:
    """A method trained by :func:`train_method` (EMA weights loaded) and what its training cost."""

    method: Method
    data: DataSource
    record: dict
    curve: list[dict] = field(default_factory=list)


def calibrate(suite: Suite, name: str, budget_s: float, work: Path) -> float:
    """Seconds per optimizer step of method ``name`` (median of timed steps after a warm-up)."""
    return calibrate_config(suite.run_config(name, steps=10**6, budget_s=budget_s), budget_s, work)


def planned_steps(budget_s: float, step_s: float) -> int:
    """Steps whose schedule fills ``CALIBRATION_HEADROOM`` of the budget at ``step_s`` per step."""
    return max(1, int(CALIBRATION_HEADROOM * budget_s / step_s))


def calibrate_config(config, budget_s: float, work: Path) -> float:
    """Seconds per optimizer step of a run config (a throwaway model in ``work``, removed after)."""
    torch.manual_seed(config.seed)
    data, method = build_run(config)
    device = _device(config.train.device)
    method.to(device)
    trainer = Trainer(method, data, config.train, work, seed=config.seed, device=device)
    method.train()
    for _ in range(CALIBRATION_WARMUP):
        trainer.train_step()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < CALIBRATION_MAX_STEPS and (
        len(times) < CALIBRATION_MIN_STEPS or time.perf_counter() - start < CALIBRATION_FRACTION * budget_s
    ):
        t0 = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - t0)
    shutil.rmtree(work, ignore_errors=True)
    return sorted(times)[len(times) // 2]


def _device(name: str) -> torch.device:
    from ..utils import resolve_device

    return resolve_device(name)


def train_method(
    suite: Suite,
    name: str,
    budget_s: float,
    run_dir: Path,
    artifact_dir: Path,
    curve_fn: Callable[[Method, DataSource], dict],
    log: Callable[[str], None] = print,
) -> TrainedMethod:
    """Calibrate, then train method ``name`` for ``budget_s`` seconds into ``run_dir`` (a normal
    run directory: ``discodiff sample`` and ``eval`` read it). ``curve_fn(model, data)`` measures
    the likelihood at each curve point (EMA weights, not counted in the training time)."""
    step_s = calibrate(suite, name, budget_s, run_dir.parent / f"{run_dir.name}.calibration")
    planned = planned_steps(budget_s, step_s)
    config = suite.run_config(name, steps=planned, budget_s=budget_s)
    log(f"bench: {name}: {step_s * 1000:.1f} ms per step in calibration -> {planned} planned steps")
    torch.manual_seed(config.seed)
    data, method = build_run(config)
    data.use_directory(artifact_dir)
    device = _device(config.train.device)
    method.to(device)
    save_run_files(run_dir, config, data)
    trainer = Trainer(method, data, config.train, run_dir, seed=config.seed, device=device)
    points = suite.likelihood.curve_points
    targets = sorted({max(1, round(planned * (i + 1) / points)) for i in range(points)})
    curve, seconds, stopped_by = [], 0.0, "steps"
    for target in targets:
        remaining = budget_s - seconds
        if remaining <= 0:
            stopped_by = "time_budget"
            break
        trainer.config = replace(config.train, time_budget_s=remaining)
        t0 = time.perf_counter()
        trainer.fit(max_steps=target - trainer.step, progress=False)
        seconds += time.perf_counter() - t0
        with trainer.averaged() as model:
            curve.append({"step": trainer.step, "train_seconds": seconds, **curve_fn(model, data)})
        if trainer.step < target:
            stopped_by = "time_budget"
            break
    if stopped_by == "time_budget":
        log(f"bench: {name}: the {budget_s:g} s budget ended training at step {trainer.step} of {planned}")
    trainer.config = config.train
    record = {
        "planned_steps": planned,
        "train_steps": trainer.step,
        "stopped_by": stopped_by,
        "train_seconds": seconds,
        "calibration_seconds_per_step": step_s,
        "examples_per_s": trainer.step * config.train.batch_size / seconds if seconds else 0.0,
        "parameters": sum(p.numel() for net in method.networks().values() for p in net.parameters()),
        "representation": method.representation,
        "known_semantics": method.known_semantics,
        "warmup_steps": config.train.warmup_steps,
        "batch_size": config.train.batch_size,
    }
    (run_dir / "bench_train.json").write_text(json.dumps(record, indent=1))
    if trainer.ema is not None:  # measure the EMA weights, as every evaluation does
        method.load_state_dict(trainer.ema.shadow)
    method.eval()
    return TrainedMethod(method, data, record, curve)
