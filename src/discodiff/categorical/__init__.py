"""Categorical diffusion over token data: transitions, the categorical sampler, D3PM, masked
diffusion, the continuous-time methods (CTMC, UDLM, SEDD) and discrete flow matching."""

from . import ctmc, d3pm, flow_matching, masked, sedd
from .continuous_time import ContinuousTimeMethod, ContinuousTimeOptions
from .ctmc import CTMC, CTMCConfig, UDLMConfig
from .d3pm import D3PM, D3PMConfig
from .flow_matching import DFMConfig, DiscreteFlowMatching
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
from .sedd import SEDD, SEDDConfig
from .transition_configs import TRANSITIONS, build_transition
from .transitions import ContinuousTimeTransition, Transition

__all__ = [
    "CTMC",
    "D3PM",
    "SEDD",
    "TRANSITIONS",
    "AbsorbingTransition",
    "CTMCConfig",
    "ContinuousTimeMethod",
    "ContinuousTimeOptions",
    "ContinuousTimeTransition",
    "D3PMConfig",
    "DFMConfig",
    "DenseTransition",
    "DiscreteFlowMatching",
    "DiscretizedGaussianTransition",
    "GridTransition",
    "MarginalTransition",
    "MaskedConfig",
    "MaskedDiffusion",
    "MatrixTransition",
    "MixingTransition",
    "RateMatrixTransition",
    "SEDDConfig",
    "Transition",
    "UDLMConfig",
    "UniformTransition",
    "build_transition",
    "ctmc",
    "d3pm",
    "flow_matching",
    "masked",
    "sample_categorical",
    "sample_inverse_cdf",
    "sedd",
    "sharpen",
]
