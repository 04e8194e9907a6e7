r"""Masked (absorbing-state) diffusion: MDLM / MD4, in continuous time or with a finite T.

The forward process is the absorbing transition: each token is kept with probability
:math:`\alpha_t = e^{-(\bar\sigma(t) - \bar\sigma(0))}` and is [MASK] (id K) otherwise,
independently (:class:`~discodiff.categorical.mixing.AbsorbingTransition`; Austin et al. 2021,
Sec. 3.2). The network reads :math:`x_t` (K + 1 input ids) and returns K logits per token.

**SUBS parameterization** (Sahoo et al. 2024, MDLM, Sec. 3.2): the model never predicts [MASK]
(there is no mask logit, i.e. it is :math:`-\infty`), and an unmasked token is carried over,
:math:`\hat p(x_0^i|x_t) = \delta_{x_t^i}` where :math:`x_t^i \ne` [MASK] (:meth:`MaskedDiffusion.denoise`).

**Bound** (per example, in nats), :math:`\mathcal L = \mathrm{KL}(q(x_1|x_0)\,\|\,p(x_1)) +
\mathbb E_{t \sim U}\big[w(t)\,\mathbb E_{q(x_t|x_0)} \sum_{i:\,x_t^i = \mathrm{mask}}
-\log\hat p_\theta(x_0^i|x_t)\big]` with

- continuous time (``timesteps: 0``; Sahoo et al. 2024, Eq. 10; Shi et al. 2024, MD4, Eq. 5),
  :math:`w(t) = \frac{-\alpha_t'}{1-\alpha_t}
  = \frac{\bar\sigma'(t)}{\mathrm{expm1}(\bar\sigma(t)-\bar\sigma(0))}`,
  :math:`t \sim U[0, 1)`;
- T steps (Shi et al. 2024, Eq. 4 with :math:`s = t - 1/T`), :math:`t` uniform on the grid
  :math:`\{1/T, \dots, 1\}` and :math:`w(t) = T\,\frac{\alpha_s-\alpha_t}{1-\alpha_t} =
  T\,\frac{\mathrm{expm1}(\bar\sigma(t)-\bar\sigma(s))}{\mathrm{expm1}(\bar\sigma(t)-\bar\sigma(0))}`,
  which at :math:`t = 1/T` is the reconstruction term :math:`-\log\hat p(x_0|x_{1/T})` on masked
  tokens; this is D3PM's bound for the absorbing transition, term by term.

:func:`elbo_weight` implements both. The prior :math:`p(x_1)` is the transition's matching prior
(:meth:`Transition.log_prior`): all-[MASK] when :math:`\alpha_1 = 0`; if the schedule keeps
:math:`\alpha_1 > 0` it puts :math:`\alpha_1/K` on each data id and the prior term is
:math:`L\,\alpha_1\log K` instead of infinite (PITFALLS, "Absorbing prior"). No reconstruction
term remains in continuous time: :math:`\alpha_0 = 1`.

``loss`` draws one t per example, stratified over the (global) batch; ``nll`` averages
``nll_time_samples`` stratified times per example, an unbiased estimate of the bound for each
example (see :meth:`MaskedDiffusion.nll`). Samplers are in :mod:`.decoding`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..base import (
    METHODS,
    Batch,
    LossOutput,
    Method,
    NLLOutput,
    SampleOutput,
    SampleRequest,
    SamplerInfo,
    drop_labels,
    sample_labels,
)
from ..config import component
from ..errors import ConfigError, UsageError
from ..schedules import SCHEDULES, Schedule
from ..utils import sampling_times
from . import decoding
from .guidance import guided_log_probs
from .logspace import NEG_INF
from .masked_process import elbo_weight
from .mixing import AbsorbingTransition
from .validation import check_known_tokens, check_logits, check_tokens


@dataclass
class MaskedConfig:
    """``method: {name: mdlm, ...}``: masked (absorbing) diffusion over token data."""

    schedule: Schedule = component(SCHEDULES, {"name": "loglinear", "eps": 0.0})  # keep prob alpha_t
    timesteps: int = 0  # 0: continuous time (MDLM); T > 0: MD4's T-step bound on the grid i / T
    time_conditioning: bool = False  # False: the net gets t = 0 (the exact p(x0|x_t) ignores t)
    cond_drop_prob: float = 0.0  # label dropout for classifier-free guidance
    nll_time_samples: int = 32  # times per example in nll (T steps: >= T sums every step)
    sampler: Literal["ancestral", "caching", "argmax", "confidence"] = "caching"  # default sampler
    sample_steps: int | None = None  # default steps (None: T, or the sequence length in continuous time)
    block_size: int | None = None  # semi-AR: new tokens per window beyond the training length (None: L/2)
    temperature: float = 1.0  # applied to p(x0|x_t) when sampling; 0 = argmax tokens
    top_p: float = 1.0  # nucleus filtering of p(x0|x_t) when sampling

    def __post_init__(self) -> None:
        if self.timesteps < 0:
            raise ValueError(
                f"timesteps must be 0 (continuous time) or a number of steps >= 1, got {self.timesteps}"
            )
        if not 0 <= self.cond_drop_prob < 1:
            raise ValueError(f"cond_drop_prob must be in [0, 1), got {self.cond_drop_prob}")
        if self.nll_time_samples < 1:
            raise ValueError(f"nll_time_samples must be >= 1, got {self.nll_time_samples}")
        if self.sample_steps is not None and self.sample_steps < 1:
            raise ValueError(f"sample_steps must be >= 1 or null, got {self.sample_steps}")
        if self.timesteps and self.sample_steps is not None and self.sample_steps > self.timesteps:
            raise ValueError(
                f"sample_steps must be in 1 .. timesteps={self.timesteps}, got {self.sample_steps}"
            )
        if self.block_size is not None and self.block_size < 1:
            raise ValueError(f"block_size must be >= 1 or null, got {self.block_size}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(
                f"need temperature >= 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}"
            )
        if self.sampler == "caching" and self.time_conditioning:
            raise ValueError(
                "sampler 'caching' reuses network outputs across times, exact only for a network that "
                "ignores t: set time_conditioning: false or choose sampler 'ancestral'"
            )


class MaskedDiffusion(Method):
    """Absorbing transition + SUBS-parameterized network; see the module docstring.

    Args:
        net: ``net(x_t, t, cond) -> (B, L, K)`` logits; ``x_t`` holds ids in ``[0, K]`` (K = [MASK]).
        transition: the absorbing forward process (its schedule is the method's).
        config: options.
        event_shape: ``(L,)``, the training sequence length.
        num_classes: number of class labels (0: unconditional).
    """

    samplers = ("ancestral", "caching", "argmax", "confidence")
    nll_estimators = ("bound",)
    representation = "tokens"
    known_semantics = "exact"
    loss_label = "bound, nats per token"

    def __init__(
        self,
        net: Callable,
        transition: AbsorbingTransition,
        config: MaskedConfig,
        *,
        event_shape: Sequence[int],
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(transition, AbsorbingTransition):
            raise ConfigError(
                f"masked diffusion needs an AbsorbingTransition, got {type(transition).__name__}"
            )
        if len(event_shape) != 1:
            raise ConfigError(
                f"masked diffusion models token sequences of event shape (L,), got {tuple(event_shape)}"
            )
        self.net = net
        self.transition = transition
        self.schedule = transition.schedule
        self.config = config
        self.event_shape = tuple(event_shape)
        self.num_classes = num_classes
        self.vocab_size = transition.vocab_size
        self.mask_id = transition.mask_id
        self.T = config.timesteps

    # ---- parameterization ----------------------------------------------------------------------

    def logits(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        """The network's logits over the K data ids, ``(B, L, K)`` float32 (checked, upcast)."""
        t_in = (
            t.to(torch.float32) if self.config.time_conditioning else torch.zeros_like(t, dtype=torch.float32)
        )
        return check_logits(self.net(x_t, t_in, cond), expected=(*x_t.shape, self.vocab_size))

    def denoise(
        self, x_t: Tensor, t: Tensor, cond: Tensor | None = None, *, guidance_scale: float = 1.0
    ) -> Tensor:
        r"""SUBS :math:`\log\hat p(x_0|x_t)`, ``(B, L)`` long, ``(B,)`` -> ``(B, L, K)``.

        Softmax over the K data logits (no [MASK] logit: it is :math:`-\infty`); unmasked tokens
        carried over as a point mass. With ``guidance_scale`` w != 1, classifier-free guidance in
        log space, :math:`\log\hat p \propto \log\hat p_u + w(\log\hat p_c - \log\hat p_u)` (Ho &
        Salimans 2022), before the carry-over.
        """
        log_p0 = guided_log_probs(self.logits, x_t, t, cond, guidance_scale)
        unmasked = (x_t != self.mask_id)[..., None]
        index = x_t.clamp(max=self.vocab_size - 1)[..., None]  # masked rows rewrite their last entry
        out = log_p0.masked_fill(unmasked, NEG_INF)
        return out.scatter_(-1, index, torch.where(unmasked, 0.0, out.gather(-1, index)))

    # ---- bound ---------------------------------------------------------------------------------

    def prior_kl(self, x0: Tensor) -> Tensor:
        r""":meth:`Transition.prior_kl` summed over tokens, ``(B,)`` float64 nats.

        The matching prior is symmetric in the data ids, so every token pays the same,
        :math:`\alpha_1\log K` (0 when :math:`\alpha_1 = 0`); it is computed once, in O(K).
        """
        one = torch.zeros(1, 1, dtype=torch.long, device=x0.device)
        per_token = self.transition.prior_kl(one, dtype=torch.float64)[0]
        return per_token.expand(x0.shape[0]) * x0.shape[1]

    def masked_cross_entropy(
        self, x0: Tensor, t: Tensor, u: Tensor, cond: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        r""":math:`\sum_{i:\,x_t^i = \mathrm{mask}} -\log\hat p_\theta(x_0^i|x_t)`, one draw of :math:`x_t`.

        Only masked tokens enter the cross-entropy (unmasked ones contribute 0 under SUBS).

        Args:
            x0: ``(B, L)`` long data.
            t: ``(B,)`` float64 times.
            u: ``(B, L, 2)`` float64 uniforms for the forward draw.
            cond: ``(B,)`` labels or ``None``.

        Returns:
            ``(B,)`` float32 sums of the masked cross-entropy, and ``(B,)`` masked-token counts.
        """
        x_t = self.transition.sample_marginal(x0, t, u)
        masked = x_t == self.mask_id
        logits = self.logits(x_t, t, cond)
        ce = F.cross_entropy(logits[masked], x0[masked], reduction="none")  # (number masked,)
        rows = masked.nonzero()[:, 0]
        total = torch.zeros(x0.shape[0], dtype=ce.dtype, device=x0.device).index_add(0, rows, ce)
        return total, masked.sum(dim=1)

    def times(self, v: Tensor) -> Tensor:
        """Uniforms ``v`` in [0, 1) -> bound times: v itself, or the grid point ``(floor(v T) + 1) / T``."""
        if self.T == 0:
            return v
        return (torch.floor(v * self.T).clamp(max=self.T - 1) + 1) / self.T

    def diffusion_term(self, x0: Tensor, t: Tensor, u: Tensor, cond: Tensor | None = None) -> Tensor:
        r""":math:`w(t)` times the masked cross-entropy at t: ``(B,)`` float32, the bound's integrand."""
        ce, count = self.masked_cross_entropy(x0, t, u, cond)
        weight = elbo_weight(self.schedule, t, self.T).to(ce.dtype)
        return torch.where(count > 0, weight, 0.0) * ce  # no masked token: 0, even where w(0) = inf

    # ---- the interface -------------------------------------------------------------------------

    def _check_batch(self, batch: Batch) -> Tensor:
        x0 = check_tokens(batch.x, num_ids=self.vocab_size, event_shape=self.event_shape, what="batch.x")
        if self.num_classes > 0 and batch.cond is None:
            raise ValueError("this model is class-conditional: the batch needs labels")
        if self.num_classes == 0 and batch.cond is not None:
            raise ValueError("this model is unconditional: the batch must not carry labels")
        return x0

    def loss(self, batch: Batch) -> LossOutput:
        r"""One-sample estimate of the bound, in nats per token; t stratified over the global batch.

        Example b of a global batch of size B gets :math:`t_b = (b + v_b)/B`, :math:`v_b \sim U[0, 1)`
        (low-discrepancy sampling as in Kingma et al. 2021, VDM, App. I.1; MDLM's "antithetic"
        times), so the batch mean is an unbiased, lower-variance estimate of the mean bound.
        """
        x0 = self._check_batch(batch)
        cond = drop_labels(batch, self.config.cond_drop_prob)
        offset, total = batch.rows if batch.rows is not None else (0, batch.size)
        index = torch.arange(offset, offset + batch.size, device=x0.device, dtype=torch.float64)
        t = self.times((index + batch.rand(dtype=torch.float64)) / total)
        term = self.diffusion_term(x0, t, batch.rand(x0.shape[1], 2, dtype=torch.float64), cond)
        bound = (self.prior_kl(x0).to(term.dtype) + term) / x0.shape[1]
        return LossOutput(bound.mean(), bound.detach(), {"bound_nats_per_token": bound.detach().mean()})

    def nll(self, batch: Batch, *, estimator: str = "bound") -> NLLOutput:
        r"""Per-example bound in nats: prior + an unbiased estimate of the diffusion term.

        With k = ``nll_time_samples``, example b uses the k times :math:`t_j = (j + v_b)/k`,
        :math:`j = 0..k-1`, one offset :math:`v_b \sim U[0, 1)` and one :math:`x_t` draw per time
        (stratified sampling: each :math:`t_j` is uniform on its stratum, so the mean of
        :math:`w(t_j)\,\mathrm{CE}` is unbiased for the integral). With T steps the times map to
        grid points (:meth:`times`), which is unbiased for the sum over steps; ``k >= T`` sums all T
        steps exactly (still one :math:`x_t` draw per step).
        """
        self.check_estimator(estimator)
        x0 = self._check_batch(batch)
        B, L = x0.shape
        exact_sum = 0 < self.T <= self.config.nll_time_samples
        k = self.T if exact_sum else self.config.nll_time_samples
        offset = None if exact_sum else batch.rand(dtype=torch.float64)
        with torch.no_grad():
            prior = self.prior_kl(x0)
            diffusion = torch.zeros_like(prior)
            for j in range(k):
                if offset is None:  # every grid point i / T, i = 1..T
                    t = torch.full((B,), (j + 1) / k, dtype=torch.float64, device=x0.device)
                else:
                    t = self.times((j + offset) / k)
                u = batch.rand(L, 2, dtype=torch.float64)
                diffusion += self.diffusion_term(x0, t, u, batch.cond).to(torch.float64) / k
        nll = prior + diffusion
        if not bool(torch.isfinite(nll).all()):
            raise FloatingPointError("masked diffusion bound is not finite")
        num_dims = torch.full((B,), float(L), device=x0.device)
        return NLLOutput(nll, num_dims, {"prior": prior, "diffusion": diffusion})

    def sampler_info(self, name: str) -> SamplerInfo:
        self.check_sampler(name)
        return SamplerInfo(
            name,
            nfe_per_step=1.0,  # at most: caching skips calls where nothing was unmasked
            default_steps=self.config.sample_steps or self.T or self.event_shape[0],
            max_steps=self.T or None,
            deterministic=name in ("argmax", "confidence") or self.config.temperature == 0,
            limit="the model's timesteps",
        )

    def generate(self, request: SampleRequest) -> SampleOutput:
        """Draw ``(N, L')`` sequences with one of :attr:`samplers`; see :mod:`.decoding`.

        ``L'`` may differ from the training length L: shorter sequences are the first L' tokens of
        an L-token window, longer ones are generated semi-autoregressively in windows of L tokens
        (``block_size`` new tokens per window after the first). Known tokens are unmasked from the
        start and, being carried over, never change.
        """
        sampler, shape = request.sampler, request.shape
        if sampler == "caching" and self.config.time_conditioning:
            raise UsageError(
                "sampler 'caching' needs time_conditioning: false (it reuses outputs across times)"
            )
        guidance_scale = request.guidance_scale
        labels = sample_labels(
            request.cond, shape[0], self.num_classes, self.device, guidance_scale=guidance_scale
        )
        known_pair = check_known_tokens(
            request.known, request.known_mask, shape, self.vocab_size, self.device
        )
        options = decoding.DecodeOptions(
            sampler=sampler,
            steps=request.steps,
            temperature=0.0 if sampler == "argmax" else self.config.temperature,
            top_p=self.config.top_p,
            guidance_scale=guidance_scale,
            block_size=self.config.block_size or max(1, self.event_shape[0] // 2),
        )
        with torch.no_grad():
            return decoding.generate(
                self,
                shape,
                options,
                labels,
                known_pair,
                request.generator,
                trajectory=request.return_trajectory,
                progress=request.progress,
            )

    def time_grid(self, steps: int) -> list[float]:
        """Sampling times from 1 down to 0: ``steps + 1`` points, uniform in t (on the T grid if T > 0)."""
        return sampling_times(steps, self.T)


@METHODS.register("mdlm", config=MaskedConfig)
def build_masked(config: MaskedConfig, info, net_factory) -> MaskedDiffusion:
    """Build from a token data set's :class:`~discodiff.data.DataInfo` and a network factory."""
    from ..nets import NetSpec

    if info.kind != "tokens" or info.vocab_size is None or len(info.event_shape) != 1:
        raise ConfigError(
            "method 'mdlm' models token sequences (DataInfo.kind == 'tokens', event shape (L,))"
        )
    transition = AbsorbingTransition(config.schedule, info.vocab_size)
    spec = NetSpec(
        tuple(info.event_shape),
        info.vocab_size,
        num_classes=info.num_classes,
        input_vocab=transition.num_states,
    )
    return MaskedDiffusion(
        net_factory(spec), transition, config, event_shape=info.event_shape, num_classes=info.num_classes
    )
