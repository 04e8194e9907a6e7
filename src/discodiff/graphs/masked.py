r"""Masked (absorbing) graph diffusion in continuous time: MDLM / MD4's bound on nodes and edges.

Every node category and every node pair's edge category is kept with probability
:math:`\alpha_t` and replaced by [MASK] otherwise, independently (absorbing transitions on both
fields, one schedule; edges drawn for ``i < j`` and mirrored). The network sees the partly masked
graph and predicts :math:`\hat p(x_0|G_t)`; unmasked entries are carried over (SUBS, Sahoo et al.
2024), which the reverse step :meth:`GraphProcess.reverse` does by restricting :math:`\hat p` to
the x_0 that can produce :math:`G_t` (for absorbing transitions the average-of-posteriors step is
exactly MDLM's unmasking step).

**Bound** per graph in nats (Sahoo et al. 2024, Eq. 10; Shi et al. 2024, Eq. 5), with the
weight :func:`~discodiff.categorical.masked_process.elbo_weight`
:math:`w(t) = -\alpha_t'/(1-\alpha_t)`:

.. math::
    -\log p(n) + D_{KL}(q(G_1|G_0)\,\|\,p(G_1)) + \int_0^1 w(t)\,E_q\Big[\sum_{\text{masked nodes}}
    -\log\hat p(x_0^i|G_t) + \sum_{\text{masked pairs } i<j} -\log\hat p(e_0^{ij}|G_t)\Big]dt.

``loss`` draws one time per graph, stratified over the batch, and may weight the edge term by
``edge_weight`` (1 keeps the bound); ``nll`` averages ``nll_time_samples`` stratified times per
graph (an unbiased estimate of the bound) with ``edge_weight`` 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..base import METHODS, Batch, LossOutput, NLLOutput, drop_labels
from ..categorical.masked_process import elbo_weight
from ..config import component
from ..schedules import SCHEDULES, Schedule
from .method import GraphMethod, finite_or_raise
from .setup import build_graph_method
from .state import GraphState


@dataclass
class GraphMaskedConfig:
    """``method: {name: graph_mdlm, ...}``: continuous-time masked graph diffusion."""

    schedule: Schedule = component(SCHEDULES, {"name": "loglinear", "eps": 0.0})  # keep prob alpha_t
    edge_weight: float = 1.0  # weight of the edge cross-entropy in the training loss (1: the bound)
    time_conditioning: bool = False  # False: the net gets t = 0 (the exact p(x0|G_t) ignores t)
    cond_drop_prob: float = 0.0  # label dropout for classifier-free guidance
    nll_time_samples: int = 32  # stratified times per graph in nll
    sampler: Literal["ancestral"] = "ancestral"
    sample_steps: int = 100  # default number of sampling steps, uniform in t

    def __post_init__(self) -> None:
        if self.edge_weight <= 0 or self.nll_time_samples < 1 or self.sample_steps < 1:
            raise ValueError("need edge_weight > 0, nll_time_samples >= 1 and sample_steps >= 1")
        if not 0 <= self.cond_drop_prob < 1:
            raise ValueError(f"cond_drop_prob must be in [0, 1), got {self.cond_drop_prob}")


class GraphMasked(GraphMethod):
    """Masked graph diffusion; see the module docstring."""

    known_semantics = "exact"

    def __init__(self, net, process, node_counts, *, config: GraphMaskedConfig, num_classes: int = 0) -> None:
        super().__init__(net, process, node_counts, num_classes=num_classes)
        self.config, self.schedule = config, config.schedule

    def logits(self, x_t: GraphState, t: Tensor, cond: Tensor | None) -> GraphState:
        return super().logits(x_t, t if self.config.time_conditioning else torch.zeros_like(t), cond)

    def masked(self, x_t: GraphState) -> GraphState:
        """Bool state: which entries of ``G_t`` are [MASK]."""
        node_mask_id = self.process.node.mask_id if self.process.node is not None else -1
        return GraphState(x_t.nodes == node_mask_id, x_t.edges == self.process.edge.mask_id, x_t.node_mask)

    def diffusion_term(
        self, x0: GraphState, t: Tensor, u: dict[str, Tensor], cond: Tensor | None, edge_weight: float
    ) -> Tensor:
        r""":math:`w(t)` times the masked cross-entropy of one draw of :math:`G_t`: ``(B,)`` nats."""
        x_t = self.process.sample_marginal(x0, t, u)
        masked = self.masked(x_t)
        ce = self.process.cross_entropy(x0, self.denoise(x_t, t, cond), where=masked)
        total = ce.get("nodes", 0.0) + edge_weight * ce["edges"]
        count = sum(
            (getattr(masked, f) & self.process.entries(f, x0.node_mask)).flatten(1).sum(1) for f in ce
        )
        weight = elbo_weight(self.schedule, t, 0).to(total.dtype)
        return torch.where(count > 0, weight, 0.0) * total  # nothing masked: 0, even where w = inf

    @property
    def loss_label(self) -> str:
        edges = "" if self.config.edge_weight == 1.0 else f" (edges weighted {self.config.edge_weight:g})"
        return f"bound, nats per entry{edges}"

    def loss(self, batch: Batch) -> LossOutput:
        x0 = self.check_graphs(batch.x, "batch.x")
        cond = drop_labels(batch, self.config.cond_drop_prob)
        offset, total = batch.rows if batch.rows is not None else (0, batch.size)
        rows = torch.arange(offset, offset + batch.size, device=self.device, dtype=torch.float64)
        t = (rows + batch.rand(dtype=torch.float64)) / total  # stratified over the global batch
        term = self.diffusion_term(
            x0, t, self.batch_uniforms(batch, x0.max_nodes), cond, self.config.edge_weight
        )
        prior = sum(self.process.prior_kl(x0).values())
        entries = self.process.num_entries(x0.node_mask).to(torch.float64)
        bound = (self.node_count_nll(x0.node_mask) + prior + term.to(torch.float64)) / entries
        metrics = {"bound_nats_per_entry": bound.detach().mean()}
        return LossOutput(bound.mean().float(), bound.detach().float(), metrics)

    def nll(self, batch: Batch, *, estimator: str = "bound") -> NLLOutput:
        self.check_estimator(estimator)
        x0 = self.check_graphs(batch.x, "batch.x")
        k = self.config.nll_time_samples
        offset = batch.rand(dtype=torch.float64)
        with torch.no_grad():
            prior = sum(self.process.prior_kl(x0).values())
            diffusion = torch.zeros_like(prior)
            for j in range(k):
                u = self.batch_uniforms(batch, x0.max_nodes)
                diffusion += (
                    self.diffusion_term(x0, (j + offset) / k, u, batch.cond, 1.0).to(torch.float64) / k
                )
        count = self.node_count_nll(x0.node_mask)
        nll = finite_or_raise(count + prior + diffusion, "masked graph diffusion bound")
        terms = {"node_count": count, "prior": prior, "diffusion": diffusion}
        return NLLOutput(nll, self.process.num_entries(x0.node_mask).to(torch.float64), terms)


@METHODS.register("graph_mdlm", config=GraphMaskedConfig)
def build_graph_masked(config: GraphMaskedConfig, info, net_factory) -> GraphMasked:
    """Build from a graph data set's :class:`~discodiff.data.DataInfo` and a network factory."""
    return build_graph_method(GraphMasked, config, info, net_factory, transitions=("absorbing", "absorbing"))
