"""Categorical diffusion over token data: transitions, the categorical sampler, D3PM."""

from . import d3pm
from .d3pm import D3PM, D3PMConfig
from .matrix_transitions import (
    DenseTransition,
    DiscretizedGaussianTransition,
    GridTransition,
    MatrixTransition,
    RateMatrixTransition,
)
from .mixing import AbsorbingTransition, MarginalTransition, MixingTransition, UniformTransition
from .sampling import sample_categorical, sample_inverse_cdf, sharpen
from .transition_configs import TRANSITIONS, build_transition
from .transitions import ContinuousTimeTransition, Transition

__all__ = [
    "D3PM",
    "TRANSITIONS",
    "AbsorbingTransition",
    "ContinuousTimeTransition",
    "D3PMConfig",
    "DenseTransition",
    "DiscretizedGaussianTransition",
    "GridTransition",
    "MarginalTransition",
    "MatrixTransition",
    "MixingTransition",
    "RateMatrixTransition",
    "Transition",
    "UniformTransition",
    "build_transition",
    "d3pm",
    "sample_categorical",
    "sample_inverse_cdf",
    "sharpen",
]
