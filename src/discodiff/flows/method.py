r"""Discrete flows (Tran, Vafa, Agrawal, Dinh & Poole 2019): invertible maps of categorical data.

A stack of bijections :math:`f = f_n \circ \dots \circ f_1` of :math:`\{0..K-1\}^L` (coupling and
autoregressive location-scale layers with permutations between them, :mod:`.layers`) carries the
data to a factorized categorical base :math:`p_{base}(z) = \prod_d \mathrm{Cat}(z_d;
\mathrm{softmax}(\beta_d))` with learned logits :math:`\beta` ``(L, K)``. A bijection of a finite
set needs no Jacobian (Tran et al. 2019, Eq. 2):

.. math::
    \log p(x) = \log p_{base}(f(x)) = \sum_d \log\mathrm{softmax}(\beta_d)[f(x)_d],

so ``nll`` is exact (estimators ``exact`` and ``bound``, which give the same value) and ``loss``
is that NLL per token. The forward values of training are the argmax choices of inference, so
the training loss *is* the model's exact NLL; gradients flow through the straight-through
softmax at temperature ``temperature`` (Tran et al. use 0.1 on their toy data,
:mod:`.modular`). ``sample`` draws :math:`z \sim p_{base}` and returns :math:`f^{-1}(z)`:
deterministic given the base draw.

Token data of any event shape is modelled in raster order as ``prod(event_shape)`` positions.
Class labels, if any, condition every layer's network; there is no guidance (a flow has no
score to guide) and no infilling (an invertible map cannot be conditioned on known values
without a search).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from ..base import (
    METHODS,
    Batch,
    EstimatorInfo,
    LossOutput,
    Method,
    NLLOutput,
    SampleOutput,
    SampleRequest,
    SamplerInfo,
    sample_labels,
)
from ..categorical.sampling import sample_categorical
from ..categorical.validation import check_tokens
from ..errors import ConfigError, UsageError
from ..utils import LN2
from .layers import AutoregressiveLayer, CouplingLayer, FlowLayer, LocationScale, Permutation
from .modular import ids_of, one_hot

PERMUTATION_SEED = 20_190_524
"""Seed of the fixed random permutations (``permutation: random``), offset by the layer index:
the same permutations for every run, with no state to save."""

LayerKind = Literal["coupling", "autoregressive"]


@dataclass
class DiscreteFlowConfig:
    """``method: {name: discrete_flow, ...}``."""

    layers: list[LayerKind] = field(default_factory=lambda: ["coupling", "coupling"])  # data -> latent
    permutation: Literal["none", "reverse", "random"] = "none"  # reorder positions between layers
    conditioning: Literal["latent", "data"] = "latent"  # autoregressive layers: mu_d(z_<d) or mu_d(x_<d)
    scale: bool = True  # location-scale (scales restricted to units mod K); false: location only
    temperature: float = 0.1  # straight-through softmax temperature (Tran et al.'s toy: 0.1)

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("layers must list at least one layer (coupling or autoregressive)")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


class DiscreteFlow(Method):
    """A stack of discrete flow layers over a factorized base; see the module docstring.

    Args:
        layers: the bijections, applied in order from data to latent.
        vocab_size: K.
        event_shape: shape of one example (modelled in raster order).
        num_classes: number of class labels (0: unconditional).
    """

    samplers = ("invert",)
    nll_estimators = ("exact", "bound")  # exact; as its own (tight) bound it answers both
    no_weight_decay = True  # the base logits (its own parameter) are log-probabilities, not a matrix
    representation = "tokens"
    known_semantics = "none"

    def __init__(
        self,
        layers: Sequence[FlowLayer],
        *,
        vocab_size: int,
        event_shape: Sequence[int],
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.vocab_size = vocab_size
        self.event_shape = tuple(event_shape)
        self.length = math.prod(self.event_shape)
        self.num_classes = num_classes
        self.base_logits = nn.Parameter(torch.zeros(self.length, vocab_size))

    # ---- the bijection -------------------------------------------------------------------------

    def to_latent(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """:math:`f(x)`: ``(B, L, K)`` one-hots (data side) -> latent one-hots."""
        for layer in self.layers:
            x = layer.to_latent(x, cond)
        return x

    def to_data(self, z: Tensor, cond: Tensor | None = None, *, trajectory: list | None = None) -> Tensor:
        """:math:`f^{-1}(z)`; with ``trajectory`` a list, append ``(t, ids)`` after each layer
        (t runs from 1, the base draw, to 0, the data)."""
        n = len(self.layers)
        for i, layer in enumerate(reversed(self.layers)):
            z = layer.to_data(z, cond)
            if trajectory is not None:
                trajectory.append((1.0 - (i + 1) / n, ids_of(z).reshape(-1, *self.event_shape)))
        return z

    def log_base(self, dtype: torch.dtype = torch.float32) -> Tensor:
        r""":math:`\log p_{base}` per position, ``(L, K)``."""
        return torch.log_softmax(self.base_logits.to(dtype), dim=-1)

    def token_nll(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        r""":math:`-\log p_{base}(f(x)_d)` per position, ``(B, L)``, with straight-through gradients."""
        z = self.to_latent(one_hot(self._flatten(x), self.vocab_size), cond)
        return -(z * self.log_base()).sum(dim=-1)

    # ---- the interface -------------------------------------------------------------------------

    loss_label = "exact NLL, nats per token"

    def loss(self, batch: Batch) -> LossOutput:
        """Exact NLL in nats per token (straight-through gradients)."""
        self._check_labels(batch.cond)
        per_token = self.token_nll(batch.x, batch.cond)
        loss = per_token.mean()
        per_example = per_token.detach().mean(dim=1)
        return LossOutput(loss, per_example, {"bits_per_token": loss.detach() / LN2})

    def nll(self, batch: Batch, *, estimator: str = "exact") -> NLLOutput:
        r"""Exact :math:`-\log p(x) = -\log p_{base}(f(x))`, ``(B,)`` float64 nats."""
        self.check_estimator(estimator)
        self._check_labels(batch.cond)
        with torch.no_grad():
            z = ids_of(self.to_latent(one_hot(self._flatten(batch.x), self.vocab_size), batch.cond))
            log_p = self.log_base(torch.float64).gather(-1, z.T).T  # (B, L)
        nll = -log_p.sum(dim=1)
        return NLLOutput(nll, torch.full_like(nll, float(self.length)))

    def sampler_info(self, name: str) -> SamplerInfo:
        self.check_sampler(name)
        calls = sum(layer.calls("to_data", self.length) for layer in self.layers)
        return SamplerInfo(
            name,
            nfe_per_step=float(calls),
            default_steps=1,
            min_steps=1,
            max_steps=1,
            deterministic=True,
            limit="one pass through the layers",
        )

    def estimator_info(self, name: str) -> EstimatorInfo:
        self.check_estimator(name)
        return EstimatorInfo(name, exact=True, monte_carlo=False)

    def networks(self) -> dict[str, nn.Module]:
        return {f"layer{i}": layer.net for i, layer in enumerate(self.layers) if hasattr(layer, "net")}

    def generate(self, request: SampleRequest) -> SampleOutput:
        """``z ~ p_base``, returned as :math:`f^{-1}(z)` (deterministic given z)."""
        if request.guidance_scale != 1.0:
            raise UsageError("discrete flows have no classifier-free guidance: guidance_scale must be 1")
        if request.known is not None or request.known_mask is not None:
            raise UsageError("discrete flows cannot condition on known values (no infilling / inpainting)")
        shape, n = request.shape, request.num
        if tuple(shape[1:]) != self.event_shape:
            raise UsageError(
                f"a discrete flow samples its training shape {self.event_shape}, got {shape[1:]}"
            )
        if request.cond is None and self.num_classes > 0:
            raise UsageError("this model is class-conditional: sample needs labels (cond)")
        labels = sample_labels(request.cond, n, self.num_classes, self.device)
        with torch.no_grad():
            log_base = self.log_base().expand(n, *self.log_base().shape)
            z = one_hot(sample_categorical(log_base, generator=request.generator), self.vocab_size)
            trajectory = [(1.0, ids_of(z).reshape(shape))] if request.return_trajectory else None
            x = ids_of(self.to_data(z, labels, trajectory=trajectory)).reshape(shape)
        nfe = sum(layer.calls("to_data", self.length) for layer in self.layers)
        return SampleOutput(x, trajectory or [], nfe)

    # ---- helpers -------------------------------------------------------------------------------

    def _flatten(self, x: Tensor) -> Tensor:
        x = check_tokens(x, num_ids=self.vocab_size, event_shape=self.event_shape, what="batch.x")
        return x.reshape(x.shape[0], self.length)

    def _check_labels(self, cond: Tensor | None) -> None:
        if cond is not None and self.num_classes == 0:
            raise UsageError("this model is unconditional: the batch must not carry labels")
        if cond is None and self.num_classes > 0:
            raise UsageError("this model is class-conditional: the batch needs labels")


def build_layers(
    config: DiscreteFlowConfig, length: int, vocab_size: int, net_for: Callable
) -> list[FlowLayer]:
    """The layer stack of ``config``: ``net_for(causal, out_channels)`` makes each layer's network.

    The k-th coupling layer transforms the positions with ``(d + k)`` odd, so consecutive
    coupling layers transform complementary halves; permutations go between layers.
    """
    layers: list[FlowLayer] = []
    couplings = 0
    for i, kind in enumerate(config.layers):
        if i > 0 and config.permutation != "none":
            if config.permutation == "reverse":
                perm = torch.arange(length - 1, -1, -1)
            else:
                perm = torch.randperm(length, generator=torch.Generator().manual_seed(PERMUTATION_SEED + i))
            layers.append(Permutation(perm))
        transform = LocationScale(vocab_size, config.temperature, scale=config.scale)
        if kind == "coupling":
            if length < 2:
                raise ConfigError("coupling layers need at least 2 positions per example")
            mask = (torch.arange(length) + couplings) % 2 == 1
            layers.append(CouplingLayer(net_for(False, transform.out_channels), transform, mask))
            couplings += 1
        else:
            net = net_for(True, transform.out_channels)
            layers.append(AutoregressiveLayer(net, transform, config.conditioning))
    return layers


@METHODS.register("discrete_flow", config=DiscreteFlowConfig)
def build_discrete_flow(config: DiscreteFlowConfig, info, net_factory) -> DiscreteFlow:
    """Build from a token data set's :class:`~discodiff.data.DataInfo` and a network factory."""
    from ..nets import NetSpec

    if info.kind != "tokens" or info.vocab_size is None:
        raise ConfigError("method 'discrete_flow' models token data (DataInfo.kind == 'tokens')")
    length, K = math.prod(info.event_shape), info.vocab_size

    def net_for(causal: bool, out_channels: int):
        spec = NetSpec(
            (length, K + 1), out_channels, num_classes=info.num_classes, causal=causal, one_hot_inputs=True
        )
        return net_factory(spec)

    layers = build_layers(config, length, K, net_for)
    return DiscreteFlow(layers, vocab_size=K, event_shape=info.event_shape, num_classes=info.num_classes)
