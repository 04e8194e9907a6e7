r"""The autoregressive baseline: a causal network trained by next-token cross-entropy, behind the
same ``loss / nll / sample`` interface as every diffusion method.

The model factorizes by the chain rule,
:math:`p_\theta(x) = \prod_{i=0}^{L-1} p_\theta(x_i \mid x_{<i})`, so its likelihood is exact:
:math:`-\log p_\theta(x) = \sum_i \mathrm{CE}_i` (nats per sequence).

**Start position.** The network reads the sequence shifted right by one behind a start id:
input :math:`(\mathrm{BOS}, x_0, \dots, x_{L-2})`, targets :math:`(x_0, \dots, x_{L-1})`.
``BOS = vocab_size`` is an input-only id (``NetSpec.input_vocab = V + 1``,
``out_channels = V``), so the first token is predicted from a learned start embedding at
position 0 and an L-token example needs a context of exactly L positions.

Token data of any event shape (an image of categories, say) is modelled in row-major (raster)
order: the network sees sequences of ``prod(event_shape)`` tokens.

**Sampling** is ancestral, left to right, one network call per token, through a KV cache
(``kv_cache: true``) or by re-running the network on the whole prefix (``kv_cache: false``; the
same draws, for testing). Known tokens (``known`` / ``known_mask``) are forced at their positions;
the model conditions on the past only, so a known token later in the sequence is imposed but not
anticipated. Classifier-free guidance mixes log-probabilities,
:math:`\log\tilde p = \log p_\emptyset + w(\log p_c - \log p_\emptyset)`, renormalized (Ho & Salimans
2022, Eq. 6, applied to next-token log-probabilities as in Sanchez et al. 2023); w = 1 is the
conditional model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import (
    METHODS,
    Batch,
    EstimatorInfo,
    LossOutput,
    Method,
    NLLOutput,
    SampleOutput,
    SampleRequest,
    SamplerInfo,
    check_known,
    drop_labels,
    sample_labels,
)
from .categorical.guidance import combine_guidance
from .categorical.logspace import log_normalize
from .categorical.sampling import sample_categorical, sharpen
from .data.base import DataInfo
from .errors import ConfigError
from .guidance import with_null_labels
from .nets.base import NetSpec
from .progress import track
from .state import check_id_range
from .utils import LN2


@dataclass
class ARConfig:
    """``method: {name: ar}``: the autoregressive baseline."""

    temperature: float = 1.0  # sampling temperature (0: greedy argmax)
    top_p: float = 1.0  # nucleus sampling mass in (0, 1]; 1 = the full distribution
    kv_cache: bool = True  # incremental decoding; false recomputes the prefix at every token
    cond_drop_prob: float = 0.0  # label dropout for classifier-free guidance

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.cond_drop_prob < 1:
            raise ValueError(f"cond_drop_prob must be in [0, 1), got {self.cond_drop_prob}")


class Autoregressive(Method):
    """Causal network + next-token cross-entropy; see the module docstring."""

    samplers = ("ancestral",)
    nll_estimators = ("bound", "exact")  # the exact NLL is its own (tight) bound: both give it
    representation = "tokens"
    known_semantics = "prefix"
    loss_label = "cross-entropy, nats per token"

    def __init__(
        self,
        net: Callable,
        config: ARConfig,
        *,
        vocab_size: int,
        event_shape: Sequence[int],
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        if config.kv_cache and not hasattr(net, "init_cache"):
            raise ConfigError(
                "kv_cache needs a network with incremental decoding (net 'transformer'); "
                "set method.kv_cache: false for other networks"
            )
        self.net = net
        self.config = config
        self.vocab_size = vocab_size
        self.bos = vocab_size
        self.event_shape = tuple(event_shape)
        self.length = math.prod(self.event_shape)
        self.num_classes = num_classes

    def shifted_input(self, x: Tensor) -> Tensor:
        """``(BOS, x_0, ..., x_{L-2})``: the network input predicting ``x`` (B, L) long."""
        bos = torch.full_like(x[:, :1], self.bos)
        return torch.cat([bos, x[:, :-1]], dim=1)

    def token_nll(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        r"""Per-token :math:`-\log p_\theta(x_i \mid x_{<i})` (B, L) float32 nats, for ``x``
        (B, *event_shape) long flattened in raster order."""
        x = self._check_tokens(x)
        t = torch.zeros(x.shape[0], device=x.device)  # an AR model sees clean data: t = 0
        logits = self.net(self.shifted_input(x), t, cond)  # (B, L, V)
        per_token = F.cross_entropy(logits.reshape(-1, self.vocab_size), x.reshape(-1), reduction="none")
        return per_token.float().view(x.shape)

    def loss(self, batch: Batch) -> LossOutput:
        """Mean next-token cross-entropy in nats per token."""
        self._check_labels(batch.cond)
        cond = drop_labels(batch, self.config.cond_drop_prob)
        per_token = self.token_nll(batch.x, cond)  # (B, L)
        loss = per_token.mean()
        per_example = per_token.detach().mean(dim=1)
        return LossOutput(loss, per_example, {"bits_per_token": loss.detach() / LN2})

    def nll(self, batch: Batch, *, estimator: str = "bound") -> NLLOutput:
        r"""Exact :math:`-\log p_\theta(x) = \sum_i \mathrm{CE}_i` (B,) float64 nats; ``num_dims``
        is the number of tokens."""
        self.check_estimator(estimator)
        self._check_labels(batch.cond)
        with torch.no_grad():
            nll = self.token_nll(batch.x, batch.cond).double().sum(dim=1)
        num_dims = torch.full_like(nll, float(self.length))
        return NLLOutput(nll, num_dims)

    def sampler_info(self, name: str) -> SamplerInfo:
        self.check_sampler(name)
        return SamplerInfo(
            name,
            nfe_per_step=1.0,
            default_steps=self.length,
            min_steps=self.length,
            max_steps=self.length,
            deterministic=self.config.temperature == 0,
            limit="one step per token",
        )

    def estimator_info(self, name: str) -> EstimatorInfo:
        self.check_estimator(name)
        return EstimatorInfo(name, exact=True, monte_carlo=False)

    def generate(self, request: SampleRequest) -> SampleOutput:
        """Ancestral sampling, one token per network call. Left-to-right decoding has no
        noise-to-data trajectory: the returned one is empty."""
        shape, guidance_scale = request.shape, request.guidance_scale
        device = self.device
        labels = sample_labels(
            request.cond, shape[0], self.num_classes, device, guidance_scale=guidance_scale
        )
        known_pair = check_known(request.known, request.known_mask, shape)
        if known_pair is not None:
            given, mask = known_pair[0].to(device), known_pair[1].to(device)
            given = self._check_tokens(torch.where(mask, given, 0))  # (N, L) raster order
            known_pair = (given, mask.reshape(shape[0], -1))
        with torch.no_grad():
            x = self._generate(
                shape[0], labels, guidance_scale, known_pair, request.generator, request.progress
            )
        guided = labels is not None and guidance_scale != 1.0
        return SampleOutput(x.view(shape), nfe=self.length * (2 if guided else 1))

    # ---- helpers -------------------------------------------------------------------------------

    def _generate(
        self,
        n: int,
        labels: Tensor | None,
        guidance_scale: float,
        known: tuple[Tensor, Tensor] | None,
        generator: torch.Generator | None,
        progress: bool,
    ) -> Tensor:
        """Left-to-right decoding of ``n`` sequences: (n, L) long."""
        guided = labels is not None and guidance_scale != 1.0
        rows = 2 * n if guided else n  # guidance: conditional rows, then the same rows unconditional
        if guided:
            labels = with_null_labels(labels)
        x = torch.zeros(n, self.length, dtype=torch.long, device=self.device)
        cache = self.net.init_cache(self.length) if self.config.kv_cache else None
        t = torch.zeros(rows, device=self.device)
        sharpened = self.config.temperature != 1.0 or self.config.top_p != 1.0
        invalid = torch.zeros((), dtype=torch.bool, device=self.device)  # checked once, at the end
        newest = torch.full((rows, 1), self.bos, dtype=torch.long, device=self.device)
        for i in track(range(self.length), desc="ar", enabled=progress):
            if cache is not None:  # feed only the newest input token
                logits = self.net(newest, t, labels, cache=cache)[:, -1]  # (rows, V)
            else:  # feed the whole prefix (BOS, x_0, ..., x_{i-1})
                prefix = self.shifted_input(x[:, : i + 1])
                logits = self.net(prefix.repeat(2, 1) if guided else prefix, t, labels)[:, -1]
            invalid |= ~torch.isfinite(logits.amax(dim=-1)).all()  # NaN, +inf or no positive mass
            log_p = logits  # Gumbel-max needs no normalization
            if guided:
                log_c, log_u = torch.log_softmax(logits, dim=-1).chunk(2)
                log_p = combine_guidance(log_c, log_u, guidance_scale)
            if sharpened:
                c = self.config
                log_p = sharpen(log_normalize(log_p.double()), temperature=c.temperature, top_p=c.top_p)
            token = sample_categorical(log_p, generator=generator, check=False)
            if known is not None:
                token = torch.where(known[1][:, i], known[0][:, i], token)
            x[:, i] = token
            newest = token.repeat(2)[:, None] if guided else token[:, None]
        if bool(invalid):
            raise FloatingPointError("the network returned NaN or +inf logits (or a -inf row) while sampling")
        return x

    def _check_labels(self, cond: Tensor | None) -> None:
        if cond is not None and self.num_classes == 0:
            raise ValueError("this model is unconditional: the batch must not carry labels")

    def _check_tokens(self, x: Tensor) -> Tensor:
        """``x`` (B, *event_shape) long with ids in [0, V) -> (B, L) raster order."""
        if x.dtype != torch.long or tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(
                f"expected long tokens of shape (B, {', '.join(map(str, self.event_shape))}), "
                f"got {x.dtype} {tuple(x.shape)}"
            )
        check_id_range(x, self.vocab_size, "the token sequence")  # one host synchronization
        return x.reshape(x.shape[0], -1)


@METHODS.register("ar", config=ARConfig)
def build_ar(config: ARConfig, info: DataInfo, net_factory: Callable[[NetSpec], Callable]) -> Autoregressive:
    """Build from a token data set's :class:`~discodiff.data.DataInfo` and a network factory."""
    if info.kind != "tokens" or info.vocab_size is None:
        raise ConfigError("method 'ar' models token data; this data set is continuous")
    length = math.prod(info.event_shape)
    spec = NetSpec(
        (length,), info.vocab_size, num_classes=info.num_classes, input_vocab=info.vocab_size + 1, causal=True
    )
    return Autoregressive(
        net_factory(spec),
        config,
        vocab_size=info.vocab_size,
        event_shape=info.event_shape,
        num_classes=info.num_classes,
    )
