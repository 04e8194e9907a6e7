"""Discrete flows (Tran et al. 2019): invertible maps of categorical data with an exact likelihood."""

from . import layers, method, modular
from .layers import AutoregressiveLayer, CouplingLayer, FlowLayer, LocationScale, Permutation
from .method import DiscreteFlow, DiscreteFlowConfig
from .modular import Modulus

__all__ = [
    "AutoregressiveLayer",
    "CouplingLayer",
    "DiscreteFlow",
    "DiscreteFlowConfig",
    "FlowLayer",
    "LocationScale",
    "Modulus",
    "Permutation",
    "layers",
    "method",
    "modular",
]
