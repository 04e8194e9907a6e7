r"""Samplers for Gaussian diffusion: one step function each, one driver for all.

A step maps :math:`x_t` to :math:`x_s` for :math:`s < t` on a descending time grid. The driver
(:func:`run_sampler`) walks the grid, re-imposes known values (inpainting), records a trajectory,
and ends every sampler the same way: the last step to t = 0 returns the denoiser's
:math:`\hat x_0` (Tweedie's estimate, Song et al. 2021's final "denoising" step; for ancestral and
DDIM it is exactly their step to s = 0).

The probability-flow ODE is written with the velocity
:math:`\frac{dx}{dt} = \alpha'(t)\hat x_0 + \sigma'(t)\hat\epsilon`, which equals
:math:`f(t)x - \tfrac12 g(t)^2\nabla\log p_t(x)` (Song et al. 2021, Eq. 13) and stays finite
where :math:`\alpha \to 0`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torchdiffeq import odeint
from tqdm.auto import tqdm

from ..registry import Registry
from ..utils import append_dims, randn
from .likelihood import ODE_TOLERANCE
from .losses import reverse_log_variance
from .precond import Denoised
from .process import GaussianProcess

TRAJECTORY_POINTS = 9
"""How many grid points a recorded trajectory keeps (evenly spaced, ends included)."""

LANGEVIN_MIN_GRAD_NORM = 1e-12
"""Floor on the score norm in the Langevin step size, so a zero score cannot divide by zero."""


@dataclass
class SamplerContext:
    """What a step needs besides the state: the process, the denoiser and the options."""

    process: GaussianProcess
    denoise: Callable[[Tensor, Tensor], Denoised]
    generator: torch.Generator | None = None
    reverse_variance: str = "small"
    ddim_eta: float = 0.0
    pc_snr: float = 0.16
    pc_corrector_steps: int = 1
    ode_rtol: float = ODE_TOLERANCE
    ode_atol: float = ODE_TOLERANCE

    def randn_like(self, x: Tensor) -> Tensor:
        return randn(tuple(x.shape), generator=self.generator, device=x.device, dtype=x.dtype)

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        r"""Probability-flow ODE velocity :math:`\alpha'\hat x_0 + \sigma'\hat\epsilon`."""
        d = self.denoise(x, t)
        c = self.process.coefficients(t)
        return append_dims(c.dalpha, x) * d.x0 + append_dims(c.dsigma, x) * d.eps


Step = Callable[[Tensor, Tensor, Tensor, SamplerContext], Tensor]


@dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler: its step, whether it picks its own steps (adaptive solvers), its
    network calls per step (plus the Langevin corrector's, where it has one) and whether it is
    deterministic given the prior draw (DDIM: when eta = 0)."""

    step: Step
    adaptive: bool = False
    nfe_per_step: int = 1
    corrector: bool = False
    deterministic: bool = False


GAUSSIAN_SAMPLERS: Registry[SamplerSpec] = Registry("Gaussian sampler")


def _register(
    name: str, *, adaptive: bool = False, nfe: int = 1, corrector: bool = False, deterministic: bool = False
):
    def deco(fn: Step) -> Step:
        GAUSSIAN_SAMPLERS.register(name)(SamplerSpec(fn, adaptive, nfe, corrector, deterministic))
        return fn

    return deco


@_register("ancestral")
def ancestral_step(x: Tensor, t: Tensor, s: Tensor, ctx: SamplerContext) -> Tensor:
    r"""Draw :math:`x_s \sim p_\theta(x_s|x_t) = \mathcal N(\tilde\mu(x_t,\hat x_0), \Sigma)`.

    Ho et al. 2020, Algorithm 2, generalized to any s < t (respacing, Nichol & Dhariwal 2021,
    Sec. 4); :math:`\Sigma` is the posterior ("small"), transition ("large") or learned variance.
    """
    d = ctx.denoise(x, t)
    mean, _ = ctx.process.posterior(x, d.x0, s, t)
    log_var = reverse_log_variance(ctx.process, s, t, d.var_frac, ctx.reverse_variance)
    std = torch.exp(0.5 * log_var)
    std = append_dims(std, x) if std.dim() == 1 else std.to(x.dtype)
    return mean + std * ctx.randn_like(x)


@_register("ddim", deterministic=True)
def ddim_step(x: Tensor, t: Tensor, s: Tensor, ctx: SamplerContext) -> Tensor:
    r"""DDIM (Song, Meng & Ermon 2021, Eq. 12):
    :math:`x_s = \alpha_s\hat x_0 + \sqrt{\sigma_s^2 - c^2}\,\hat\epsilon + c z`,
    :math:`c = \eta\tilde\sigma`; :math:`\eta = 0` is deterministic, :math:`\eta = 1` ancestral."""
    d = ctx.denoise(x, t)
    alpha_s, sigma_s = ctx.process.alpha_sigma(s)
    _, _, post_var = ctx.process.posterior_coefficients(s, t)
    c = ctx.ddim_eta * torch.sqrt(post_var)
    dir_coef = torch.sqrt((sigma_s**2 - c**2).clamp(min=0))
    out = append_dims(alpha_s, x) * d.x0 + append_dims(dir_coef, x) * d.eps
    if ctx.ddim_eta > 0:
        out = out + append_dims(c, x) * ctx.randn_like(x)
    return out


@_register("euler_maruyama")
def euler_maruyama_step(x: Tensor, t: Tensor, s: Tensor, ctx: SamplerContext) -> Tensor:
    r"""Reverse SDE :math:`dx = [f x - g^2\nabla\log p_t]dt + g\,d\bar w` (Song et al. 2021,
    Eq. 6), one Euler-Maruyama step from t down to s."""
    d = ctx.denoise(x, t)
    f, g2 = ctx.process.drift_diffusion(t)
    _, sigma = ctx.process.alpha_sigma(t)
    score = -d.eps / append_dims(sigma, x)
    h = append_dims(t - s, x)
    drift = append_dims(f, x) * x - append_dims(g2, x) * score
    return x - h * drift + torch.sqrt(append_dims(g2, x) * h) * ctx.randn_like(x)


def langevin_correct(x: Tensor, t: Tensor, s: Tensor, ctx: SamplerContext) -> Tensor:
    r"""Annealed Langevin corrector at time t (Song et al. 2021, Algorithm 4/5): step
    :math:`\epsilon = 2 a (r\,\overline{\|z\|}/\overline{\|\nabla\log p\|})^2` with
    signal-to-noise ratio r, norms averaged over the batch as in their code (a per-example ratio
    explodes where the score vanishes), and :math:`a = \alpha_{t|s}^2` (the step's
    :math:`1-\beta_i` for VP, 1 for VE)."""
    _, sigma = ctx.process.alpha_sigma(t)
    a_ts, _ = ctx.process.transition(s, t)
    for _ in range(ctx.pc_corrector_steps):
        score = -ctx.denoise(x, t).eps / append_dims(sigma, x)
        z = ctx.randn_like(x)
        grad_norm = score.reshape(x.shape[0], -1).norm(dim=1).mean()
        noise_norm = z.reshape(x.shape[0], -1).norm(dim=1).mean()
        ratio = ctx.pc_snr * noise_norm / grad_norm.clamp_min(LANGEVIN_MIN_GRAD_NORM)
        step = append_dims(2 * a_ts.to(x.dtype) ** 2 * ratio**2, x)
        x = x + step * score + torch.sqrt(2 * step) * z
    return x


@_register("pc", corrector=True)
def predictor_corrector_step(x: Tensor, t: Tensor, s: Tensor, ctx: SamplerContext) -> Tensor:
    """Predictor-corrector (Song et al. 2021, Algorithm 1): Langevin corrector at t, then an
    Euler-Maruyama predictor step to s."""
    return euler_maruyama_step(langevin_correct(x, t, s, ctx), t, s, ctx)


@_register("ode_euler", deterministic=True)
def ode_euler_step(x: Tensor, t: Tensor, s: Tensor, ctx: SamplerContext) -> Tensor:
    """Probability-flow ODE, one Euler step."""
    return x + append_dims(s - t, x) * ctx.velocity(x, t)


@_register("ode_heun", nfe=2, deterministic=True)
def ode_heun_step(x: Tensor, t: Tensor, s: Tensor, ctx: SamplerContext) -> Tensor:
    """Probability-flow ODE, one Heun (2nd-order) step (Karras et al. 2022, Algorithm 1)."""
    h = append_dims(s - t, x)
    v_t = ctx.velocity(x, t)
    x_euler = x + h * v_t
    return x + h * 0.5 * (v_t + ctx.velocity(x_euler, s))


@_register("edm_heun", nfe=2, deterministic=True)
def edm_heun_step(x: Tensor, t: Tensor, s: Tensor, ctx: SamplerContext) -> Tensor:
    r"""Heun's method on the probability-flow ODE in scaled variables (Karras et al. 2022, Alg. 1).

    With :math:`y = x/\alpha` and :math:`\tau = \sigma/\alpha` the ODE is
    :math:`dy/d\tau = \hat\epsilon` (Song, Meng & Ermon 2021, Eq. 14; Karras et al. 2022, Eq. 4
    with :math:`s = \alpha`); for VE, :math:`\tau = \sigma`. One step:
    :math:`\hat y = y + (\tau_s - \tau_t)\hat\epsilon(x_t, t)`,
    :math:`y_s = y + (\tau_s - \tau_t)\tfrac12(\hat\epsilon(x_t, t) + \hat\epsilon(\alpha_s\hat y, s))`.
    Its Euler half alone is deterministic DDIM (:func:`ddim_step` with :math:`\eta = 0`). Needs
    :math:`\alpha > 0` on the grid (VE, or VP with :math:`\bar\alpha(t_{max}) > 0`).
    """
    a_t, s_t = ctx.process.alpha_sigma(t)
    a_s, s_s = ctx.process.alpha_sigma(s)
    h = append_dims(s_s / a_s - s_t / a_t, x)
    y = x / append_dims(a_t, x)
    eps_t = ctx.denoise(x, t).eps
    y_euler = y + h * eps_t
    eps_s = ctx.denoise(append_dims(a_s, x) * y_euler, s).eps
    return append_dims(a_s, x) * (y + h * 0.5 * (eps_t + eps_s))


@_register("ode_adaptive", adaptive=True, deterministic=True)
def ode_adaptive_step(x: Tensor, t: Tensor, s: Tensor, ctx: SamplerContext) -> Tensor:
    """Probability-flow ODE from t to s with torchdiffeq's adaptive dopri5 (rtol, atol).

    The solver may probe times just past s (it steps over the end and interpolates); the velocity
    there is evaluated at s.
    """
    lo, hi = float(s[0]), float(t[0])

    def f(tau: Tensor, y: Tensor) -> Tensor:
        return ctx.velocity(y, tau.to(torch.float64).clamp(lo, hi).expand(y.shape[0]))

    span = torch.stack([t[0], s[0]]).to(x.dtype)
    return odeint(f, x, span, rtol=ctx.ode_rtol, atol=ctx.ode_atol, method="dopri5")[-1]


def time_grid(steps: int, *, timesteps: int, t_max: float = 1.0) -> Tensor:
    """Descending float64 grid from ``t_max`` to 0 with ``steps`` intervals.

    Discrete-time models (``timesteps`` = T > 0) use evenly spaced points of their own grid
    ``i / T`` (respacing, Nichol & Dhariwal 2021, Sec. 4); continuous-time models (T = 0) use
    evenly spaced times.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if timesteps > 0:
        if steps > timesteps:
            raise ValueError(f"steps ({steps}) cannot exceed the model's timesteps ({timesteps})")
        idx = np.round(np.linspace(timesteps * t_max, 0, steps + 1))
        return torch.tensor(idx / timesteps, dtype=torch.float64)
    return torch.linspace(t_max, 0, steps + 1, dtype=torch.float64)


def run_sampler(
    sampler: str,
    x: Tensor,
    grid: Tensor,
    ctx: SamplerContext,
    *,
    known: tuple[Tensor, Tensor] | None = None,
    return_trajectory: bool = False,
    progress: bool = False,
) -> tuple[Tensor, list[tuple[float, Tensor]]]:
    """Walk ``grid`` (descending, ending at 0) from the prior sample ``x``.

    ``known`` = (values, mask) re-imposes the known part at every grid time s, noised to
    :math:`q(x_s|x_0)` (replacement inpainting; exact at s = 0).
    """
    spec = GAUSSIAN_SAMPLERS.get(sampler)
    n = x.shape[0]
    keep = set(np.round(np.linspace(0, len(grid) - 1, min(TRAJECTORY_POINTS, len(grid)))).astype(int))
    trajectory = [(float(grid[0]), x.detach().clone())] if return_trajectory else []
    pairs = list(zip(grid[:-1].tolist(), grid[1:].tolist()))
    for i, (t_val, s_val) in enumerate(tqdm(pairs, desc=sampler, disable=not progress, leave=False)):
        t = torch.full((n,), t_val, dtype=torch.float64, device=x.device)
        s = torch.full((n,), s_val, dtype=torch.float64, device=x.device)
        x = ctx.denoise(x, t).x0 if s_val == 0 else spec.step(x, t, s, ctx)
        if known is not None:
            values, mask = known
            if s_val == 0:
                noised = values
            else:
                alpha, sigma = ctx.process.alpha_sigma(s)
                noised = append_dims(alpha, x) * values + append_dims(sigma, x) * ctx.randn_like(x)
            x = torch.where(mask, noised.to(x.dtype), x)
        if not torch.isfinite(x).all():
            raise FloatingPointError(
                f"sampler {sampler!r} produced non-finite values at t={s_val:.4g}; "
                "try more steps, another sampler, or clipping"
            )
        if return_trajectory and i + 1 in keep:
            trajectory.append((s_val, x.detach().clone()))
    return x, trajectory
