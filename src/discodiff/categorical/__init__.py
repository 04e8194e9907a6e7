"""Categorical diffusion over token data: transitions, the categorical sampler, D3PM, masked diffusion."""

from . import d3pm, masked
from .d3pm import D3PM, D3PMConfig
from .masked import MaskedConfig, MaskedDiffusion
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
    "MaskedConfig",
    "MaskedDiffusion",
    "MatrixTransition",
    "MixingTransition",
    "RateMatrixTransition",
    "Transition",
    "UniformTransition",
    "build_transition",
    "d3pm",
    "masked",
    "sample_categorical",
    "sample_inverse_cdf",
    "sharpen",
]
