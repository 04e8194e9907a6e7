r"""Categorical diffusion on graphs: one transition for node categories, one for edge categories.

A graph is two categorical fields, ``nodes`` and ``edges`` (category 0 = "no edge"), each noised
independently per entry by its own :class:`~discodiff.categorical.transitions.Transition`
(marginal, uniform or absorbing, matrix-free), with one shared schedule (Vignac et al. 2023,
DiGress, Sec. 3-4):

.. math::
    q(G_t|G_0) = \prod_{i} q_X(x_t^i|x_0^i)\prod_{i<j} q_E(e_t^{ij}|e_0^{ij}).

Only the entries that exist count (:func:`~discodiff.graphs.state.node_entries`,
:func:`~discodiff.graphs.state.edge_entries`): real nodes, and pairs ``i < j`` of real nodes.
Edge noise and samples are drawn for those pairs and mirrored (no self-loops), padding stays 0.
Every quantity of a bound (prior KL, step KL, reconstruction) is the transitions' per-token term
(:meth:`Transition.prior_kl`, :meth:`Transition.step_kl`) summed over those entries, so a graph's
bound is the sum of its nodes' and its node pairs' terms. With a single node category the node
field carries no information and is left out (``process.node`` is ``None``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..categorical.logspace import NEG_INF
from ..categorical.sampling import sample_categorical, uniform
from ..categorical.transitions import ReverseForm, TimeLike, Transition
from .state import GraphState, clean, edge_entries, mirror_upper, node_entries, num_pairs

FIELDS = ("nodes", "edges")


def masked_sum(values: Tensor, mask: Tensor) -> Tensor:
    """Sum of ``values`` ``(B, ...)`` where ``mask``, per graph: ``(B,)``."""
    return (
        torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device)).flatten(1).sum(1)
    )


class GraphProcess(nn.Module):
    """The forward process of a graph and the bound terms built on it (module docstring).

    Args:
        node: transition over node categories, or ``None`` for a single node category.
        edge: transition over edge categories (category 0 = no edge).
    """

    def __init__(self, node: Transition | None, edge: Transition) -> None:
        super().__init__()
        self.node, self.edge = node, edge

    def transitions(self) -> dict[str, Transition]:
        """The active fields and their transitions."""
        out = {"edges": self.edge}
        if self.node is not None:
            out = {"nodes": self.node, **out}
        return out

    @staticmethod
    def entries(field: str, node_mask: Tensor) -> Tensor:
        """Mask of the entries of ``field`` that count."""
        return node_entries(node_mask) if field == "nodes" else edge_entries(node_mask)

    def num_entries(self, node_mask: Tensor) -> Tensor:
        """``(B,)`` number of categorical variables of each graph: pairs (and nodes if modelled)."""
        count = num_pairs(node_mask)
        return count + node_mask.sum(-1) if self.node is not None else count

    # ---- forward draws ---------------------------------------------------------------------

    def _assemble(self, x: GraphState, nodes: Tensor | None, edges: Tensor) -> GraphState:
        """A state with new nodes (``None``: keep) and edges (mirrored from the upper triangle)."""
        new_nodes = x.nodes if nodes is None else nodes
        return clean(GraphState(new_nodes, mirror_upper(edges), x.node_mask))

    def sample_marginal(self, x0: GraphState, t: TimeLike, u: dict[str, Tensor]) -> GraphState:
        r"""Draw :math:`G_t \sim q(G_t|G_0)` from uniforms ``u[field]`` (shape ``(B, *D, 2)``, float64)."""
        return self.sample_transition(x0, 0.0, t, u)

    def sample_transition(
        self, x_s: GraphState, s: TimeLike, t: TimeLike, u: dict[str, Tensor]
    ) -> GraphState:
        """Draw :math:`G_t \\sim q(G_t|G_s)` entry by entry (module docstring)."""
        nodes = None if self.node is None else self.node.sample_transition(x_s.nodes, s, t, u["nodes"])
        return self._assemble(x_s, nodes, self.edge.sample_transition(x_s.edges, s, t, u["edges"]))

    def uniforms(self, node_mask: Tensor, generator: torch.Generator | None) -> dict[str, Tensor]:
        """Float64 uniforms for :meth:`sample_transition` from ``generator``."""
        B, n = node_mask.shape
        return {
            "nodes": uniform((B, n, 2), generator=generator, device=node_mask.device),
            "edges": uniform((B, n, n, 2), generator=generator, device=node_mask.device),
        }

    def sample_prior(self, node_mask: Tensor, generator: torch.Generator | None) -> GraphState:
        r"""Draw :math:`G_1 \sim p(G_1)`, each entry from its transition's prior."""
        B, n = node_mask.shape
        dev = node_mask.device
        zeros = GraphState(
            torch.zeros(B, n, dtype=torch.long, device=dev),
            torch.zeros(B, n, n, dtype=torch.long, device=dev),
            node_mask,
        )
        log_probs = {f: tr.log_prior().to(dev) for f, tr in self.transitions().items()}
        return self.sample(
            zeros, {f: lp.expand(*getattr(zeros, f).shape, -1) for f, lp in log_probs.items()}, generator
        )

    def sample(
        self, x: GraphState, log_probs: dict[str, Tensor], generator: torch.Generator | None
    ) -> GraphState:
        """Draw every active field from ``log_probs[field]`` ``(B, *D, S)``; edges mirrored, padding 0.

        Entries that do not count (padding, the diagonal, the lower triangle) are drawn from a point
        mass on 0 whatever ``log_probs`` holds there (an absorbing chain's posterior of such an
        unmasked entry at t = 1 is undefined)."""
        drawn = {}
        for f, lp in log_probs.items():
            point = torch.full_like(lp, NEG_INF)
            point[..., 0] = 0.0
            lp = torch.where(self.entries(f, x.node_mask)[..., None], lp, point)
            drawn[f] = sample_categorical(lp, generator=generator)
        return self._assemble(x, drawn.get("nodes"), drawn["edges"])

    # ---- bound terms -------------------------------------------------------------------------

    def reverse(
        self, x_t: GraphState, log_p0: GraphState, s: TimeLike, t: TimeLike, *, form: ReverseForm = "average"
    ) -> dict[str, Tensor]:
        r""":math:`\log p_\theta(\cdot_s|G_t)` per active field from x_0 log-probabilities ``log_p0``."""
        return {
            f: tr.log_reverse(getattr(x_t, f), getattr(log_p0, f), s, t, form=form)
            for f, tr in self.transitions().items()
        }

    def prior_kl(self, x0: GraphState, *, dtype: torch.dtype = torch.float64) -> dict[str, Tensor]:
        r""":math:`D_{KL}(q(G_1|G_0)\,\|\,p(G_1))` per field, ``(B,)`` nats."""
        out = {}
        for f, tr in self.transitions().items():
            kl = tr.prior_kl(getattr(x0, f), dtype=dtype, per_token=True)
            out[f] = masked_sum(kl, self.entries(f, x0.node_mask))
        return out

    def step_kl(
        self,
        x0: GraphState,
        x_t: GraphState,
        s: TimeLike,
        t: TimeLike,
        log_p0: GraphState,
        *,
        form: ReverseForm,
    ) -> dict[str, Tensor]:
        r""":math:`D_{KL}(q(G_s|G_t,G_0)\,\|\,p_\theta(G_s|G_t))` per field, ``(B,)`` nats (s = 0: the
        reconstruction term :math:`-\log p_\theta(G_0|G_t)`)."""
        return {
            f: masked_sum(
                tr.step_kl(getattr(x0, f), getattr(x_t, f), s, t, getattr(log_p0, f), form=form),
                self.entries(f, x0.node_mask),
            )
            for f, tr in self.transitions().items()
        }

    def cross_entropy(
        self, x0: GraphState, log_p0: GraphState, where: GraphState | None = None
    ) -> dict[str, Tensor]:
        r""":math:`-\sum \log\hat p(x_0|G_t)` per field over the counted entries (and ``where``), ``(B,)``."""
        out = {}
        for f in self.transitions():
            mask = self.entries(f, x0.node_mask)
            if where is not None:
                mask = mask & getattr(where, f)
            nll = -getattr(log_p0, f).gather(-1, getattr(x0, f)[..., None]).squeeze(-1)
            out[f] = masked_sum(nll, mask)
        return out
