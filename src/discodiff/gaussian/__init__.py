"""Gaussian diffusion: DDPM (discrete time) and score SDEs (continuous time)."""

from .method import GaussianConfig, GaussianDiffusion
from .process import PROCESSES, GaussianProcess, VEProcess, VPProcess
from .samplers import GAUSSIAN_SAMPLERS

__all__ = [
    "GAUSSIAN_SAMPLERS",
    "PROCESSES",
    "GaussianConfig",
    "GaussianDiffusion",
    "GaussianProcess",
    "VEProcess",
    "VPProcess",
]
