"""discodiff: diffusion models for continuous and discrete data on one core.

Every method exposes ``loss(batch)``, ``nll(batch)`` and ``sample(...)``; see
:mod:`discodiff.base`. Time runs over [0, 1] with data at t = 0 and noise at t = 1.
:func:`load` returns a trained model from a run directory or an exported bundle.
"""

__version__ = "0.1.0"

from . import autoregressive, categorical, data, embedding, flows, gaussian, graphs, molecules, nets
from .base import Batch, LossOutput, Method, NLLOutput, SampleOutput
from .bundle import export, load
from .schedules import SCHEDULES

__all__ = [
    "SCHEDULES",
    "Batch",
    "LossOutput",
    "Method",
    "NLLOutput",
    "SampleOutput",
    "autoregressive",
    "categorical",
    "data",
    "embedding",
    "export",
    "flows",
    "gaussian",
    "graphs",
    "load",
    "molecules",
    "nets",
]
