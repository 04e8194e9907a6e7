"""The run configuration: one YAML file with ``data``, ``method``, ``net``, ``train``, ``eval``.

``data``, ``method`` and ``net`` name registered components plus their own options; ``train``
and ``eval`` are fixed sections. Every key is checked: unknown keys, wrong types and values
outside the allowed set raise :class:`~discodiff.config.ConfigError` naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .base import METHODS
from .config import Spec, apply_overrides, component, from_dict, load_yaml
from .data import DATASETS
from .nets import NETS
from .utils import native_bf16, resolve_device


@dataclass
class TrainConfig:
    """``train:`` optimisation, logging and checkpointing."""

    steps: int = 10_000  # optimizer steps in total
    batch_size: int = 256  # global batch per optimizer step (split evenly across data-parallel ranks)
    grad_accum: int = 1  # micro-batches per step: gradients of batch_size / grad_accum rows accumulate
    lr: float = 1e-3  # peak learning rate (AdamW)
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    warmup_steps: int = 100  # linear warm-up, then cosine decay
    min_lr_ratio: float = 0.1  # the cosine decays to lr * min_lr_ratio at the last step
    grad_clip: float = 1.0  # max global gradient norm (0: no clipping)
    ema_decay: float = 0.999  # exponential moving average of the weights (0: off)
    log_every: int = 50  # steps between metrics-log lines
    eval_every: int = 0  # steps between evaluations (0: at the end only)
    sample_every: int = 0  # steps between sample figures (0: at the end only)
    ckpt_every: int = 1000  # steps between checkpoints (one is always written at the end)
    keep_checkpoints: int = 2  # how many recent checkpoints to keep
    device: str = "auto"  # auto (CUDA when present), cpu, cuda, cuda:N
    # bf16 autocast for the training step; auto: bf16 where it runs natively (CUDA, a CPU with
    # AVX-512 BF16 or AMX), else fp32, resolved when the config is read so the run records it
    precision: Literal["fp32", "bf16", "auto"] = "fp32"
    time_budget_s: float | None = None  # stop (and checkpoint) once this much wall-clock time has passed

    def __post_init__(self) -> None:
        positive = {
            "steps": self.steps,
            "batch_size": self.batch_size,
            "grad_accum": self.grad_accum,
            "log_every": self.log_every,
            "ckpt_every": self.ckpt_every,
            "keep_checkpoints": self.keep_checkpoints,
        }
        if self.precision == "auto":
            native = native_bf16(resolve_device(self.device, "train.device"))
            self.precision = "bf16" if native else "fp32"
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"train.{name} must be >= 1, got {value}")
        if self.lr <= 0 or self.warmup_steps < 0 or self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError("train.lr must be > 0; warmup_steps, grad_clip, weight_decay >= 0")
        if not 0 <= self.ema_decay < 1 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("train.ema_decay must be in [0, 1) and train.min_lr_ratio in [0, 1]")
        if self.batch_size % self.grad_accum:
            raise ValueError(
                f"train.batch_size ({self.batch_size}) must be divisible by "
                f"train.grad_accum ({self.grad_accum})"
            )
        if self.eval_every < 0 or self.sample_every < 0:
            raise ValueError("train.eval_every and train.sample_every must be >= 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"train.beta1 and train.beta2 must be in [0, 1), got {self.beta1}, {self.beta2}")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ValueError(
                f"train.time_budget_s must be > 0 seconds or null (none), got {self.time_budget_s}"
            )


@dataclass
class EvalConfig:
    """``eval:`` what ``discodiff eval`` and the end of training measure."""

    batch_size: int = 1000  # examples per likelihood batch
    nll_examples: int = 2000  # test examples for the likelihood (0: the whole split)
    estimators: list[str] = field(default_factory=lambda: ["bound"])  # likelihood estimators
    num_samples: int = 2000  # samples drawn for sample metrics (0: none)
    sampler: str | None = None  # None: the method's default
    steps: int | None = None  # None: the method's default
    guidance_scale: float = 1.0
    seed: int = 0  # seed of evaluation noise and samples (independent of training)
    reference_run: str | None = None  # a run dir (same data) whose model scores samples: gen_ppl
    precision: Literal["fp32", "bf16"] | None = None  # networks in sampling and likelihood; None: train's

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.nll_examples < 0 or self.num_samples < 0:
            raise ValueError("eval.batch_size must be >= 1; nll_examples, num_samples >= 0")


@dataclass
class RunConfig:
    """A whole run: which data, method and network, and how to train and evaluate."""

    data: Spec = component(DATASETS)
    method: Spec = component(METHODS)
    net: Spec = component(NETS)
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config, apply ``key=value`` overrides, and check every key."""
    data = apply_overrides(load_yaml(path), overrides or [])
    return from_dict(RunConfig, data, "config")


def parse_config(data: dict) -> RunConfig:
    """Check a run config given as a mapping."""
    return from_dict(RunConfig, data, "config")
