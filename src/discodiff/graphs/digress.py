r"""DiGress: discrete-time categorical diffusion on nodes and edges (Vignac et al. 2023).

Node and edge categories ("no edge" is edge category 0) each follow their own mixing transition
(``marginal``, DiGress's default, resamples from the training marginals; ``uniform``;
``absorbing``) on the T-step grid :math:`t_i = i/T` with one schedule (cosine by default; DiGress
builds its cosine on T + 2 points, PITFALLS, Graphs). The reverse step averages the forward
posteriors under :math:`\hat p(x_0|G_t)` (``reverse: average``; ``d3pm`` is Austin et al.'s form).

**Bound**, per graph in nats (D3PM's, Austin et al. 2021, Eq. 1, over the counted entries of
:mod:`.process`, plus the node count):

.. math::
    -\log p(n) + D_{KL}(q(G_1|G_0)\,\|\,p(G_1)) + \sum_{i=2}^{T} E_q\,D_{KL}(q(G_{t_{i-1}}|G_{t_i},
    G_0)\,\|\,p_\theta(G_{t_{i-1}}|G_{t_i})) - E_q\log p_\theta(G_0|G_{t_1}).

``nll`` sums all T steps (one draw of :math:`G_t` per step), or an unbiased stratified subset of
``nll_time_samples`` steps, each weighted T / k.

**Losses** (one grid time per example):

- ``ce`` (DiGress's training loss): :math:`\mathrm{CE}_X + \lambda\,\mathrm{CE}_E` with
  :math:`\lambda` = ``edge_weight`` = 5, the cross-entropies of :math:`\hat p(x_0|G_t)` averaged over
  the real nodes and over the real node pairs of the batch (no diagonal, no padding);
- ``vlb``: the bound's one-step estimate (prior + T times one step's KL) per entry;
- ``hybrid``: ``vlb`` plus ``hybrid_lambda`` times the ``ce`` loss (Austin et al. 2021, Eq. 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..base import METHODS, Batch, LossOutput, NLLOutput, SamplerInfo, drop_labels
from ..categorical.transitions import ReverseForm
from ..config import component
from ..schedules import SCHEDULES, Schedule
from .method import GraphMethod, finite_or_raise
from .setup import TransitionName, build_graph_method
from .state import GraphState


@dataclass
class DiGressConfig:
    """``method: {name: digress, ...}``: discrete-time graph diffusion (module docstring)."""

    node_transition: TransitionName = "marginal"
    edge_transition: TransitionName = "marginal"
    schedule: Schedule = component(SCHEDULES, "cosine")  # keep probability alpha_bar(t)
    timesteps: int = 500  # T: the grid i / T (DiGress uses 500 for planar/SBM, 1000 for QM9)
    loss: Literal["ce", "vlb", "hybrid"] = "ce"
    edge_weight: float = 5.0  # lambda in CE_X + lambda CE_E (DiGress)
    hybrid_lambda: float = 0.01  # weight of the ce loss in the hybrid loss
    reverse: ReverseForm = "average"
    cond_drop_prob: float = 0.0  # label dropout for classifier-free guidance
    sampler: Literal["ancestral"] = "ancestral"
    sample_steps: int | None = None  # default steps (None: T); fewer skip with q(G_s|G_t, G_0)
    nll_time_samples: int = 0  # steps per graph in nll: 0 sums all T exactly, k > 0 a stratified subset

    def __post_init__(self) -> None:
        if self.timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, got {self.timesteps}")
        if self.edge_weight <= 0 or self.hybrid_lambda < 0:
            raise ValueError("need edge_weight > 0 and hybrid_lambda >= 0")
        if not 0 <= self.cond_drop_prob < 1:
            raise ValueError(f"cond_drop_prob must be in [0, 1), got {self.cond_drop_prob}")
        if self.sample_steps is not None and not 1 <= self.sample_steps <= self.timesteps:
            raise ValueError(
                f"sample_steps must be in 1 .. timesteps={self.timesteps}, got {self.sample_steps}"
            )
        if self.nll_time_samples < 0:
            raise ValueError(f"nll_time_samples must be >= 0, got {self.nll_time_samples}")


class DiGress(GraphMethod):
    """Discrete-time graph diffusion; see the module docstring."""

    known_semantics = "replacement"

    def __init__(self, net, process, node_counts, *, config: DiGressConfig, num_classes: int = 0) -> None:
        super().__init__(net, process, node_counts, num_classes=num_classes)
        self.config, self.T, self.reverse_form = config, config.timesteps, config.reverse

    @property
    def loss_label(self) -> str:
        w = f"{self.config.edge_weight:g}"
        ce = f"cross-entropy, nats per node + {w} x per node pair"
        if self.config.loss == "ce":
            return ce
        bound = "bound, nats per entry"
        return bound if self.config.loss == "vlb" else f"{bound} + {self.config.hybrid_lambda:g} x ({ce})"

    def sampler_info(self, name: str) -> SamplerInfo:
        self.check_sampler(name)
        return SamplerInfo(
            name,
            nfe_per_step=1.0,
            default_steps=self.config.sample_steps or self.T,
            max_steps=self.T,
            limit="the model's timesteps",
        )

    def _noise(self, x0: GraphState, t: torch.Tensor, batch: Batch) -> GraphState:
        return self.process.sample_marginal(x0, t, self.batch_uniforms(batch, x0.max_nodes))

    def loss(self, batch: Batch) -> LossOutput:
        x0 = self.check_graphs(batch.x, "batch.x")
        cond = drop_labels(batch, self.config.cond_drop_prob)
        i = torch.clamp(torch.floor(batch.rand(dtype=torch.float64) * self.T), max=self.T - 1) + 1
        t, s = i / self.T, (i - 1) / self.T
        x_t = self._noise(x0, t, batch)
        log_p0 = self.denoise(x_t, t, cond)
        ce = self.process.cross_entropy(x0, log_p0)
        nodes = x0.node_mask.sum(-1).to(torch.float64)
        pairs = (nodes * (nodes - 1) / 2).clamp(min=1)
        ce_x = ce.get("nodes", torch.zeros_like(nodes)).to(torch.float64)
        ce_e = ce["edges"].to(torch.float64)
        per_graph_ce = ce_x / nodes + self.config.edge_weight * ce_e / pairs
        batch_ce = ce_x.sum() / nodes.sum() + self.config.edge_weight * ce_e.sum() / pairs.sum()
        entries = self.process.num_entries(x0.node_mask).to(torch.float64)
        metrics = {
            "ce_nodes": ce_x.detach().sum() / nodes.sum(),
            "ce_edges": ce_e.detach().sum() / pairs.sum(),
        }
        if self.config.loss == "ce":
            return LossOutput(batch_ce.float(), per_graph_ce.detach().float(), metrics)
        with torch.no_grad():
            prior = sum(self.process.prior_kl(x0).values())
        step = sum(self.process.step_kl(x0, x_t, s, t, log_p0, form=self.reverse_form).values())
        bound = (self.node_count_nll(x0.node_mask) + prior + self.T * step.to(torch.float64)) / entries
        per_graph = bound + (self.config.hybrid_lambda * per_graph_ce if self.config.loss == "hybrid" else 0)
        metrics["bound_nats_per_entry"] = bound.detach().mean()
        return LossOutput(per_graph.mean().float(), per_graph.detach().float(), metrics)

    def nll(self, batch: Batch, *, estimator: str = "bound") -> NLLOutput:
        self.check_estimator(estimator)
        x0 = self.check_graphs(batch.x, "batch.x")
        B, T, k = x0.num_graphs, self.T, self.config.nll_time_samples
        if k == 0 or k >= T:
            steps, weight = (
                [
                    torch.full((B,), float(i), dtype=torch.float64, device=self.device)
                    for i in range(1, T + 1)
                ],
                1.0,
            )
        else:  # stratified: step j of k is uniform on its stratum of the grid
            v = batch.rand(dtype=torch.float64)
            steps = [torch.floor((j + v) * T / k) + 1 for j in range(k)]
            weight = T / k
        with torch.no_grad():
            prior = sum(self.process.prior_kl(x0).values())
            diffusion, reconstruction = torch.zeros_like(prior), torch.zeros_like(prior)
            for i in steps:
                t, s = i / T, (i - 1) / T
                x_t = self._noise(x0, t, batch)
                log_p0 = self.denoise(x_t, t, batch.cond)
                term = sum(self.process.step_kl(x0, x_t, s, t, log_p0, form=self.reverse_form).values())
                term = weight * term.to(torch.float64)
                first = i == 1
                reconstruction = reconstruction + torch.where(first, term, 0.0)
                diffusion = diffusion + torch.where(first, 0.0, term)
        count = self.node_count_nll(x0.node_mask)
        nll = finite_or_raise(count + prior + diffusion + reconstruction, "DiGress bound")
        terms = {
            "node_count": count,
            "prior": prior,
            "diffusion": diffusion,
            "reconstruction": reconstruction,
        }
        return NLLOutput(nll, self.process.num_entries(x0.node_mask).to(torch.float64), terms)


@METHODS.register("digress", config=DiGressConfig)
def build_digress(config: DiGressConfig, info, net_factory) -> DiGress:
    """Build from a graph data set's :class:`~discodiff.data.DataInfo` and a network factory."""
    transitions = (config.node_transition, config.edge_transition)
    return build_graph_method(DiGress, config, info, net_factory, transitions=transitions)
