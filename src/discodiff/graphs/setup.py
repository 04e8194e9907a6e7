"""Building a graph method from a graph data set's description (``DataInfo``): its node and edge
transitions, the network it asks for, and the node-count prior."""

from __future__ import annotations

from typing import Literal

import torch

from ..categorical.mixing import AbsorbingTransition, MarginalTransition, UniformTransition
from ..categorical.transitions import Transition
from ..errors import ConfigError
from ..schedules import Schedule
from .process import GraphProcess

TransitionName = Literal["marginal", "uniform", "absorbing"]
"""Per-field transition: resample from the training marginal (DiGress), uniformly, or to [MASK]."""


def field_transition(name: TransitionName, vocab_size: int, marginal, schedule: Schedule) -> Transition:
    """The transition ``name`` over ``vocab_size`` categories (``marginal``: the field's frequencies)."""
    if name == "uniform":
        return UniformTransition(schedule, vocab_size)
    if name == "absorbing":
        return AbsorbingTransition(schedule, vocab_size)
    if marginal is None:
        raise ConfigError("transition 'marginal' needs the data's category frequencies (FieldInfo.marginal)")
    return MarginalTransition(schedule, torch.tensor(marginal, dtype=torch.float64))


def graph_process(info, node: TransitionName, edge: TransitionName, schedule: Schedule) -> GraphProcess:
    """Node and edge transitions for a graph data set (no node transition for one node category)."""
    if info.kind != "graph" or "nodes" not in info.fields or "edges" not in info.fields:
        raise ConfigError("graph methods model graph data (DataInfo.kind == 'graph' with nodes and edges)")
    nodes, edges = info.fields["nodes"], info.fields["edges"]
    node_tr = None
    if nodes.vocab_size > 1:
        node_tr = field_transition(node, nodes.vocab_size, nodes.marginal, schedule)
    return GraphProcess(node_tr, field_transition(edge, edges.vocab_size, edges.marginal, schedule))


def build_graph_method(cls, config, info, net_factory, *, transitions: tuple[TransitionName, TransitionName]):
    """``cls(net, process, node_counts, config=..., num_classes=...)`` for graph data ``info``."""
    from ..nets.graph_transformer import GraphNetSpec

    process = graph_process(info, *transitions, config.schedule)
    if info.node_counts is None:
        raise ConfigError("graph methods need the data's node-count distribution (DataInfo.node_counts)")
    edge = process.edge
    absent = (0, edge.mask_id) if isinstance(edge, AbsorbingTransition) else (0,)
    spec = GraphNetSpec(
        event_shape=(len(info.node_counts) - 1,),
        out_channels=edge.vocab_size,
        num_classes=info.num_classes,
        input_vocab=edge.num_states,
        node_in=1 if process.node is None else process.node.num_states,
        edge_in=edge.num_states,
        node_out=1 if process.node is None else process.node.vocab_size,
        edge_absent=absent,
    )
    return cls(net_factory(spec), process, info.node_counts, config=config, num_classes=info.num_classes)
