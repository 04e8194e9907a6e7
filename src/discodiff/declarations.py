"""What a method declares about its samplers and likelihood estimators, and the checked request
:meth:`discodiff.base.Method.sample` hands to a method's ``generate`` (re-exported by
:mod:`discodiff.base`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import UsageError
from .state import State


@dataclass(frozen=True)
class SamplerInfo:
    """What a sampler costs and allows, declared by its method.

    Attributes:
        name: the sampler's name.
        nfe_per_step: network calls per step without guidance (guidance doubles them); ``None``
            for adaptive solvers, whose number of calls depends on the solution.
        default_steps: steps used when none are given.
        min_steps, max_steps: allowed steps (``max_steps`` ``None``: no upper limit).
        deterministic: the same prior draw always gives the same sample (ODE, DDIM with eta 0,
            argmax decoding, flows).
        limit: why the steps are limited, for error messages (e.g. "the model's timesteps").
    """

    name: str
    nfe_per_step: float | None
    default_steps: int
    min_steps: int = 1
    max_steps: int | None = None
    deterministic: bool = False
    limit: str = ""

    def check(self, steps: int) -> None:
        """Refuse a number of steps this sampler does not allow, saying what is allowed."""
        if isinstance(steps, bool) or not isinstance(steps, int):
            raise UsageError(f"steps must be an integer, got {steps!r}")
        if self.min_steps == self.max_steps and steps != self.min_steps:
            raise UsageError(
                f"sampler {self.name!r} takes {self.limit or f'{self.min_steps} steps'}: steps must be "
                f"None or {self.min_steps}, got {steps}"
            )
        if steps < self.min_steps:
            raise UsageError(f"steps must be >= {self.min_steps} for sampler {self.name!r}, got {steps}")
        if self.max_steps is not None and steps > self.max_steps:
            raise UsageError(
                f"steps ({steps}) cannot exceed {self.limit or 'the allowed maximum'} ({self.max_steps})"
            )


@dataclass(frozen=True)
class EstimatorInfo:
    """A likelihood estimator, declared by its method.

    Attributes:
        name: the estimator's name (``nll(batch, estimator=name)``).
        exact: the exact negative log-likelihood (else an upper bound on it).
        monte_carlo: a random estimate (of the exact value or of the bound), so a mean over
            examples has a standard error beyond the data's own spread.
    """

    name: str
    exact: bool
    monte_carlo: bool


@dataclass(frozen=True)
class SampleRequest:
    """A checked request to draw samples: what :meth:`Method.generate` receives.

    Attributes:
        shape: ``(N, *event_shape)`` for tensor states (the event shape may differ from the
            training one where the method allows it), ``(N,)`` for structured states.
        steps: sampler steps (checked against :class:`SamplerInfo`).
        sampler: the sampler's name (one of the method's ``samplers``).
        cond: ``(N,)`` long class labels, or ``None``.
        guidance_scale: classifier-free guidance scale; 1 means no guidance.
        known, known_mask: a state to condition on and a bool state of the same structure (True
            where known), or ``None``.
        generator: the random generator to draw from.
        return_trajectory: also return intermediate states.
        progress: show a progress bar.
    """

    shape: tuple[int, ...]
    steps: int
    sampler: str
    cond: Tensor | None = None
    guidance_scale: float = 1.0
    known: State | None = None
    known_mask: State | None = None
    generator: torch.Generator | None = None
    return_trajectory: bool = False
    progress: bool = False

    @property
    def num(self) -> int:
        """Number of samples."""
        return self.shape[0]
