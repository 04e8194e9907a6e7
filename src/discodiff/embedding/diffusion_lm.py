r"""Diffusion-LM (Li et al. 2022): Gaussian diffusion on jointly trained token embeddings, and its
one-hot ("simplex") special case.

**Model.** Tokens w are embedded, :math:`e = \mathrm{Emb}(w)` (grouped into the latent layout),
and diffused by the VP process :math:`x_t = \alpha_t e + \sigma_t\epsilon` on the grid
:math:`t_i = i/T` (sqrt schedule by default, Li et al. 2022, Sec. 4.2 / App. A). Diffusion-LM's
noisy embedding :math:`x_0 \sim q_\phi(x_0|w) = \mathcal N(\mathrm{Emb}(w), \sigma_0^2 I)` is the first
latent :math:`x_{t_1}` here (:math:`\sigma_0^2 = 1 - \bar\alpha(t_1)`, as in their code), and the
rounding :math:`p_\theta(w|x_{t_1}) = \prod_i p_\theta(w_i|x_{t_1, i})` is a decoder
(:mod:`~discodiff.embedding.decoders`). The network predicts :math:`\hat x_0 = f_\theta(x_t, t)`
(x0-parameterization, Sec. 4.2).

**Training**, :math:`\mathcal L_{e2e\text{-}simple}` (Li et al. 2022, Sec. 4.1, with the
x0-parameterization of Sec. 4.2), per example:

.. math::
    \frac{\|f_\theta(x_{t_i}, t_i) - e\|^2}{n d}
    + \lambda_r\,\frac{-\log p_\theta(w \mid x_{t_1})}{n}
    + \frac{D_{KL}(q(x_1 \mid e)\,\|\,\mathcal N(0, I))}{n d},
    \qquad i \sim U\{1..T\},

the denoising MSE (whose i = 1 term is their :math:`\|\mathrm{Emb}(w) - \mu_\theta(x_1, 1)\|^2`), the
rounding cross-entropy and the prior term. The gradient reaches the embedding through all three
(target and input of the MSE): the MSE alone would collapse the embeddings to a point, the
rounding term keeps them apart at the first noise level, the prior term keeps them from growing
(it is 0 when :math:`\bar\alpha(1) = 0`, as for the sqrt schedule).

**Bound**, :math:`\mathcal L_{e2e\text{-}vlb}` (Li et al. 2022, Sec. 4.1) written with KLs: the
ELBO of the latent chain :math:`x_{t_1}, \dots, x_{t_T}` with observation w,

.. math::
    -\log p_\theta(w) \le D_{KL}(q(x_{t_T}|w)\,\|\,p(x_{t_T}))
    + \sum_{i=2}^{T} E_q\,D_{KL}(q(x_{t_{i-1}}|x_{t_i}, e)\,\|\,p_\theta(x_{t_{i-1}}|x_{t_i}))
    + E_q[-\log p_\theta(w \mid x_{t_1})],

every term from the Gaussian core (:func:`~discodiff.gaussian.losses.prior_kl`,
:func:`~discodiff.gaussian.losses.diffusion_step_kl`) but the rounding term; it equals their
:math:`E_{q_\phi}[\mathcal L_{vlb}(x_0) + \log q_\phi(x_0|w) - \log p_\theta(w|x_0)]`. It is the
bound of the unclamped model.

**Sampling**: ancestral or DDIM steps of the Gaussian core on a respaced grid. With ``clamp``,
:math:`\hat x_0` is replaced by its nearest embedding at every step before the step uses it (the
clamping trick, Sec. 4.2), so the last step lands on exact embeddings; the final
:math:`\hat x_0` is rounded to its nearest embedding (:meth:`Decoder.decode`). Known tokens are
re-imposed at every step as their embeddings noised to :math:`q(x_s|e)`, exactly at the end, and
copied into the output.

**Simplex** (``method: simplex``): the same model with the one-hot encoder :math:`e_k = s\delta_k`
and the argmax decoder; no embedding is learned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..base import METHODS, Batch, LossOutput, NLLOutput, SampleOutput, SampleRequest, SamplerInfo
from ..config import component
from ..errors import ConfigError
from ..gaussian.losses import discrete_time_bound, prior_kl
from ..gaussian.precond import Denoised, GaussianDenoiser
from ..gaussian.process import VPProcess, x0_to_eps
from ..gaussian.samplers import SamplerContext, run_sampler, time_grid
from ..schedules import SCHEDULES, Schedule
from ..utils import append_dims, randn, sum_except_batch
from .decoders import Decoder, build_decoder
from .encoders import TokenEncoder, build_encoder
from .layout import LatentLayout
from .rounding import clamp_to_nearest
from .shared import EmbeddingMethod


@dataclass
class DiffusionLMConfig:
    """``method: {name: diffusion_lm, ...}``: Gaussian diffusion on learned token embeddings."""

    embedding_dim: int = 16  # d per token (the one-hot encoder has d = vocab size)
    encoder: Literal["learned", "normalized", "onehot"] = "learned"
    onehot_scale: float = 1.0  # s of the one-hot encoder e_k = s * delta_k
    decoder: Literal["head", "nearest", "argmax"] = "head"  # rounding p(w | x_{t_1}) and final decoding
    tied_head: bool = True  # the head's weight is the embedding table (Diffusion-LM)
    group: int = 1  # tokens per latent position: m = n / group
    schedule: Schedule = component(SCHEDULES, "sqrt")
    timesteps: int = 2000  # T: the grid i / T (Diffusion-LM: 2000)
    rounding_weight: float = 1.0  # lambda_r on the rounding cross-entropy
    reverse_variance: Literal["small", "large"] = "small"  # fixed reverse variance (bound, ancestral)
    clamp: bool = True  # clamping trick at every sampling step
    input_scaling: bool = True  # scale x_t by c_in(t) before the network
    cond_drop_prob: float = 0.0  # label dropout for classifier-free guidance
    sampler: Literal["ancestral", "ddim"] = "ancestral"  # default sampler
    sample_steps: int | None = 200  # default steps (None: T); Diffusion-LM samples with 200
    ddim_eta: float = 0.0
    nll_time_samples: int = 0  # nll: stratified steps per example estimating the i = 2..T sum (0: all)

    def __post_init__(self) -> None:
        if self.embedding_dim < 1 or self.group < 1 or self.timesteps < 1:
            raise ValueError(
                f"embedding_dim, group and timesteps must be >= 1, got {self.embedding_dim}, "
                f"{self.group}, {self.timesteps}"
            )
        if self.decoder == "argmax" and self.encoder != "onehot":
            raise ValueError("decoder 'argmax' reads one-hot vectors: it needs encoder 'onehot'")
        if self.onehot_scale <= 0 or self.rounding_weight < 0 or self.ddim_eta < 0:
            raise ValueError("need onehot_scale > 0, rounding_weight >= 0 and ddim_eta >= 0")
        if not 0 <= self.cond_drop_prob < 1:
            raise ValueError(f"cond_drop_prob must be in [0, 1), got {self.cond_drop_prob}")
        if self.nll_time_samples < 0:
            raise ValueError(
                f"nll_time_samples must be >= 0 (0: sum every step), got {self.nll_time_samples}"
            )
        if self.sample_steps is not None and not 1 <= self.sample_steps <= self.timesteps:
            raise ValueError(
                f"sample_steps must be in 1 .. timesteps={self.timesteps}, got {self.sample_steps}"
            )


@dataclass
class SimplexConfig(DiffusionLMConfig):
    """``method: {name: simplex, ...}``: Diffusion-LM with one-hot vectors and an argmax decoder."""

    encoder: Literal["onehot"] = "onehot"
    onehot_scale: float = 4.0  # corners 4 sqrt(2) apart, as N(0, 1) embeddings in d = 16
    decoder: Literal["argmax", "nearest"] = "argmax"


class DiffusionLM(EmbeddingMethod):
    """Encoder + VP diffusion with an x0-predicting network + rounding decoder; see the module docstring.

    Args:
        net: ``net(x_t, t, cond) -> (B, m, g d)``, the estimate of the clean latent.
        encoder, decoder: token ids <-> vectors.
        config: options (its encoder, decoder and embedding fields are read by the builder).
        layout: latent layout.
        num_classes: number of class labels (0: unconditional).
    """

    samplers = ("ancestral", "ddim")
    nll_estimators = ("bound",)
    loss_label = "x0 squared error per dim + rounding nats per token + prior"

    def __init__(
        self,
        net: Callable,
        encoder: TokenEncoder,
        decoder: Decoder,
        config: DiffusionLMConfig,
        *,
        layout: LatentLayout,
        num_classes: int = 0,
    ) -> None:
        super().__init__(net, encoder, layout, num_classes=num_classes, cond_drop_prob=config.cond_drop_prob)
        self.decoder = decoder
        self.config = config
        self.T = config.timesteps
        self.process = VPProcess(config.schedule)
        self.denoiser = GaussianDenoiser(
            net, self.process, prediction="x0", data_std=encoder.data_std, input_scaling=config.input_scaling
        )

    def estimate(
        self,
        x_t: Tensor,
        t: Tensor,
        cond: Tensor | None = None,
        *,
        guidance_scale: float = 1.0,
        clamp: bool = False,
    ) -> Denoised:
        r""":math:`\hat x_0` and :math:`\hat\epsilon` at ``x_t`` (B, m, g d), ``t`` (B,); with ``clamp``,
        :math:`\hat x_0` is its nearest embedding and :math:`\hat\epsilon` follows from it."""
        x0 = self.denoiser(x_t, t, cond, guidance_scale=guidance_scale).x0.float()
        if clamp:
            x0 = self.layout.merge(clamp_to_nearest(self.layout.split(x0), self.encoder.table()))
        alpha, sigma = (append_dims(c, x_t) for c in self.process.alpha_sigma(t))
        return Denoised(x0, x0_to_eps(x0, x_t, alpha, sigma))

    def rounding_nll(self, x0: Tensor, tokens: Tensor, noise: Tensor) -> Tensor:
        r""":math:`-\log p_\theta(w \mid x_{t_1})` summed over tokens, (B,) float64, with
        :math:`x_{t_1} = \alpha_{t_1} e + \sigma_{t_1}\,\text{noise}`."""
        t1 = torch.full((x0.shape[0],), 1.0 / self.T, dtype=torch.float64, device=x0.device)
        x1 = self.layout.split(self.process.marginal(x0, t1, noise))
        alpha, sigma = self.process.alpha_sigma(t1)
        log_p = self.decoder.log_probs(x1, self.encoder.table(), alpha, sigma)
        return -log_p.gather(-1, tokens[..., None]).squeeze(-1).double().sum(dim=-1)

    # ---- the interface -------------------------------------------------------------------------

    def loss(self, batch: Batch) -> LossOutput:
        tokens = self.check_batch(batch)
        cond = self.train_labels(batch)
        x0 = self.embed(tokens)  # (B, m, g d), differentiable in the embedding
        dims, n = x0[0].numel(), tokens.shape[1]
        i = torch.clamp(torch.floor(batch.rand(dtype=torch.float64) * self.T), max=self.T - 1) + 1
        t = i / self.T
        x_t = self.process.marginal(x0, t, batch.randn(*x0.shape[1:]))
        mse = sum_except_batch((self.estimate(x_t, t, cond).x0 - x0) ** 2) / dims
        rounding = self.rounding_nll(x0, tokens, batch.randn(*x0.shape[1:])) / n
        prior = prior_kl(self.process, x0, 1.0) / dims
        total = mse + self.config.rounding_weight * rounding + prior
        metrics = {
            "mse_x0": mse.detach().mean(),
            "rounding_nats_per_token": rounding.detach().mean(),
            "prior_nats_per_dim": prior.detach().mean(),
        }
        return LossOutput(total.mean().float(), total.detach(), metrics)

    def nll(self, batch: Batch, *, estimator: str = "bound") -> NLLOutput:
        self.check_estimator(estimator)
        tokens = self.check_batch(batch)
        with torch.no_grad():
            x0 = self.embed(tokens)
            prior = prior_kl(self.process, x0, 1.0)
            diffusion = discrete_time_bound(
                self.process,
                x0,
                self.T,
                lambda x_t, t: self.estimate(x_t, t, batch.cond),
                batch,
                self.config.reverse_variance,
                self.config.nll_time_samples,
            )
            rounding = self.rounding_nll(x0, tokens, batch.randn(*x0.shape[1:]))
        nll = prior + diffusion + rounding
        if not bool(torch.isfinite(nll).all()):
            raise FloatingPointError("Diffusion-LM bound is not finite")
        num_dims = torch.full((x0.shape[0],), float(tokens.shape[1]), device=x0.device)
        return NLLOutput(nll, num_dims, {"prior": prior, "diffusion": diffusion, "rounding": rounding})

    def sampler_info(self, name: str) -> SamplerInfo:
        self.check_sampler(name)
        return SamplerInfo(
            name,
            nfe_per_step=1.0,
            default_steps=self.config.sample_steps or self.T,
            max_steps=self.T,
            deterministic=name == "ddim" and self.config.ddim_eta == 0,
            limit="the model's timesteps",
        )

    def generate(self, request: SampleRequest) -> SampleOutput:
        """Ancestral or DDIM sampling of the latent, then decoding; the trajectory holds latents
        ``(N, m, g d)``."""
        shape, generator = request.shape, request.generator
        grid = time_grid(request.steps, timesteps=self.T)
        device = self.device
        cond = self.sample_labels(request.cond, shape[0], device)
        known_tokens = self.known_tokens(request.known, request.known_mask, shape, device)
        c = self.config
        guidance_scale = request.guidance_scale
        ctx = SamplerContext(
            process=self.process,
            denoise=lambda x, t: self.estimate(x, t, cond, guidance_scale=guidance_scale, clamp=c.clamp),
            generator=generator,
            reverse_variance=c.reverse_variance,
            ddim_eta=c.ddim_eta,
        )
        nfe_before = self.denoiser.nfe
        with torch.no_grad():
            x = randn((shape[0], *self.layout.event_shape), generator=generator, device=device)
            x, trajectory = run_sampler(
                request.sampler,
                x * self.process.prior_std(1.0),
                grid.to(device),
                ctx,
                known=None if known_tokens is None else (known_tokens.latent, known_tokens.latent_mask),
                return_trajectory=request.return_trajectory,
                progress=request.progress,
            )
            tokens = self.decoder.decode(self.layout.split(x), self.encoder.table())
        return SampleOutput(self.impose(tokens, known_tokens), trajectory, self.denoiser.nfe - nfe_before)


def _build(name: str, config: DiffusionLMConfig, info, net_factory) -> DiffusionLM:
    from ..nets import NetSpec

    if info.kind != "tokens" or info.vocab_size is None or len(info.event_shape) != 1:
        raise ConfigError(
            f"method {name!r} models token sequences (DataInfo.kind == 'tokens', event shape (L,), a "
            f"vocab_size), got kind {info.kind!r} with event shape {tuple(info.event_shape)}"
        )
    dim = info.vocab_size if config.encoder == "onehot" else config.embedding_dim
    layout = LatentLayout(info.event_shape[0], dim, config.group)
    # the network first: an embedding drawn first from a seed would equal the first prior noise
    # that an evaluation generator with the same seed draws
    net = net_factory(NetSpec(layout.event_shape, layout.event_shape[1], num_classes=info.num_classes))
    encoder = build_encoder(config.encoder, info.vocab_size, dim=dim, onehot_scale=config.onehot_scale)
    decoder = build_decoder(config.decoder, info.vocab_size, dim=dim, tied=config.tied_head)
    return DiffusionLM(net, encoder, decoder, config, layout=layout, num_classes=info.num_classes)


@METHODS.register("diffusion_lm", config=DiffusionLMConfig)
def build_diffusion_lm(config: DiffusionLMConfig, info, net_factory) -> DiffusionLM:
    """Build from a token data set's :class:`~discodiff.data.DataInfo` and a network factory."""
    return _build("diffusion_lm", config, info, net_factory)


@METHODS.register("simplex", config=SimplexConfig)
def build_simplex(config: SimplexConfig, info, net_factory) -> DiffusionLM:
    """Diffusion-LM with the one-hot encoder and the argmax decoder (``SimplexConfig``)."""
    return _build("simplex", config, info, net_factory)
