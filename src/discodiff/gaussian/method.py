r"""Gaussian diffusion as a :class:`~discodiff.base.Method`: DDPM in discrete time (T > 0 steps on
the grid ``i / T``) and score SDEs in continuous time (T = 0), over VP or VE processes.

Training losses (``loss``):

- ``simple``: :math:`w(t)\,\|\epsilon - \hat\epsilon\|^2` averaged over dimensions (Ho et al. 2020,
  Eq. 14) with the weighting of :func:`~discodiff.gaussian.losses.eps_mse_weight`, or, in
  continuous time, ``likelihood`` weighting :math:`-\tfrac12\lambda'(t)` (Song et al. 2021b;
  Kingma et al. 2021, Eq. 17) with t drawn uniformly in log-SNR.
- ``vlb``: a one-sample estimate of the variational bound (Ho et al. 2020, Eq. 5), in nats per
  dimension.
- ``hybrid``: ``simple + hybrid_lambda * vlb``, with the vlb's mean stopped when the variance is
  learned (Nichol & Dhariwal 2021, Sec. 3.1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal

import torch
from torch import Tensor

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
    check_known,
    drop_labels,
    sample_labels,
)
from ..config import component
from ..errors import ConfigError
from ..schedules import SCHEDULES, Schedule
from ..utils import randn, sum_except_batch
from .likelihood import ODE_TOLERANCE, ode_log_likelihood
from .losses import (
    diffusion_step_kl,
    discrete_time_bound,
    eps_mse_weight,
    log_snr_bound,
    log_snr_diffusion_term,
    prior_kl,
    reconstruction_nll,
    reverse_log_variance,
)
from .precond import Denoised, GaussianDenoiser
from .process import PROCESSES
from .samplers import GAUSSIAN_SAMPLERS, SamplerContext, run_sampler, time_grid

EPS_PREDICTION_MIN_ALPHA_BAR = 1e-8
r"""Below this :math:`\bar\alpha(t_{max})`, eps-prediction cannot recover :math:`x_0` at the first
sampling step: :math:`\hat x_0 = (x_t - \sigma\hat\epsilon)/\alpha` amplifies the network's error by
:math:`1/\alpha > 10^4`."""

DEFAULT_CONTINUOUS_STEPS = 1000
"""Sampler steps for continuous-time models when none are given (Song et al. 2021 use 1000)."""


@dataclass
class GaussianConfig:
    """``method: {name: gaussian, ...}``: DDPM (timesteps > 0) or a score SDE (timesteps = 0)."""

    process: Literal["vp", "ve"] = "vp"
    schedule: Schedule = component(SCHEDULES, "linear")
    timesteps: int = 1000  # T > 0: discrete time on the grid i/T (DDPM); 0: continuous time (SDE)
    prediction: Literal["eps", "x0", "v", "score"] = "eps"
    loss: Literal["simple", "vlb", "hybrid"] = "simple"
    weighting: Literal["auto", "eps", "x0", "v", "min_snr", "likelihood"] = "auto"  # auto: = prediction
    min_snr_gamma: float = 5.0  # gamma of min-SNR weighting (Hang et al. 2023)
    hybrid_lambda: float = 0.001  # weight of the vlb in the hybrid loss (Nichol & Dhariwal 2021)
    learn_variance: bool = False  # learn the reverse variance (2x output channels)
    reverse_variance: Literal["small", "large"] = "small"  # fixed reverse variance
    t_min: float = 1e-3  # continuous time: smallest time trained, sampled and evaluated
    t_max: float = 1.0  # largest time; the prior lives here
    data_std: float = 1.0  # data scale used by the network's input scaling
    input_scaling: bool = True  # scale x_t to unit variance before the network
    clip_x0: bool = True  # clip x0 to the data's range while sampling (bounded data only)
    cond_drop_prob: float = 0.0  # label dropout for classifier-free guidance
    sampler: str = "ancestral"  # default sampler
    sample_steps: int | None = None  # default steps (None: T, or 1000 in continuous time)
    ddim_eta: float = 0.0
    pc_snr: float = 0.16  # Langevin corrector signal-to-noise ratio (Song et al. 2021)
    pc_corrector_steps: int = 1
    ode_rtol: float = ODE_TOLERANCE  # dopri5 tolerances of the PF-ODE likelihood and sampler
    ode_atol: float = ODE_TOLERANCE
    bound_samples: int = 64  # continuous-time bound: stratified log-SNR samples per example
    exact_divergence_max_dim: int = 16  # exact ODE divergence up to this many dims, else Hutchinson
    hutchinson_samples: int = 1

    def __post_init__(self) -> None:
        if self.timesteps < 0:
            raise ValueError(f"timesteps must be >= 0 (0 = continuous time), got {self.timesteps}")
        if not 0 < self.t_min < self.t_max <= 1:
            raise ValueError(f"need 0 < t_min < t_max <= 1, got t_min={self.t_min}, t_max={self.t_max}")
        if self.timesteps > 0 and self.t_max != 1.0:
            raise ValueError("t_max applies to continuous time only (timesteps = 0)")
        if self.sampler not in GAUSSIAN_SAMPLERS:
            raise ValueError(f"sampler: {GAUSSIAN_SAMPLERS.unknown_message(self.sampler)}")
        if self.weighting == "likelihood" and self.timesteps > 0:
            raise ValueError("weighting 'likelihood' is continuous-time; in discrete time use loss 'vlb'")
        if self.learn_variance and (self.loss == "simple" or self.timesteps == 0):
            raise ValueError("learn_variance needs a discrete-time model and loss 'vlb' or 'hybrid'")
        if not 0 <= self.cond_drop_prob < 1:
            raise ValueError(f"cond_drop_prob must be in [0, 1), got {self.cond_drop_prob}")
        if self.sample_steps is not None and self.sample_steps < 1:
            raise ValueError(f"sample_steps must be >= 1, got {self.sample_steps}")
        if self.bound_samples < 1 or self.hutchinson_samples < 1 or self.pc_corrector_steps < 0:
            raise ValueError("bound_samples and hutchinson_samples must be >= 1, pc_corrector_steps >= 0")
        if self.data_std <= 0 or self.ddim_eta < 0:
            raise ValueError("data_std must be > 0 and ddim_eta >= 0")


class GaussianDiffusion(Method):
    """Process + parameterization + network for continuous data; see the module docstring."""

    samplers = tuple(GAUSSIAN_SAMPLERS.names())
    nll_estimators = ("bound", "ode")
    representation = "continuous"
    known_semantics = "replacement"

    @property
    def loss_label(self) -> str:
        simple, bound = f"squared error per dim ({self.weighting} weighting)", "bound, nats per dim"
        lam = self.config.hybrid_lambda
        return {"simple": simple, "vlb": bound, "hybrid": f"{simple} + {lam:g} x {bound}"}[self.config.loss]

    def __init__(
        self,
        net: Callable,
        config: GaussianConfig,
        *,
        event_shape: Sequence[int],
        levels: int | None = None,
        value_range: float | None = None,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.net = net
        self.config = config
        self.event_shape = tuple(event_shape)
        self.levels = levels
        self.num_classes = num_classes
        self.clip = value_range if config.clip_x0 else None
        self.process = PROCESSES.get(config.process)(config.schedule)
        self.denoiser = GaussianDenoiser(
            net,
            self.process,
            prediction=config.prediction,
            learn_variance=config.learn_variance,
            data_std=config.data_std,
            input_scaling=config.input_scaling,
        )
        self.T = config.timesteps
        self.t_first = 1.0 / self.T if self.T else config.t_min
        self.t_max = config.t_max
        self.weighting = config.weighting
        if self.weighting == "auto":
            self.weighting = "eps" if config.prediction == "score" else config.prediction
        t_max = torch.tensor([self.t_max], dtype=torch.float64)
        if (
            config.prediction in ("eps", "score")
            and float(self.process.alpha_sigma(t_max)[0]) ** 2 < EPS_PREDICTION_MIN_ALPHA_BAR
        ):
            raise ConfigError(
                f"schedule {type(config.schedule).__name__} reaches alpha_bar < "
                f"{EPS_PREDICTION_MIN_ALPHA_BAR} at t_max={self.t_max}: eps-prediction cannot recover "
                "x0 there (the last step's bound term and the PF-ODE drift diverge; clipping x0 only helps "
                "sampling); use prediction 'v' or 'x0', a smaller t_max, or another schedule"
            )

    # ---- helpers -------------------------------------------------------------------------------

    def _check_batch(self, batch: Batch) -> None:
        x = batch.x
        if not x.is_floating_point() or tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(
                f"expected float data of shape (B, {', '.join(map(str, self.event_shape))}), got "
                f"{x.dtype} {tuple(x.shape)}"
            )
        if self.num_classes > 0 and batch.cond is None:
            raise ValueError("this model is class-conditional: the batch needs labels")

    def _t_tensor(self, value: float, n: int, device: torch.device) -> Tensor:
        return torch.full((n,), value, dtype=torch.float64, device=device)

    def _log_snr_range(self) -> tuple[float, float]:
        if getattr(self, "_lam_range", None) is None:  # constants of the schedule: computed once
            lam = self.process.schedule.log_snr(torch.tensor([self.t_max, self.t_first], dtype=torch.float64))
            self._lam_range = (float(lam[0]), float(lam[1]))
        return self._lam_range

    def _uses_log_snr_sampling(self) -> bool:
        return self.T == 0 and (self.weighting == "likelihood" or self.config.loss == "vlb")

    def _train_times(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Training times t (B,) float64 and 1 / density(t) for unbiased integral estimates."""
        u = batch.rand(dtype=torch.float64)
        if self.T:
            i = torch.clamp(torch.floor(u * self.T), max=self.T - 1) + 1
            return i / self.T, torch.full_like(u, float(self.T))
        if self._uses_log_snr_sampling():
            lam_min, lam_max = self._log_snr_range()
            t = self.process.schedule.t_from_log_snr(lam_max - u * (lam_max - lam_min))
            return t, (lam_max - lam_min) / -self.process.schedule.dlog_snr(t)
        span = self.t_max - self.t_first
        return self.t_first + u * span, torch.full_like(u, span)

    def _decoder_log_std(self, t: Tensor) -> Tensor:
        r"""Reconstruction std at the first time: :math:`\log(\sigma_{t_1}/\alpha_{t_1})`."""
        alpha, sigma = self.process.alpha_sigma(t)
        return torch.log(sigma) - torch.log(alpha)

    def _reconstruction(self, x0: Tensor, cond: Tensor | None, noise: Tensor) -> Tensor:
        """-log p(x0 | x_{t_1}) (B,) nats, with x_{t_1} drawn from ``noise``."""
        t1 = self._t_tensor(self.t_first, x0.shape[0], x0.device)
        d = self.denoiser(self.process.marginal(x0, t1, noise), t1, cond)
        return reconstruction_nll(x0, d.x0, self._decoder_log_std(t1), self.levels)

    def _step_kl(self, x0: Tensor, x_t: Tensor, t: Tensor, d: Denoised, *, detach_mean: bool) -> Tensor:
        """KL term of the step t -> t - 1/T (B,) nats; rows with t = 1/T are not meaningful."""
        s = torch.where(t > 1.5 / self.T, t - 1.0 / self.T, 0.5 * t)
        log_var = reverse_log_variance(self.process, s, t, d.var_frac, self.config.reverse_variance)
        x0_hat = d.x0.detach() if detach_mean else d.x0
        return diffusion_step_kl(self.process, x0, x_t, x0_hat, s, t, log_var)

    # ---- the interface -------------------------------------------------------------------------

    def loss(self, batch: Batch) -> LossOutput:
        self._check_batch(batch)
        x0 = batch.x
        dims = x0[0].numel()
        cond = drop_labels(batch, self.config.cond_drop_prob)
        t, inv_density = self._train_times(batch)
        eps = batch.randn(*x0.shape[1:], dtype=x0.dtype)
        x_t = self.process.marginal(x0, t, eps)
        d = self.denoiser(x_t, t, cond)
        sq_err = sum_except_batch((eps - d.eps) ** 2)
        metrics: dict[str, Tensor] = {}
        total = torch.zeros(x0.shape[0], dtype=torch.float64, device=x0.device)
        if self.config.loss in ("simple", "hybrid"):
            if self.weighting == "likelihood":
                w = 0.5 * -self.process.schedule.dlog_snr(t) * inv_density
            else:
                alpha, sigma = self.process.alpha_sigma(t)
                w = eps_mse_weight(self.weighting, alpha, sigma, min_snr_gamma=self.config.min_snr_gamma)
            simple = w * sq_err / dims
            metrics["mse_eps"] = sq_err.detach().mean() / dims
            total = total + simple
        if self.config.loss in ("vlb", "hybrid"):
            prior = prior_kl(self.process, x0, self.t_max)
            if self.T:
                first = t < 1.5 / self.T
                # the decoder on every row (boolean indexing would synchronize) at the first step's
                # std; used where t = t_1 only (log_normal_interval keeps far-off rows finite)
                log_std = self._decoder_log_std(torch.full_like(t, 1 / self.T))
                decoder = reconstruction_nll(x0, d.x0, log_std, self.levels).to(total.dtype)
                kl = self._step_kl(
                    x0, x_t, t, d, detach_mean=self.config.loss == "hybrid" and self.config.learn_variance
                )
                vlb = prior + inv_density * torch.where(first, decoder, kl)
            else:
                dlam = -self.process.schedule.dlog_snr(t) * inv_density
                diffusion = log_snr_diffusion_term(eps, d.eps, dlam)
                rec = self._reconstruction(x0, cond, batch.randn(*x0.shape[1:], dtype=x0.dtype))
                vlb = prior + diffusion + rec
            metrics["vlb_nats_per_dim"] = vlb.detach().mean() / dims
            total = total + (1.0 if self.config.loss == "vlb" else self.config.hybrid_lambda) * vlb / dims
        return LossOutput(total.mean().to(x0.dtype), total.detach(), metrics)

    def nll(self, batch: Batch, *, estimator: str = "bound") -> NLLOutput:
        self.check_estimator(estimator)
        self._check_batch(batch)
        x0, cond = batch.x, batch.cond
        dims = x0[0].numel()
        num_dims = torch.full((x0.shape[0],), float(dims), device=x0.device)
        if estimator == "ode":
            nll = self._nll_ode(batch)
            return NLLOutput(nll, num_dims, {"ode": nll})
        with torch.no_grad():
            prior = prior_kl(self.process, x0, self.t_max)
            denoise, c = partial(self.denoiser, cond=cond), self.config
            if self.T:
                diffusion = discrete_time_bound(self.process, x0, self.T, denoise, batch, c.reverse_variance)
            else:
                eps_hat = lambda x_t, t: denoise(x_t, t).eps  # noqa: E731
                lam = self._log_snr_range()
                diffusion = log_snr_bound(self.process, x0, lam, c.bound_samples, eps_hat, batch)
            rec = self._reconstruction(x0, cond, batch.randn(*x0.shape[1:], dtype=x0.dtype))
        nll = prior + diffusion + rec
        return NLLOutput(nll, num_dims, {"prior": prior, "diffusion": diffusion, "reconstruction": rec})

    def _nll_ode(self, batch: Batch) -> Tensor:
        r"""-log p(x0) through the PF-ODE; quantized data is uniformly dequantized:
        :math:`-\log P(x) \le E_u[-\log p(x + u)] - D\log\Delta`, :math:`\Delta = 2/(L-1)`."""
        x0, cond = batch.x, batch.cond
        dims = x0[0].numel()
        correction = 0.0
        if self.levels is not None:
            width = 2.0 / (self.levels - 1)
            x0 = x0 + (batch.rand(*x0.shape[1:], dtype=x0.dtype) - 0.5) * width
            correction = -dims * math.log(width)
        ctx = self._context(cond, 1.0, None, clip=None)
        logp = ode_log_likelihood(
            ctx.velocity,
            x0,
            t_min=self.t_first,
            t_max=self.t_max,
            prior_std=self.process.prior_std(self.t_max),
            exact_divergence=dims <= self.config.exact_divergence_max_dim,
            hutchinson_samples=self.config.hutchinson_samples,
            rtol=self.config.ode_rtol,
            atol=self.config.ode_atol,
        )
        return (-logp + correction).to(torch.float64)

    def _context(
        self,
        cond: Tensor | None,
        guidance_scale: float,
        generator: torch.Generator | None,
        clip: float | None,
    ) -> SamplerContext:
        c = self.config
        return SamplerContext(
            process=self.process,
            denoise=lambda x, t: self.denoiser(x, t, cond, guidance_scale=guidance_scale, clip=clip),
            generator=generator,
            reverse_variance=c.reverse_variance,
            ddim_eta=c.ddim_eta,
            pc_snr=c.pc_snr,
            pc_corrector_steps=c.pc_corrector_steps,
            ode_rtol=c.ode_rtol,
            ode_atol=c.ode_atol,
        )

    def sampler_info(self, name: str) -> SamplerInfo:
        self.check_sampler(name)
        spec = GAUSSIAN_SAMPLERS.get(name)
        c = self.config
        nfe = None if spec.adaptive else spec.nfe_per_step + (c.pc_corrector_steps if spec.corrector else 0)
        return SamplerInfo(
            name,
            nfe_per_step=nfe,
            default_steps=c.sample_steps or (self.T or DEFAULT_CONTINUOUS_STEPS),
            max_steps=self.T or None,
            deterministic=spec.deterministic and (name != "ddim" or c.ddim_eta == 0),
            limit="the model's timesteps",
        )

    def estimator_info(self, name: str) -> EstimatorInfo:
        self.check_estimator(name)
        # the ODE likelihood is exact up to solver tolerance, but Monte Carlo with Hutchinson's
        # trace or uniform dequantization; the bound is Monte Carlo over its noise draws
        hutchinson = math.prod(self.event_shape) > self.config.exact_divergence_max_dim
        monte_carlo = name == "bound" or hutchinson or self.levels is not None
        return EstimatorInfo(name, exact=name == "ode" and self.levels is None, monte_carlo=monte_carlo)

    def generate(self, request: SampleRequest) -> SampleOutput:
        shape, sampler = request.shape, request.sampler
        device = self.device
        cond = sample_labels(request.cond, shape[0], self.num_classes, device)
        known_pair = check_known(request.known, request.known_mask, shape)
        if known_pair is not None:
            known_pair = (known_pair[0].to(device), known_pair[1].to(device))
        if GAUSSIAN_SAMPLERS.get(sampler).adaptive:
            grid = torch.tensor([self.t_max, self.t_first, 0.0], dtype=torch.float64)
        else:
            grid = time_grid(request.steps, timesteps=self.T, t_max=self.t_max)
        generator = request.generator
        x = randn(shape, generator=generator, device=device) * self.process.prior_std(self.t_max)
        ctx = self._context(cond, request.guidance_scale, generator, self.clip)
        nfe_before = self.denoiser.nfe
        with torch.no_grad():
            x, trajectory = run_sampler(
                sampler,
                x,
                grid.to(device),
                ctx,
                known=known_pair,
                return_trajectory=request.return_trajectory,
                progress=request.progress,
            )
        return SampleOutput(x, trajectory, self.denoiser.nfe - nfe_before)


@METHODS.register("gaussian", config=GaussianConfig)
def build_gaussian(config: GaussianConfig, info, net_factory) -> GaussianDiffusion:
    """Build from a data set's :class:`~discodiff.data.DataInfo` and a network factory."""
    from ..nets import NetSpec

    if info.kind != "continuous":
        raise ConfigError(
            "method 'gaussian' models continuous data, but this data set gives tokens; use a "
            "categorical method or an embedding method"
        )
    channels = info.event_shape[0] * (2 if config.learn_variance else 1)
    net = net_factory(NetSpec(info.event_shape, channels, num_classes=info.num_classes))
    return GaussianDiffusion(
        net,
        config,
        event_shape=info.event_shape,
        levels=info.levels,
        value_range=info.value_range,
        num_classes=info.num_classes,
    )
