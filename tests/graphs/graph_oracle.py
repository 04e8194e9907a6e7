"""An enumerable graph distribution with exact denoisers, and exact enumerations of a graph
method's bound and of its sampler's output distribution.

Graphs have 2 or 3 nodes (p(n) = 0.3 / 0.7), two node categories and edge / no edge: 2^2 * 2 = 8
labelled graphs on 2 nodes and 2^3 * 2^3 = 64 on 3 nodes, with a fixed distribution that couples
nodes and edges (an edge is likely between nodes of equal category, a triangle is favoured).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import Tensor

from discodiff.graphs.method import GraphMethod
from discodiff.graphs.state import GraphState

F64 = torch.float64
N_MAX = 3
NODE_COUNTS = (0.0, 0.0, 0.3, 0.7)
PAIRS = [(0, 1), (0, 2), (1, 2)]


def enumerate_graphs(num_node_states: int, num_edge_states: int, n: int) -> GraphState:
    """Every labelled graph on n nodes (padded to N_MAX) with the given numbers of states."""
    pairs = [p for p in PAIRS if p[1] < n]
    rows = list(itertools.product(range(num_node_states), repeat=n))
    cols = list(itertools.product(range(num_edge_states), repeat=len(pairs)))
    B = len(rows) * len(cols)
    nodes = torch.zeros(B, N_MAX, dtype=torch.long)
    edges = torch.zeros(B, N_MAX, N_MAX, dtype=torch.long)
    for b, (r, c) in enumerate(itertools.product(rows, cols)):
        nodes[b, :n] = torch.tensor(r)
        for (i, j), e in zip(pairs, c):
            edges[b, i, j] = edges[b, j, i] = e
    mask = torch.arange(N_MAX)[None] < n
    return GraphState(nodes, edges, mask.expand(B, N_MAX).clone())


class GraphOracle:
    """The distribution (module docstring) and its exact per-entry posteriors."""

    def __init__(self) -> None:
        self.graphs = {n: enumerate_graphs(2, 2, n) for n in (2, 3)}
        self.log_p = {}
        for n, g in self.graphs.items():
            x = g.nodes[:, :n].double()
            e = torch.stack([g.edges[:, i, j] for i, j in PAIRS if j < n], 1).double()
            same = torch.stack([(x[:, i] == x[:, j]).double() for i, j in PAIRS if j < n], 1)
            energy = 1.5 * (e * same).sum(1) - 1.0 * (e * (1 - same)).sum(1) + 0.7 * x.sum(1)
            if n == 3:
                energy = energy + 1.2 * e.prod(1)
            self.log_p[n] = torch.log_softmax(energy, 0) + math.log(NODE_COUNTS[n])

    def entropy(self) -> float:
        """H(G) in nats, the node count included."""
        lp = torch.cat(list(self.log_p.values()))
        return float(-(lp.exp() * lp).sum())

    def all_graphs(self) -> tuple[GraphState, Tensor]:
        """Every graph of the support and its probability."""
        g = [self.graphs[2], self.graphs[3]]
        state = GraphState(*(torch.cat([getattr(a, f) for a in g]) for f in ("nodes", "edges", "node_mask")))
        return state, torch.cat([self.log_p[2], self.log_p[3]]).exp()

    def posterior(self, process, x_t: GraphState, t: Tensor) -> GraphState:
        r"""Exact :math:`\log p(x_0^i = k|G_t)` per entry (nodes (B, 3, 2), edges (B, 3, 3, 2))."""
        B = x_t.num_graphs
        nodes = torch.full((B, N_MAX, 2), 0.5, dtype=F64)  # padding and diagonal: anything finite
        edges = torch.full((B, N_MAX, N_MAX, 2), 0.5, dtype=F64)
        lik_x = process.node.log_likelihood(x_t.nodes, 0.0, t, dtype=F64)[..., :2]  # (B, 3, 2)
        lik_e = process.edge.log_likelihood(x_t.edges, 0.0, t, dtype=F64)[..., :2]  # (B, 3, 3, 2)
        counts = x_t.node_mask.sum(1)
        for n, g in self.graphs.items():
            rows = (counts == n).nonzero().flatten()
            if len(rows) == 0:
                continue
            ll = self.log_p[n][None].expand(len(rows), -1).clone()
            for i in range(n):
                ll += lik_x[rows][:, i, g.nodes[:, i]]
            for i, j in (p for p in PAIRS if p[1] < n):
                ll += lik_e[rows][:, i, j, g.edges[:, i, j]]
            post = torch.softmax(ll, 1)  # (rows, configs)
            x1 = torch.nn.functional.one_hot(g.nodes, 2).double()
            e1 = torch.nn.functional.one_hot(g.edges, 2).double()
            nodes[rows] = torch.einsum("bc,cik->bik", post, x1)
            edges[rows] = torch.einsum("bc,cijk->bijk", post, e1)
        return GraphState(torch.log(nodes), torch.log(edges), x_t.node_mask)

    def net(self, process, timesteps: int = 0, *, t_max: float = 1.0):
        """``net(G_t, t, cond)`` returning the exact posterior as logits (t rounded to the T grid).

        ``t_max`` < 1 evaluates the likelihood below t = 1, where an absorbing chain's unmasked
        entries (a known subgraph carried over from t = 1) have probability 0 but the same posterior.
        """

        def net(x_t: GraphState, t: Tensor, cond: Tensor | None = None) -> GraphState:
            t64 = t.double() if timesteps == 0 else torch.round(t.double() * timesteps) / timesteps
            return self.posterior(process, x_t, t64.clamp(max=t_max))

        return net


def entry_log_probs(process, x0: GraphState, states: GraphState, s: float, t: float) -> Tensor:
    """``log q(G_t = states[k] | G_0 = x0[b])`` over the counted entries, ``(B, K)``."""
    qx = process.node.log_transition(x0.nodes, s, t, dtype=F64)  # (B, 3, S)
    qe = process.edge.log_transition(x0.edges, s, t, dtype=F64)  # (B, 3, 3, S)
    n = int(x0.node_mask[0].sum())
    out = torch.zeros(x0.num_graphs, states.num_graphs, dtype=F64)
    for i in range(n):
        out += qx[:, i, states.nodes[:, i]]
    for i, j in (p for p in PAIRS if p[1] < n):
        out += qe[:, i, j, states.edges[:, i, j]]
    return out


def exact_bound(method: GraphMethod, oracle: GraphOracle, grid: list[float]) -> float:
    """E_data[bound] in nats on the time grid (1 = t_0 > ... > 0), by enumerating every G_t."""
    proc = method.process
    total = 0.0
    for n, x0 in oracle.graphs.items():
        p = oracle.log_p[n].exp()
        states = enumerate_graphs(proc.node.num_states, proc.edge.num_states, n)
        per = method.node_count_nll(x0.node_mask) + sum(proc.prior_kl(x0).values())
        for t, s in itertools.pairwise(grid):
            log_q = entry_log_probs(proc, x0, states, 0.0, t)  # (configs, states)
            b, k = (log_q > -math.inf).nonzero(as_tuple=True)
            x0_rep = GraphState(x0.nodes[b], x0.edges[b], x0.node_mask[b])
            xt_rep = GraphState(states.nodes[k], states.edges[k], states.node_mask[k])
            tt = torch.full((len(b),), t, dtype=F64)
            kl = sum(
                proc.step_kl(
                    x0_rep, xt_rep, s, tt, method.denoise(xt_rep, tt), form=method.reverse_form
                ).values()
            )
            per = per + torch.zeros_like(per).index_add(0, b, log_q[b, k].exp() * kl)
        total += float((p * per).sum())
    return total


def exact_sampler_distribution(
    method: GraphMethod, oracle: GraphOracle, grid: list[float]
) -> dict[int, np.ndarray]:
    """Per node count, the exact distribution over data graphs of ancestral sampling on ``grid``."""
    proc = method.process
    out = {}
    for n in oracle.graphs:
        states = enumerate_graphs(proc.node.num_states, proc.edge.num_states, n)
        prior = GraphState(
            proc.node.log_prior().expand(1, N_MAX, -1),
            proc.edge.log_prior().expand(1, N_MAX, N_MAX, -1),
            states.node_mask[:1],
        )
        dist = _kernel_prob(prior, states, n).exp()[0]
        for t, s in itertools.pairwise(grid):
            live = dist > 0
            tt = torch.full((int(live.sum()),), t, dtype=F64)
            cur = GraphState(states.nodes[live], states.edges[live], states.node_mask[live])
            step = method.process.reverse(cur, method.denoise(cur, tt), s, tt, form=method.reverse_form)
            kernel = _kernel_prob(GraphState(step["nodes"], step["edges"], cur.node_mask), states, n).exp()
            dist = dist[live] @ kernel
        data = (states.nodes < 2).all(1) & (states.edges < 2).flatten(1).all(1)
        assert float(dist[~data].sum()) < 1e-12, "the sampler left [MASK] states at t = 0"
        out[n] = dist[data].numpy()
    return out


def _kernel_prob(log_probs: GraphState, states: GraphState, n: int) -> Tensor:
    """``(B, K)``: log-probability of every state under per-entry distributions ``log_probs``."""
    out = torch.zeros(log_probs.num_graphs, states.num_graphs, dtype=F64)
    for i in range(n):
        out += log_probs.nodes[:, i, states.nodes[:, i]].double()
    for i, j in (p for p in PAIRS if p[1] < n):
        out += log_probs.edges[:, i, j, states.edges[:, i, j]].double()
    return out


def graph_index(state: GraphState, n: int) -> Tensor:
    """Row of each n-node graph of ``state`` in ``enumerate_graphs(2, 2, n)``."""
    pairs = [p for p in PAIRS if p[1] < n]
    digits = [state.nodes[:, i] for i in range(n)] + [state.edges[:, i, j] for i, j in pairs]
    index = torch.zeros(state.num_graphs, dtype=torch.long)
    for d in digits:
        index = index * 2 + d
    return index
