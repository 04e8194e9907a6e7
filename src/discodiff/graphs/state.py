r"""The graph state: node categories, edge categories and a node mask, padded to ``n_max`` nodes.

A batch of B graphs with at most n nodes is a :class:`GraphState`:

- ``nodes``: ``(B, n)`` long node categories (or ``(B, n, K_x)`` float, network outputs);
- ``edges``: ``(B, n, n)`` long edge categories, symmetric, category 0 = "no edge"
  (or ``(B, n, n, K_e)`` float);
- ``node_mask``: ``(B, n)`` bool, True for real nodes. Real nodes come first: a graph with k nodes
  occupies rows ``0 .. k-1``.

Padded entries (and the diagonal of ``edges``) hold 0 and are excluded from noise, losses,
likelihoods and metrics: :func:`node_entries` and :func:`edge_entries` are the masks of what counts.
Symmetry is handled here, once: edge noise and samples are drawn on the upper triangle and mirrored
(:func:`mirror_upper`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..state import register_state
from .io import Graph


@register_state
@dataclass
class GraphState:
    """A batch of padded graphs (module docstring); a state (:mod:`discodiff.state`), so the
    trainer, evaluator and CLI slice, move and concatenate it like a tensor."""

    nodes: Tensor
    edges: Tensor
    node_mask: Tensor

    def __post_init__(self) -> None:
        B, n = self.node_mask.shape
        if self.nodes.shape[:2] != (B, n) or self.edges.shape[:3] != (B, n, n):
            raise ValueError(
                f"GraphState fields disagree: nodes {tuple(self.nodes.shape)}, edges "
                f"{tuple(self.edges.shape)}, node_mask {tuple(self.node_mask.shape)}"
            )

    @property
    def num_graphs(self) -> int:
        return self.node_mask.shape[0]

    @property
    def max_nodes(self) -> int:
        return self.node_mask.shape[1]


def node_entries(node_mask: Tensor) -> Tensor:
    """``(B, n)`` bool: the node entries that count (real nodes)."""
    return node_mask


def edge_entries(node_mask: Tensor, *, upper: bool = True) -> Tensor:
    """``(B, n, n)`` bool: pairs of real nodes ``i < j`` (``upper``) or ``i != j`` (both triangles)."""
    n = node_mask.shape[-1]
    pairs = node_mask[:, :, None] & node_mask[:, None, :]
    keep = torch.ones(n, n, dtype=torch.bool, device=node_mask.device)
    keep = keep.triu(1) if upper else ~torch.eye(n, dtype=torch.bool, device=node_mask.device)
    return pairs & keep


def num_pairs(node_mask: Tensor) -> Tensor:
    """``(B,)`` number of node pairs k(k-1)/2 of each graph."""
    k = node_mask.sum(-1)
    return k * (k - 1) // 2


def mirror_upper(edges: Tensor) -> Tensor:
    """Copy the strict upper triangle of ``(B, n, n, ...)`` onto the lower one; diagonal 0."""
    n = edges.shape[1]
    upper = torch.ones(n, n, dtype=torch.bool, device=edges.device).triu(1)
    upper = upper.reshape(1, n, n, *([1] * (edges.dim() - 3)))
    tri = torch.where(upper, edges, torch.zeros_like(edges))
    return tri + tri.transpose(1, 2)


def clean(state: GraphState) -> GraphState:
    """Zero the padded nodes, the edges touching them and the diagonal (long states)."""
    pairs = edge_entries(state.node_mask, upper=False)
    return GraphState(
        torch.where(state.node_mask, state.nodes, 0), torch.where(pairs, state.edges, 0), state.node_mask
    )


def to_dense(graphs: Sequence[Graph], max_nodes: int) -> GraphState:
    """Graphs -> a padded :class:`GraphState` (edge category = edge label + 1, or 1 unlabelled)."""
    B = len(graphs)
    nodes = torch.zeros(B, max_nodes, dtype=torch.long)
    edges = torch.zeros(B, max_nodes, max_nodes, dtype=torch.long)
    mask = torch.zeros(B, max_nodes, dtype=torch.bool)
    for b, g in enumerate(graphs):
        if g.num_nodes > max_nodes:
            raise ValueError(f"graph {b} has {g.num_nodes} nodes; at most {max_nodes} fit")
        mask[b, : g.num_nodes] = True
        if g.node_labels is not None:
            nodes[b, : g.num_nodes] = torch.from_numpy(g.node_labels)
        cat = torch.ones(g.num_edges, dtype=torch.long)
        if g.edge_labels is not None:
            cat = torch.from_numpy(g.edge_labels) + 1
        u, v = torch.from_numpy(g.edges[:, 0]), torch.from_numpy(g.edges[:, 1])
        edges[b, u, v] = cat
        edges[b, v, u] = cat
    return GraphState(nodes, edges, mask)


def from_dense(state: GraphState, *, labelled_nodes: bool, labelled_edges: bool) -> list[Graph]:
    """A padded long :class:`GraphState` -> graphs (the inverse of :func:`to_dense`)."""
    out = []
    nodes, edges, mask = state.nodes.cpu(), state.edges.cpu(), state.node_mask.cpu()
    for b in range(state.num_graphs):
        k = int(mask[b].sum())
        e = edges[b, :k, :k].numpy()
        u, v = np.nonzero(np.triu(e, 1))
        out.append(
            Graph(
                k,
                np.stack([u, v], axis=1),
                node_labels=nodes[b, :k].numpy().copy() if labelled_nodes else None,
                edge_labels=(e[u, v] - 1) if labelled_edges else None,
            )
        )
    return out
