"""Transitions by name: the ``TRANSITIONS`` registry, one config dataclass and builder per kind.

A categorical method's config holds ``transition: component(TRANSITIONS, ...)``, e.g.
``transition: absorbing`` or ``transition: {name: marginal, probs: [...]}``; the method builds it
with :func:`build_transition`, passing the data's vocabulary size, its schedule and its number of
steps (0 for continuous-time methods, which grid-only transitions refuse).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from ..config import Spec
from ..errors import ConfigError
from ..registry import Registry
from ..schedules import Schedule
from .matrix_transitions import DenseTransition, DiscretizedGaussianTransition, RateMatrixTransition
from .mixing import AbsorbingTransition, MarginalTransition, UniformTransition
from .transitions import Transition

TRANSITIONS: Registry[Callable[..., Transition]] = Registry("transition")
"""Transition builders: ``build(config, *, vocab_size, schedule, timesteps) -> Transition``."""


@dataclass
class UniformTransitionConfig:
    """``transition: uniform``: resample uniformly over the K data ids."""


@dataclass
class AbsorbingTransitionConfig:
    """``transition: absorbing``: jump to [MASK] (id K; the network input has K + 1 ids)."""


@dataclass
class MarginalTransitionConfig:
    """``transition: {name: marginal, probs: [...]}``: resample from the data's token marginal."""

    probs: list[float]  # K token frequencies (normalized on use)

    def __post_init__(self) -> None:
        if any(p < 0 for p in self.probs) or sum(self.probs) <= 0:
            raise ValueError("probs must be non-negative with a positive sum")


@dataclass
class GaussianTransitionConfig:
    """``transition: gaussian``: discretized Gaussian over ordinal ids (discrete time only)."""


@dataclass
class DenseTransitionConfig:
    """``transition: {name: dense, path: m.safetensors, kind: rate}``: a user matrix from a file.

    The file holds one tensor under ``key``: a generator ``(K, K)`` for ``kind: rate`` (exponentiated,
    any time), or step matrices ``(K, K)`` / ``(T, K, K)`` for ``kind: steps`` (discrete time).
    """

    path: str
    kind: Literal["rate", "steps"] = "rate"
    key: str = "matrix"


def _check_vocab(name: str, got: int, vocab_size: int) -> None:
    if got != vocab_size:
        raise ConfigError(
            f"transition {name!r} has {got} categories but the data has vocab_size {vocab_size}"
        )


def _needs_grid(name: str, timesteps: int) -> None:
    if timesteps < 1:
        raise ConfigError(f"transition {name!r} is defined on a T-step grid: it needs a discrete-time model")


@TRANSITIONS.register("uniform", config=UniformTransitionConfig)
def build_uniform(config, *, vocab_size: int, schedule: Schedule, timesteps: int) -> Transition:
    return UniformTransition(schedule, vocab_size)


@TRANSITIONS.register("absorbing", config=AbsorbingTransitionConfig)
def build_absorbing(config, *, vocab_size: int, schedule: Schedule, timesteps: int) -> Transition:
    return AbsorbingTransition(schedule, vocab_size)


@TRANSITIONS.register("marginal", config=MarginalTransitionConfig)
def build_marginal(config, *, vocab_size: int, schedule: Schedule, timesteps: int) -> Transition:
    _check_vocab("marginal", len(config.probs), vocab_size)
    return MarginalTransition(schedule, torch.tensor(config.probs, dtype=torch.float64))


@TRANSITIONS.register("gaussian", config=GaussianTransitionConfig)
def build_gaussian_transition(config, *, vocab_size: int, schedule: Schedule, timesteps: int) -> Transition:
    _needs_grid("gaussian", timesteps)
    return DiscretizedGaussianTransition(schedule, vocab_size, timesteps)


@TRANSITIONS.register("dense", config=DenseTransitionConfig)
def build_dense(config, *, vocab_size: int, schedule: Schedule, timesteps: int) -> Transition:
    from safetensors.torch import load_file

    path = Path(config.path)
    if not path.is_file():
        raise ConfigError(f"transition 'dense': matrix file not found: {path}")
    tensors = load_file(str(path))
    if config.key not in tensors:
        raise ConfigError(
            f"transition 'dense': {path} has no tensor {config.key!r}; it has {sorted(tensors)}"
        )
    matrix = tensors[config.key].to(torch.float64)
    _check_vocab("dense", matrix.shape[-1], vocab_size)
    if config.kind == "rate":
        return RateMatrixTransition(matrix, schedule)
    _needs_grid("dense", timesteps)
    return DenseTransition(matrix, timesteps=timesteps)


def build_transition(spec: Spec, *, vocab_size: int, schedule: Schedule, timesteps: int) -> Transition:
    """Build the transition a config names (``spec`` from ``component(TRANSITIONS, ...)``)."""
    return TRANSITIONS.get(spec.name)(
        spec.config, vocab_size=vocab_size, schedule=schedule, timesteps=timesteps
    )
