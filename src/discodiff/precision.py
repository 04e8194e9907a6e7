"""The numeric precision of the networks when sampling and evaluating likelihoods.

A run trained with bf16 autocast (``train.precision: bf16``) is evaluated the same way unless
``eval.precision`` says otherwise. Only the *networks* run under autocast, and their outputs are
returned as float32: the diffusion math around them (log-space categorical posteriors, bound
terms, ODE divergences) keeps the precision it was written for, so bf16 changes the result only
through the network's own rounding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor

from .base import Method
from .runconfig import EvalConfig, RunConfig
from .state import map_state

Precision = Literal["fp32", "bf16"]


def resolved_eval(config: RunConfig) -> EvalConfig:
    """``config.eval`` with its precision resolved (``None``: the run's training precision)."""
    precision = config.eval.precision or config.train.precision
    return dataclasses.replace(config.eval, precision=precision)


def _upcast(x: Tensor) -> Tensor:
    return x.float() if isinstance(x, Tensor) and x.dtype == torch.bfloat16 else x


@contextmanager
def network_precision(method: Method, precision: Precision | None) -> Iterator[None]:
    """Run ``method``'s networks under bf16 autocast (outputs cast back to float32) inside the
    block; fp32 (or ``None``) changes nothing."""
    if precision not in (None, "fp32", "bf16"):
        raise ValueError(f"unknown precision {precision!r}; allowed: 'fp32', 'bf16'")
    nets = list(method.networks().values()) if precision == "bf16" else []
    device_type = method.device.type
    for net in nets:
        inner = net.forward

        def forward(*args, _inner=inner, **kwargs):
            with torch.autocast(device_type, dtype=torch.bfloat16):
                out = _inner(*args, **kwargs)
            return map_state(_upcast, out)

        net.forward = forward  # an instance attribute: shadows the class's forward in this block
    try:
        yield
    finally:
        for net in nets:
            del net.forward
