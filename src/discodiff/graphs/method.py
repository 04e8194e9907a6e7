r"""What the graph methods share: the x_0 denoiser, the node-count prior, ancestral sampling with
a drawn or given node count, and conditioning on a known subgraph.

A graph method models :math:`p(G) = p(n)\,p_\theta(G|n)`: the node count n comes from the training
split's distribution (``DataInfo.node_counts``), and the diffusion model generates node and edge
categories on n nodes. Its likelihood therefore adds :math:`-\log p(n)` to the diffusion bound.

The network is x_0-parameterized: ``net(G_t, t, cond)`` returns a ``GraphState`` of logits over
the data categories of every node and node pair; their softmax is :math:`\hat p(x_0|G_t)` entry by
entry, and a reverse step marginalizes it through the forward posterior
(:meth:`GraphProcess.reverse`).

**Sampling** (:meth:`GraphMethod.generate`): each sample's node count is drawn from
:math:`p(n)` with the request's generator, fixed by asking for the shape ``(N, n)``, or taken from
``known.node_mask``. Start from :math:`G_1 \sim p(G_1)`, then one reverse step per grid interval,
edges drawn for ``i < j`` and mirrored. **Known subgraph**: ``known`` is a ``GraphState`` whose
``node_mask`` sets the node set; ``known_mask`` is a bool ``GraphState`` marking the node and edge
entries that are given (``known_mask.edges`` symmetric; ``known_mask.node_mask`` is not read).
Given entries are re-imposed after every step: exactly for masked diffusion (they are carried over,
``known_semantics = "exact"``), noised to :math:`q(\cdot_s|x_0)` otherwise (``"replacement"``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..base import (
    NULL_LABEL,
    Batch,
    Method,
    SampleOutput,
    SampleRequest,
    SamplerInfo,
    check_known,
    sample_labels,
)
from ..categorical.guidance import combine_guidance, network_calls
from ..categorical.logspace import NEG_INF
from ..categorical.sampling import sample_inverse_cdf, uniform
from ..categorical.transitions import ReverseForm
from ..categorical.validation import check_logits
from ..errors import UsageError
from ..state import cat, checks_deferred, index, to_device
from ..utils import sampling_times
from .process import GraphProcess
from .state import GraphState, clean, edge_entries

TRAJECTORY_POINTS = 9
"""How many states a recorded trajectory keeps (evenly spaced in steps, ends included)."""


class GraphMethod(Method):
    """Shared machinery of the graph methods (module docstring).

    Args:
        net: ``net(G_t, t, cond) -> GraphState`` of logits ``(B, n, K_x)`` and ``(B, n, n, K_e)``.
        process: node and edge transitions.
        node_counts: ``(n_max + 1,)`` probabilities of each node count.
        num_classes: class labels (0: unconditional).
    """

    representation = "graph"
    samplers = ("ancestral",)
    nll_estimators = ("bound",)
    reverse_form: ReverseForm = "average"
    T: int = 0  # sampling grid: continuous time; a discrete-time subclass sets its timesteps

    def __init__(
        self, net: Callable, process: GraphProcess, node_counts: Sequence[float], *, num_classes: int
    ):
        super().__init__()
        self.net, self.process, self.num_classes = net, process, num_classes
        probs = torch.as_tensor(node_counts, dtype=torch.float64)
        if probs.dim() != 1 or len(probs) < 2 or (probs < 0).any() or probs[0] > 0 or probs.sum() <= 0:
            raise ValueError("node_counts must give probabilities of node counts 0 .. n_max, with none on 0")
        self.register_buffer("log_node_counts", torch.log(probs / probs.sum()), persistent=False)
        self.max_nodes = len(probs) - 1
        self.event_shape = (self.max_nodes, self.max_nodes)
        self.node_vocab = 1 if process.node is None else process.node.vocab_size
        self.edge_vocab = process.edge.vocab_size
        self.nfe = 0

    # ---- parameterization ----------------------------------------------------------------------

    def logits(self, x_t: GraphState, t: Tensor, cond: Tensor | None) -> GraphState:
        out = self.net(x_t, t.to(torch.float32), cond)
        B, n = x_t.node_mask.shape
        return GraphState(
            check_logits(out.nodes, expected=(B, n, self.node_vocab)),
            check_logits(out.edges, expected=(B, n, n, self.edge_vocab)),
            x_t.node_mask,
        )

    def denoise(self, x_t: GraphState, t: Tensor, cond: Tensor | None = None, *, guidance_scale: float = 1.0):
        r""":math:`\log\hat p(x_0|G_t)` per entry, a ``GraphState`` of log-probabilities; with
        ``guidance_scale`` w != 1, classifier-free guidance in log space per entry."""
        self.nfe += network_calls(guidance_scale)
        if guidance_scale == 1.0:
            out = self.logits(x_t, t, cond)
            return GraphState(out.nodes.log_softmax(-1), out.edges.log_softmax(-1), out.node_mask)
        if cond is None:
            raise UsageError("classifier-free guidance (guidance_scale != 1) needs class labels")
        both = self.logits(
            cat([x_t, x_t]), torch.cat([t, t]), torch.cat([cond, torch.full_like(cond, NULL_LABEL)])
        )
        B = x_t.num_graphs
        c, u = index(both, slice(0, B)), index(both, slice(B, 2 * B))
        fields = [
            combine_guidance(getattr(c, f).log_softmax(-1), getattr(u, f).log_softmax(-1), guidance_scale)
            for f in ("nodes", "edges")
        ]
        return GraphState(*fields, x_t.node_mask)

    @staticmethod
    def batch_uniforms(batch: Batch, n: int) -> dict[str, Tensor]:
        """Float64 uniforms for a forward draw of graphs padded to n nodes, from ``batch.rand``."""
        return {
            "nodes": batch.rand(n, 2, dtype=torch.float64),
            "edges": batch.rand(n, n, 2, dtype=torch.float64),
        }

    def node_count_nll(self, node_mask: Tensor) -> Tensor:
        r""":math:`-\log p(n)` of each graph's node count, ``(B,)`` float64 nats."""
        return -self.log_node_counts[node_mask.sum(-1)]

    # ---- checks ------------------------------------------------------------------------------

    def check_graphs(self, x: GraphState, what: str) -> GraphState:
        """Refuse a state that is not a batch of padded graphs of this model's categories."""
        if not isinstance(x, GraphState):
            raise UsageError(f"{what} must be a GraphState, got {type(x).__name__}")
        n = x.node_mask.shape[1]
        if n != self.max_nodes:
            raise UsageError(f"{what} is padded to {n} nodes; this model has n_max = {self.max_nodes}")
        if checks_deferred():  # the trainer's step: the data source built it, ids checked on the host
            return clean(GraphState(x.nodes.long(), x.edges.long(), x.node_mask))
        first = torch.arange(n, device=x.node_mask.device) < x.node_mask.sum(-1, keepdim=True)
        if not torch.equal(first, x.node_mask) or bool((x.node_mask.sum(-1) == 0).any()):
            raise UsageError(f"{what}.node_mask must mark the first k >= 1 nodes of each graph")
        for name, vocab in (("nodes", self.node_vocab), ("edges", self.edge_vocab)):
            values = getattr(x, name)
            if values.is_floating_point() or int(values.min()) < 0 or int(values.max()) >= vocab:
                raise UsageError(f"{what}.{name} must hold category ids 0 .. {vocab - 1}")
        if not torch.equal(x.edges, x.edges.transpose(1, 2)):
            raise UsageError(f"{what}.edges must be symmetric")
        return clean(GraphState(x.nodes.long(), x.edges.long(), x.node_mask))

    # ---- sampling ----------------------------------------------------------------------------

    def resolve_shape(self, num_or_shape: int | Sequence[int]) -> tuple[int, ...]:
        """``N`` or ``(N,)``: node counts drawn from p(n); ``(N, n)``: every sample has n nodes."""
        shape = (num_or_shape,) if isinstance(num_or_shape, int) else tuple(int(s) for s in num_or_shape)
        if len(shape) not in (1, 2) or shape[0] < 1:
            raise UsageError(f"graph samples take a shape (N,) or (N, num_nodes), got {shape}")
        if len(shape) == 2 and not 1 <= shape[1] <= self.max_nodes:
            raise UsageError(f"num_nodes must be in 1 .. {self.max_nodes} (n_max), got {shape[1]}")
        return shape

    def time_grid(self, steps: int) -> list[float]:
        """Sampling times from 1 down to 0, ``steps + 1`` points (on the grid i / T if T > 0)."""
        return sampling_times(steps, self.T)

    def sampler_info(self, name: str) -> SamplerInfo:
        self.check_sampler(name)
        return SamplerInfo(name, nfe_per_step=1.0, default_steps=self.config.sample_steps or 100)

    def _node_mask(self, request: SampleRequest, known: GraphState | None) -> Tensor:
        N, device = request.num, self.device
        if known is not None:
            counts = known.node_mask.sum(-1)
            if len(request.shape) == 2 and bool((counts != request.shape[1]).any()):
                raise UsageError("the sample shape's num_nodes disagrees with known.node_mask")
        elif len(request.shape) == 2:
            counts = torch.full((N,), request.shape[1], device=device)
        else:
            u = uniform((N,), generator=request.generator, device=device)
            counts = sample_inverse_cdf(self.log_node_counts, u)
        return torch.arange(self.max_nodes, device=device) < counts[:, None]

    def _known(self, request: SampleRequest) -> tuple[GraphState, GraphState] | None:
        pair = check_known(request.known, request.known_mask, request.shape)
        if pair is None:
            return None
        values, mask = pair
        values = self.check_graphs(values, "known")
        if not torch.equal(mask.edges, mask.edges.transpose(1, 2)):
            raise UsageError("known_mask.edges must be symmetric")
        pairs = edge_entries(values.node_mask, upper=False)
        if bool((mask.nodes & ~values.node_mask).any()) or bool((mask.edges & ~pairs).any()):
            raise UsageError("known_mask marks entries outside the known graph's nodes")
        return to_device(values, self.device), to_device(mask, self.device)

    def impose(self, x: GraphState, known, s: float, generator: torch.Generator | None) -> GraphState:
        """Put the known entries into ``x`` (noised to time s for ``"replacement"``)."""
        if known is None:
            return x
        values, mask = known
        if self.known_semantics == "replacement" and s > 0:
            values = self.process.sample_marginal(values, s, self.process.uniforms(x.node_mask, generator))
        nodes = torch.where(mask.nodes, values.nodes, x.nodes)
        return clean(GraphState(nodes, torch.where(mask.edges, values.edges, x.edges), x.node_mask))

    @staticmethod
    def pin_known(x: GraphState, known, log_probs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Point masses on the current values at known entries (they are re-imposed anyway; an
        absorbing chain at t = 1 gives an unmasked known entry probability 0, hence no posterior)."""
        if known is None:
            return log_probs
        out = {}
        for f, lp in log_probs.items():
            pinned = torch.full_like(lp, NEG_INF).scatter_(-1, getattr(x, f)[..., None], 0.0)
            out[f] = torch.where(getattr(known[1], f)[..., None], pinned, lp)
        return out

    def generate(self, request: SampleRequest) -> SampleOutput:
        """Ancestral sampling on :meth:`time_grid` (module docstring)."""
        gen = request.generator
        cond = sample_labels(
            request.cond, request.num, self.num_classes, self.device, guidance_scale=request.guidance_scale
        )
        nfe_before = self.nfe
        with torch.no_grad():
            known = self._known(request)
            node_mask = self._node_mask(request, None if known is None else known[0])
            grid = self.time_grid(request.steps)
            x = self.impose(self.process.sample_prior(node_mask, gen), known, grid[0], gen)
            keep = set(
                np.round(np.linspace(0, request.steps, min(TRAJECTORY_POINTS, request.steps + 1)))
                .astype(int)
                .tolist()
            )
            trajectory = [(grid[0], x)] if request.return_trajectory else []
            steps = list(itertools.pairwise(grid))
            for k, (t, s) in enumerate(
                tqdm(steps, desc=request.sampler, disable=not request.progress, leave=False)
            ):
                t_vec = torch.full((request.num,), t, dtype=torch.float64, device=self.device)
                log_p0 = self.denoise(x, t_vec, cond, guidance_scale=request.guidance_scale)
                log_probs = self.pin_known(
                    x,
                    known,
                    self.process.reverse(x, log_p0, torch.full_like(t_vec, s), t_vec, form=self.reverse_form),
                )
                x = self.impose(self.process.sample(x, log_probs, gen), known, s, gen)
                if request.return_trajectory and k + 1 in keep:
                    trajectory.append((s, x))
        return SampleOutput(x, trajectory, self.nfe - nfe_before)


def finite_or_raise(value: Tensor, what: str) -> Tensor:
    """``value`` if every entry is finite, else a ``FloatingPointError`` naming ``what``."""
    if not bool(torch.isfinite(value).all()):
        raise FloatingPointError(f"{what} is not finite")
    return value
