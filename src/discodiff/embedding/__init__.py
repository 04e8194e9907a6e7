"""Continuous diffusion for discrete data: tokens embedded, diffused as Gaussians, rounded back.

Methods: ``diffusion_lm`` (Li et al. 2022), ``simplex`` (its one-hot / argmax special case) and
``cdcd`` (Dieleman et al. 2022), all on the Gaussian core of :mod:`discodiff.gaussian`.
"""

from .cdcd import CDCD, CDCDConfig, build_cdcd
from .decoders import ArgmaxDecoder, Decoder, HeadDecoder, NearestDecoder, build_decoder
from .diffusion_lm import DiffusionLM, DiffusionLMConfig, SimplexConfig, build_diffusion_lm, build_simplex
from .encoders import LearnedEncoder, NormalizedEncoder, OneHotEncoder, TokenEncoder, build_encoder
from .interpolation import Interpolated, InterpolatingDenoiser
from .layout import LatentLayout
from .rounding import clamp_to_nearest, nearest_index
from .time_warp import TimeWarp

__all__ = [
    "CDCD",
    "ArgmaxDecoder",
    "CDCDConfig",
    "Decoder",
    "DiffusionLM",
    "DiffusionLMConfig",
    "HeadDecoder",
    "Interpolated",
    "InterpolatingDenoiser",
    "LatentLayout",
    "LearnedEncoder",
    "NearestDecoder",
    "NormalizedEncoder",
    "OneHotEncoder",
    "SimplexConfig",
    "TimeWarp",
    "TokenEncoder",
    "build_cdcd",
    "build_decoder",
    "build_diffusion_lm",
    "build_encoder",
    "build_simplex",
    "clamp_to_nearest",
    "nearest_index",
]
