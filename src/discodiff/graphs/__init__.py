"""Graphs: the JSONL format, the synthetic benchmarks, and categorical diffusion over nodes and
edges (DiGress in discrete time, masked diffusion in continuous time) on a padded graph state."""

from . import data, digress, masked
from .digress import DiGress, DiGressConfig
from .io import Graph, read_jsonl, write_jsonl
from .masked import GraphMasked, GraphMaskedConfig
from .method import GraphMethod
from .process import GraphProcess
from .state import GraphState

__all__ = [
    "DiGress",
    "DiGressConfig",
    "Graph",
    "GraphMasked",
    "GraphMaskedConfig",
    "GraphMethod",
    "GraphProcess",
    "GraphState",
    "data",
    "digress",
    "masked",
    "read_jsonl",
    "write_jsonl",
]
