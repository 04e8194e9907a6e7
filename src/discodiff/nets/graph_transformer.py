r"""Graph transformer with node, edge and global streams (Vignac et al. 2023, DiGress, App. B.1).

Called as ``net(x_t, t, cond)`` with ``x_t`` a :class:`~discodiff.graphs.state.GraphState` of
category ids; returns a ``GraphState`` of logits: nodes ``(B, n, K_x)``, edges ``(B, n, n, K_e)``
(exactly symmetric, zero on the diagonal and padding). No diffusion math.

Each layer (:class:`GraphAttention` plus feed-forward blocks, post-norm as DiGress):

- attention scores keep one value per feature, :math:`Y_{ij} = Q_i \odot K_j / \sqrt{d_f}`, and
  are modulated by the edges (FiLM): :math:`Y \leftarrow Y\odot(1 + W_1 E_{ij}) + W_2 E_{ij}`;
- new edges are :math:`Y` modulated by the global features, :math:`E' = W_o(a(y) + (1 + b(y))
  \odot Y)`; new nodes are :math:`\sum_j \mathrm{softmax}_j(Y_{ij}) \odot V_j`, modulated by y the
  same way;
- the global stream adds pooled nodes and edges (mean, min, max, std over real nodes / real pairs;
  DiGress's main branch pools padded nodes too, PITFALLS).

Inputs are one-hot ids plus the structural features of :mod:`.graph_features` computed on the
noisy graph (entries whose id is in ``spec.edge_absent`` are not edges). Every operation is
permutation-equivariant and padding-blind: the tests check both exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import ConfigError
from ..graphs.state import GraphState, edge_entries
from .base import NETS, LabelEmbedding, NetSpec, timestep_embedding
from .graph_features import components, cycle_counts, laplacian_features, masked_adjacency

STD_EPS = 1e-6
"""Added to pooled variances before the square root: a constant feature (a symmetric graph, a
single pair) has variance 0, where the square root's gradient is infinite."""
NEG_LARGE = -1e9
"""Score of padded keys before the softmax (finite, so rows of a 1-node graph stay finite)."""


@dataclass(frozen=True)
class GraphNetSpec(NetSpec):
    """What a graph method asks of its network (on top of :class:`NetSpec`, whose ``event_shape``
    is ``(n_max,)`` and ``out_channels`` the number of edge categories).

    Attributes:
        node_in, edge_in: number of input node / edge ids (including any [MASK]).
        node_out: node logits per node.
        edge_absent: input edge ids that do not count as an edge for the structural features.
    """

    node_in: int = 1
    edge_in: int = 2
    node_out: int = 1
    edge_absent: tuple[int, ...] = (0,)


@dataclass
class GraphTransformerConfig:
    """``net: {name: graph_transformer, ...}`` (DiGress uses 256/64/64 wide, 5-10 layers, 8 heads)."""

    width_x: int = 64  # node stream
    width_e: int = 32  # edge stream
    width_y: int = 32  # global stream
    depth: int = 4
    heads: int = 4
    ffn_mult: int = 2  # feed-forward width, times the stream width
    dropout: float = 0.0
    features: Literal["none", "cycles", "all"] = "all"  # structural features (module docstring)
    eigenvalues: int = 5  # leading non-zero Laplacian eigenvalues (features: all)
    eigenvectors: int = 2  # Laplacian eigenvectors as node features (features: all)

    def __post_init__(self) -> None:
        if min(self.width_x, self.width_e, self.width_y, self.depth, self.heads, self.ffn_mult) < 1:
            raise ValueError("graph_transformer widths, depth, heads and ffn_mult must be >= 1")
        if self.width_x % self.heads:
            raise ValueError(f"width_x ({self.width_x}) must be divisible by heads ({self.heads})")
        if not 0 <= self.dropout < 1 or self.eigenvalues < 0 or self.eigenvectors < 0:
            raise ValueError("need 0 <= dropout < 1 and eigenvalues, eigenvectors >= 0")


def masked_pool(x: Tensor, mask: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Mean, min, max and std of ``x`` over ``dims`` where ``mask``; ``(B, ..., 4 C)``."""
    m = mask[..., None].to(x.dtype)
    count = m.sum(dims).clamp(min=1)
    mean = (x * m).sum(dims) / count
    var = (((x - mean.reshape(mean.shape[0], *[1] * len(dims), -1)) ** 2) * m).sum(dims) / count
    lo = x.masked_fill(~mask[..., None], float("inf")).amin(dims)
    hi = x.masked_fill(~mask[..., None], float("-inf")).amax(dims)
    empty = (m.sum(dims) == 0).expand_as(lo)
    lo, hi = lo.masked_fill(empty, 0.0), hi.masked_fill(empty, 0.0)
    return torch.cat([mean, lo, hi, (var.clamp(min=0) + STD_EPS).sqrt()], dim=-1)


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out))


class GraphAttention(nn.Module):
    """DiGress's ``NodeEdgeBlock`` (module docstring); returns new X, E, y before the residuals."""

    def __init__(self, dx: int, de: int, dy: int, heads: int) -> None:
        super().__init__()
        self.heads, self.df = heads, dx // heads
        self.q, self.k, self.v = nn.Linear(dx, dx), nn.Linear(dx, dx), nn.Linear(dx, dx)
        self.e_mul, self.e_add = nn.Linear(de, dx), nn.Linear(de, dx)
        self.y_e_mul, self.y_e_add = nn.Linear(dy, dx), nn.Linear(dy, dx)
        self.y_x_mul, self.y_x_add = nn.Linear(dy, dx), nn.Linear(dy, dx)
        self.e_out, self.x_out = nn.Linear(dx, de), nn.Linear(dx, dx)
        self.y_y, self.x_y, self.e_y = nn.Linear(dy, dy), nn.Linear(4 * dx, dy), nn.Linear(4 * de, dy)
        self.y_out = mlp(dy, dy, dy)

    def forward(self, x: Tensor, e: Tensor, y: Tensor, node_mask: Tensor, pair_mask: Tensor):
        xm, pm = node_mask[..., None].to(x.dtype), pair_mask[..., None].to(x.dtype)
        q = (self.q(x) * (xm / math.sqrt(self.df)))[:, :, None]  # (B, n, 1, dx)
        k = (self.k(x) * xm)[:, None]  # (B, 1, n, dx)
        scores = q * k  # (B, n, n, dx): one score per feature
        # FiLM by the edges, Y (1 + W1 E) + W2 E (on every pair: padded keys are masked below,
        # padded pairs of new_e are zeroed, and the diagonal's E is 0)
        scores = torch.addcmul(scores + self.e_add(e), scores, self.e_mul(e))
        film = self.y_e_mul(y)[:, None, None] + 1
        new_e = self.e_out(torch.addcmul(self.y_e_add(y)[:, None, None], film, scores)) * pm
        scores = scores.masked_fill(~node_mask[:, None, :, None], NEG_LARGE)  # attend to real nodes only
        attn = torch.softmax(scores, dim=2)
        v = (self.v(x) * xm)[:, None]  # (B, 1, n, dx)
        weighted = (attn * v).sum(dim=2)  # (B, n, dx)
        new_x = self.y_x_add(y)[:, None] + (self.y_x_mul(y)[:, None] + 1) * weighted
        new_x = self.x_out(new_x) * xm
        pooled_x = self.x_y(masked_pool(x, node_mask, (1,)))
        pooled_e = self.e_y(masked_pool(e, pair_mask, (1, 2)))
        new_y = self.y_out(self.y_y(y) + pooled_x + pooled_e)
        return new_x, new_e, new_y


class GraphLayer(nn.Module):
    """Attention, then residual + LayerNorm + feed-forward on each stream."""

    def __init__(self, dx: int, de: int, dy: int, heads: int, mult: int, dropout: float) -> None:
        super().__init__()
        self.attn = GraphAttention(dx, de, dy, heads)
        self.norms = nn.ModuleList(nn.LayerNorm(d) for d in (dx, de, dy, dx, de, dy))
        self.ffns = nn.ModuleList(mlp(d, mult * d, d) for d in (dx, de, dy))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, e: Tensor, y: Tensor, node_mask: Tensor, pair_mask: Tensor):
        new = self.attn(x, e, y, node_mask, pair_mask)
        streams = [norm(s + self.drop(d)) for s, d, norm in zip((x, e, y), new, self.norms[:3])]
        out = [norm(s + self.drop(ffn(s))) for s, ffn, norm in zip(streams, self.ffns, self.norms[3:])]
        x, e, y = out
        return x * node_mask[..., None], e * pair_mask[..., None], y


class GraphTransformer(nn.Module):
    """The DiGress graph transformer (module docstring)."""

    def __init__(self, config: GraphTransformerConfig, spec: GraphNetSpec) -> None:
        super().__init__()
        self.config, self.spec = config, spec
        c = config
        nf, gf = self.feature_sizes()
        self.in_x = mlp(spec.node_in + nf, c.width_x, c.width_x)
        self.in_e = mlp(spec.edge_in, c.width_e, c.width_e)
        self.in_y = mlp(c.width_y + gf, c.width_y, c.width_y)
        self.labels = LabelEmbedding(spec.num_classes, c.width_y) if spec.num_classes > 0 else None
        layer = (c.width_x, c.width_e, c.width_y, c.heads, c.ffn_mult, c.dropout)
        self.layers = nn.ModuleList(GraphLayer(*layer) for _ in range(c.depth))
        self.out_x = mlp(c.width_x, c.width_x, spec.node_out)
        self.out_e = mlp(c.width_e, c.width_e, spec.out_channels)
        self.register_buffer("_absent", torch.tensor(spec.edge_absent, dtype=torch.long), persistent=False)

    def feature_sizes(self) -> tuple[int, int]:
        """Number of structural node and graph features (plus the node-count fraction)."""
        c = self.config
        if c.features == "none":
            return 0, 1
        if c.features == "cycles":
            return 3, 1 + 4
        return 3 + 1 + c.eigenvectors, 1 + 4 + 1 + c.eigenvalues

    def structural(self, x_t: GraphState, node_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Node ``(B, n, nf)`` and graph ``(B, gf)`` features of the noisy graph (float32)."""
        frac = node_mask.sum(-1, keepdim=True).double() / node_mask.shape[-1]
        if self.config.features == "none":
            return x_t.nodes.new_zeros((*node_mask.shape, 0), dtype=torch.float32), frac.float()
        present = ~torch.isin(x_t.edges, self._absent)
        a = masked_adjacency(present, node_mask)
        per_node, totals = cycle_counts(a)
        node_f, graph_f = [torch.log1p(per_node.clamp(min=0))], [frac, torch.log1p(totals.clamp(min=0))]
        if self.config.features == "all":
            count, outside = components(a, node_mask)
            vals, vecs = laplacian_features(a, node_mask, self.config.eigenvalues, self.config.eigenvectors)
            node_f += [outside[..., None].double(), vecs]
            graph_f += [count[:, None].double(), vals]
        mask = node_mask[..., None].double()
        return (torch.cat(node_f, -1) * mask).float(), torch.cat(graph_f, -1).float()

    def forward(self, x_t: GraphState, t: Tensor, cond: Tensor | None = None) -> GraphState:
        node_mask = x_t.node_mask
        pair_mask = edge_entries(node_mask, upper=False)
        dtype = self.in_e[0].weight.dtype
        node_f, graph_f = (f.to(dtype) for f in self.structural(x_t, node_mask))
        x = torch.cat([F.one_hot(x_t.nodes, self.spec.node_in).to(dtype), node_f], -1)
        x = self.in_x(x) * node_mask[..., None]
        e = self.in_e(F.one_hot(x_t.edges, self.spec.edge_in).to(dtype))
        e = (e + e.transpose(1, 2)) / 2 * pair_mask[..., None]
        y = torch.cat([timestep_embedding(t, self.config.width_y).to(dtype), graph_f], -1)
        y = self.in_y(y)
        if self.labels is not None:
            y = y + self.labels(cond, y.shape[0], y.device)
        for layer in self.layers:
            x, e, y = layer(x, e, y, node_mask, pair_mask)
        node_logits = self.out_x(x) * node_mask[..., None]
        edge_logits = self.out_e(e)
        edge_logits = (edge_logits + edge_logits.transpose(1, 2)) / 2 * pair_mask[..., None]
        return GraphState(node_logits, edge_logits, node_mask)


@NETS.register("graph_transformer", config=GraphTransformerConfig)
def build_graph_transformer(config: GraphTransformerConfig, spec: NetSpec) -> GraphTransformer:
    if not isinstance(spec, GraphNetSpec):
        raise ConfigError("net 'graph_transformer' models graphs: use it with a graph method and graph data")
    return GraphTransformer(config, spec)
