r"""CDCD (Dieleman et al. 2022): continuous diffusion for categorical data.

**Model.** Tokens are embedded on a sphere, :math:`e_k = \sqrt d\,v_k/\|v_k\|` (learned jointly),
and diffused by the VE process :math:`x_t = e + \sigma(t)\epsilon` with
:math:`\sigma(t) = \sigma_{min}(\sigma_{max}/\sigma_{min})^t` (the ``geometric_std`` schedule: t is
log sigma rescaled to [0, 1]). The network classifies every token from :math:`x_t`,
:math:`p_\theta(w_i|x_t)`, and the denoiser interpolates the embeddings,
:math:`\hat x_0 = \mathrm{softmax}(\ell)E` (score interpolation,
:mod:`~discodiff.embedding.interpolation`), with EDM's input scaling
:math:`c_{in} = 1/\sqrt{\sigma^2 + 1}` (Karras et al. 2022, Table 1) and self-conditioning.

**Training** (Dieleman et al. 2022, Sec. 3): the cross-entropy
:math:`-\frac1n\sum_i\log p_\theta(w_i \mid x_t)` at :math:`t = F^{-1}(u)`, :math:`u \sim U[0, 1]`,
where F is the time warp (:mod:`~discodiff.embedding.time_warp`), plus the warp's own fit loss
(its parameters get no other gradient). With probability ``self_condition_prob`` the batch is
first denoised without self-conditioning (no gradient) and that estimate is fed back as the
self-conditioning input (Chen et al. 2022, Sec. 3.2; one coin per batch as in their Listing 1,
drawn on the host so the step needs no synchronization).

**Bound.** CDCD trains no likelihood, but its denoiser defines one (as in PLAID's CDCD
reimplementation, Gulrajani & Hashimoto 2023): the continuous-time ELBO of VDM (Kingma et al.
2021, Eq. 11 and 17) of the latent chain :math:`x_t, t \in [0, 1]`, with the network's own
classifier at t = 0 (noise :math:`\sigma_{min}`) as the decoder,

.. math::
    -\log p_\theta(w) \le D_{KL}(q(x_1|e)\,\|\,\mathcal N(0, (1 + \sigma_{max}^2) I))
    + \tfrac12\int_{\lambda(1)}^{\lambda(0)} E\|\epsilon - \hat\epsilon(x_t, t)\|^2\,d\lambda
    + E_q[-\log p_\theta(w \mid x_0)],

:math:`\lambda = -2\log\sigma`. The integral is estimated with ``bound_samples`` stratified
log-SNR points (:func:`~discodiff.gaussian.losses.log_snr_diffusion_term`). The bound is that of
the model without self-conditioning input (the previous estimate is zero): sampling feeds the
previous step's estimate, which no Markov reverse process does, so that model has no bound.

**Sampling**: the probability-flow ODE :math:`dx/d\sigma = \hat\epsilon` (Karras et al. 2022, Alg.
1) by Euler (= deterministic DDIM for VE) or Heun (:func:`~discodiff.gaussian.samplers.edm_heun_step`)
steps placed at :math:`t_j = F^{-1}(1 - j/N)` by the time warp; each evaluation feeds its
:math:`\hat x_0` to the next as the self-conditioning input. The tokens are the argmax of the
last evaluation's :math:`p_\theta(w|x_t)`. Known tokens are re-imposed at every step as their
embeddings noised to :math:`q(x_s|e)`, exactly at the end, and copied into the output.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..base import METHODS, Batch, LossOutput, NLLOutput, SampleOutput, SampleRequest, SamplerInfo
from ..errors import ConfigError
from ..gaussian.losses import log_snr_bound, prior_kl
from ..gaussian.process import VEProcess
from ..gaussian.samplers import SamplerContext, run_sampler
from ..schedules import GeometricStdSchedule
from ..state import host_uniform
from ..utils import randn
from .encoders import NormalizedEncoder
from .interpolation import Interpolated, InterpolatingDenoiser
from .layout import LatentLayout
from .shared import EmbeddingMethod
from .time_warp import TimeWarp

GAUSSIAN_STEPS = {"euler": "ddim", "heun": "edm_heun"}
"""CDCD's sampler names -> the Gaussian core's steps (Euler in sigma is DDIM with eta = 0)."""


@dataclass
class CDCDConfig:
    """``method: {name: cdcd, ...}``: score interpolation on normalized embeddings, time warping."""

    embedding_dim: int = 16  # d per token; embeddings have norm sqrt(d)
    group: int = 1  # tokens per latent position: m = n / group
    sigma_min: float = 1.0  # noise std at t = 0, where the decoder reads (CDCD: 1)
    sigma_max: float = 300.0  # noise std at t = 1 (CDCD: 300)
    self_condition: bool = True
    self_condition_prob: float = 0.5  # probability that a training batch gets a self-conditioning estimate
    warp_bins: int = 100  # linear pieces of the time warp
    warp_weight: float = 1.0  # weight of the warp's fit loss
    input_scaling: bool = True  # EDM's c_in = 1 / sqrt(sigma^2 + 1)
    cond_drop_prob: float = 0.0  # label dropout for classifier-free guidance
    sampler: Literal["euler", "heun"] = "euler"
    sample_steps: int = 200  # network evaluations for euler; heun uses 2 per step but the last
    bound_samples: int = 32  # stratified log-SNR points of the bound's integral

    def __post_init__(self) -> None:
        if self.embedding_dim < 1 or self.group < 1:
            raise ValueError(f"embedding_dim and group must be >= 1, got {self.embedding_dim}, {self.group}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")
        if not 0 <= self.self_condition_prob <= 1 or not 0 <= self.cond_drop_prob < 1:
            raise ValueError("self_condition_prob must be in [0, 1] and cond_drop_prob in [0, 1)")
        if self.warp_bins < 1 or self.warp_weight < 0:
            raise ValueError(
                f"need warp_bins >= 1 and warp_weight >= 0, got {self.warp_bins}, {self.warp_weight}"
            )
        if self.sample_steps < 1 or self.bound_samples < 1:
            raise ValueError(
                f"sample_steps and bound_samples must be >= 1, got {self.sample_steps}, {self.bound_samples}"
            )


class CDCD(EmbeddingMethod):
    """Normalized embeddings + VE diffusion + interpolating classifier + time warp.

    Args:
        net: ``net(x, t, cond) -> (B, m, g K)`` logits; ``x`` is the scaled latent, with the
            self-conditioning estimate concatenated along the channels when enabled.
        encoder: the normalized embedding.
        config: options.
        layout: latent layout.
        num_classes: number of class labels (0: unconditional).
    """

    samplers = ("euler", "heun")
    nll_estimators = ("bound",)
    loss_label = "cross-entropy, nats per token (+ time-warp fit)"

    def __init__(
        self,
        net: Callable,
        encoder: NormalizedEncoder,
        config: CDCDConfig,
        *,
        layout: LatentLayout,
        num_classes: int = 0,
    ) -> None:
        super().__init__(net, encoder, layout, num_classes=num_classes, cond_drop_prob=config.cond_drop_prob)
        self.config = config
        self.process = VEProcess(GeometricStdSchedule(config.sigma_min, config.sigma_max))
        self.warp = TimeWarp(config.warp_bins, initial_total=math.log(encoder.vocab_size))
        self.denoiser = InterpolatingDenoiser(
            net,
            self.process,
            layout,
            vocab_size=encoder.vocab_size,
            data_std=encoder.data_std,
            input_scaling=config.input_scaling,
            self_condition=config.self_condition,
        )

    def predict(
        self,
        x_t: Tensor,
        t: Tensor,
        cond: Tensor | None = None,
        *,
        previous: Tensor | None = None,
        guidance_scale: float = 1.0,
    ) -> Interpolated:
        r""":math:`p_\theta(w|x_t)` and :math:`\hat x_0` at ``x_t`` (B, m, g d), ``t`` (B,)."""
        return self.denoiser(
            x_t, t, self.encoder.table(), cond, previous=previous, guidance_scale=guidance_scale
        )

    def _self_conditioning(self, x_t: Tensor, t: Tensor, cond: Tensor | None) -> Tensor | None:
        """The estimate fed back with probability ``self_condition_prob`` (zeros otherwise), no
        gradient; one coin for the batch."""
        if not self.config.self_condition:
            return None
        if host_uniform() >= self.config.self_condition_prob:
            return torch.zeros_like(x_t)
        with torch.no_grad():
            return self.predict(x_t, t, cond).denoised.x0.to(x_t.dtype)

    # ---- the interface -------------------------------------------------------------------------

    def loss(self, batch: Batch) -> LossOutput:
        tokens = self.check_batch(batch)
        cond = self.train_labels(batch)
        x0 = self.embed(tokens)
        t = self.warp.inverse(batch.rand(dtype=torch.float64))
        x_t = self.process.marginal(x0, t, batch.randn(*x0.shape[1:]))
        previous = self._self_conditioning(x_t, t, cond)
        log_p = self.predict(x_t, t, cond, previous=previous).log_probs
        ce = -log_p.gather(-1, tokens[..., None]).squeeze(-1).mean(dim=-1)  # (B,) nats per token
        warp_fit = self.warp.fit_loss(t, ce)
        total = ce + self.config.warp_weight * warp_fit
        metrics = {"ce_nats_per_token": ce.detach().mean(), "warp_fit": warp_fit.detach().mean()}
        return LossOutput(total.mean().float(), total.detach(), metrics)

    def nll(self, batch: Batch, *, estimator: str = "bound") -> NLLOutput:
        self.check_estimator(estimator)
        tokens = self.check_batch(batch)
        schedule = self.process.schedule
        lam_lo, lam_hi = (float(v) for v in schedule.log_snr(torch.tensor([1.0, 0.0], dtype=torch.float64)))
        k_total = self.config.bound_samples
        with torch.no_grad():
            x0 = self.embed(tokens)
            prior = prior_kl(self.process, x0, 1.0)
            diffusion = log_snr_bound(
                self.process,
                x0,
                (lam_lo, lam_hi),
                k_total,
                lambda x_t, t: self.predict(x_t, t, batch.cond).denoised.eps,
                batch,
            )
            t0 = torch.zeros(x0.shape[0], dtype=torch.float64, device=x0.device)
            x_first = self.process.marginal(x0, t0, batch.randn(*x0.shape[1:]))
            log_p = self.predict(x_first, t0, batch.cond).log_probs
            rounding = -log_p.gather(-1, tokens[..., None]).squeeze(-1).double().sum(dim=-1)
        nll = prior + diffusion + rounding
        if not bool(torch.isfinite(nll).all()):
            raise FloatingPointError("CDCD bound is not finite")
        num_dims = torch.full((x0.shape[0],), float(tokens.shape[1]), device=x0.device)
        return NLLOutput(nll, num_dims, {"prior": prior, "diffusion": diffusion, "rounding": rounding})

    def time_grid(self, steps: int) -> Tensor:
        r"""Descending float64 times :math:`t_j = F^{-1}(1 - j/N)`, j = 0..N, from 1 to 0."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        u = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64, device=self.device)
        grid = self.warp.inverse(u)
        grid[0], grid[-1] = 1.0, 0.0
        return grid

    def sampler_info(self, name: str) -> SamplerInfo:
        self.check_sampler(name)
        nfe = 2.0 if GAUSSIAN_STEPS[name] == "edm_heun" else 1.0
        return SamplerInfo(name, nfe_per_step=nfe, default_steps=self.config.sample_steps, deterministic=True)

    def generate(self, request: SampleRequest) -> SampleOutput:
        """Euler or Heun on the warped grid, then the argmax of the last ``p(w|x_t)``; the
        trajectory holds latents ``(N, m, g d)``."""
        shape, generator = request.shape, request.generator
        grid = self.time_grid(request.steps)
        device = self.device
        cond = self.sample_labels(request.cond, shape[0], device)
        known_tokens = self.known_tokens(request.known, request.known_mask, shape, device)
        state: dict[str, Tensor | None] = {"previous": None, "log_probs": None}

        def denoise(x: Tensor, t: Tensor):
            out = self.predict(x, t, cond, previous=state["previous"], guidance_scale=request.guidance_scale)
            state["previous"], state["log_probs"] = out.denoised.x0.to(x.dtype), out.log_probs
            return out.denoised

        nfe_before = self.denoiser.nfe
        with torch.no_grad():
            x = randn((shape[0], *self.layout.event_shape), generator=generator, device=device)
            _, trajectory = run_sampler(
                GAUSSIAN_STEPS[request.sampler],
                x * self.process.prior_std(1.0),
                grid,
                SamplerContext(process=self.process, denoise=denoise, generator=generator),
                known=None if known_tokens is None else (known_tokens.latent, known_tokens.latent_mask),
                return_trajectory=request.return_trajectory,
                progress=request.progress,
            )
            tokens = state["log_probs"].argmax(dim=-1)
        return SampleOutput(self.impose(tokens, known_tokens), trajectory, self.denoiser.nfe - nfe_before)


@METHODS.register("cdcd", config=CDCDConfig)
def build_cdcd(config: CDCDConfig, info, net_factory) -> CDCD:
    """Build from a token data set's :class:`~discodiff.data.DataInfo` and a network factory."""
    from ..nets import NetSpec

    if info.kind != "tokens" or info.vocab_size is None or len(info.event_shape) != 1:
        raise ConfigError(
            "method 'cdcd' models token sequences (DataInfo.kind == 'tokens', event shape (L,), a "
            f"vocab_size), got kind {info.kind!r} with event shape {tuple(info.event_shape)}"
        )
    layout = LatentLayout(info.event_shape[0], config.embedding_dim, config.group)
    positions, channels = layout.event_shape
    in_channels = 2 * channels if config.self_condition else channels
    spec = NetSpec((positions, in_channels), config.group * info.vocab_size, num_classes=info.num_classes)
    net = net_factory(spec)  # before the embedding's draw: see diffusion_lm._build
    encoder = NormalizedEncoder(info.vocab_size, config.embedding_dim)
    return CDCD(net, encoder, config, layout=layout, num_classes=info.num_classes)
