"""Backbones: called as ``net(x_t, t, cond)``; no diffusion math inside."""

from . import graph_transformer, lookup, mlp, transformer, unet
from .base import NETS, NetSpec

__all__ = ["NETS", "NetSpec", "graph_transformer", "lookup", "mlp", "transformer", "unet"]
