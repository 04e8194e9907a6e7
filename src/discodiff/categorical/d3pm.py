r"""D3PM: discrete-time categorical diffusion with an x_0-parameterized reverse process.

Austin et al. 2021 over any :class:`~discodiff.categorical.transitions.Transition`, on the grid
:math:`t_i = i/T`. The network maps :math:`(x_t, t)` to logits over the K data ids,
:math:`\hat p(x_0|x_t)` per token (never over [MASK]); the reverse step marginalizes it through
the forward posterior, in one of two forms (``reverse``):

- ``"average"`` (default): :math:`p_\theta(x_s|x_t) = \sum_{x_0} q(x_s|x_t,x_0)\,\hat p(x_0|x_t)`
  (Vignac et al. 2023), :meth:`Transition.log_posterior_expected`. The softmax is the denoising
  posterior itself: exact when it equals :math:`p(x_0^i|x_t)`, the target of the auxiliary
  cross-entropy, and what the continuous-time samplers and argmax decoding need.
- ``"d3pm"``: :math:`p_\theta(x_s|x_t) \propto \sum_{x_0} q(x_s, x_t|x_0)\,\tilde p(x_0|x_t)`
  (Austin et al. 2021, Eq. 4), :meth:`Transition.log_posterior_joint`. It weights each
  :math:`x_0` again by :math:`q(x_t|x_0)`, so its optimal :math:`\tilde p` is
  :math:`\propto p(x_0|x_t)/q(x_t|x_0)`, not the posterior, and the cross-entropy pulls against the
  bound (except for absorbing transitions, where the two forms coincide).

Variational bound (Austin et al. 2021, Eq. 1 and Sec. 3.3; Sohl-Dickstein et al. 2015), per
example in nats:

.. math::
    L_{vb} = D_{KL}(q(x_1|x_0)\,\|\,p(x_1)) + \sum_{i=2}^{T} E_q\,D_{KL}(q(x_{t_{i-1}}|x_{t_i},x_0)\,
    \|\,p_\theta(x_{t_{i-1}}|x_{t_i})) - E_q \log p_\theta(x_0|x_{t_1}),

where the last term is the i = 1 KL (its posterior is the point mass on :math:`x_0`). Training
draws one i per example (:math:`L_{vb} \approx \text{prior} + T\,L_i`); ``nll`` sums all T terms,
or with ``nll_time_samples`` k estimates the i = 2..T sum from k stratified steps per example
(unbiased; the prior and i = 1 terms stay exact).
Hybrid loss (Austin et al. 2021, Eq. 5): :math:`L_{vb} + \lambda\,E_q[-\log\hat p(x_0|x_t)]`,
divided by the number of tokens. (D3PM's code weights the cross-entropy against one step's
:math:`L_i`, i.e. its lambda is this one divided by T.)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
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
from ..config import Spec, component
from ..errors import ConfigError
from ..progress import track
from ..schedules import SCHEDULES, Schedule
from ..utils import stratified_steps, sum_except_batch
from .closed_d3pm import step_kl_and_ce
from .closed_forms import closed_form
from .guidance import guided_log_probs, network_calls
from .sampling import sample_categorical, sharpen, uniform
from .transition_configs import TRANSITIONS, build_transition
from .transitions import Transition
from .validation import check_known_tokens, check_logits, check_tokens

TRAJECTORY_POINTS = 9
"""How many grid points a recorded trajectory keeps (evenly spaced, ends included)."""


@dataclass
class D3PMConfig:
    """``method: {name: d3pm, ...}``: discrete-time categorical diffusion over token data."""

    transition: Spec = component(TRANSITIONS, "uniform")
    schedule: Schedule = component(SCHEDULES, "cosine")  # keep probability alpha_bar(t)
    timesteps: int = 1000  # T: the grid i / T
    reverse: Literal["average", "d3pm"] = "average"  # reverse-step form (module docstring)
    hybrid_lambda: float = 0.01  # weight of the x0 cross-entropy (Austin et al. 2021, Eq. 5)
    cond_drop_prob: float = 0.0  # label dropout for classifier-free guidance
    sampler: Literal["ancestral", "argmax"] = "ancestral"  # default sampler
    sample_steps: int | None = None  # default steps (None: T); fewer skip with q(x_s|x_t,x0)
    temperature: float = 1.0  # applied to p(x0|x_t) when sampling; 0 = argmax x0
    top_p: float = 1.0  # nucleus filtering of p(x0|x_t) when sampling
    nll_time_samples: int = 0  # nll: steps per example estimating the i = 2..T sum (0 or >= T - 1: all)

    def __post_init__(self) -> None:
        if self.timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, got {self.timesteps}")
        if self.hybrid_lambda < 0:
            raise ValueError(f"hybrid_lambda must be >= 0, got {self.hybrid_lambda}")
        if not 0 <= self.cond_drop_prob < 1:
            raise ValueError(f"cond_drop_prob must be in [0, 1), got {self.cond_drop_prob}")
        if self.sample_steps is not None and not 1 <= self.sample_steps <= self.timesteps:
            raise ValueError(
                f"sample_steps must be in 1 .. timesteps={self.timesteps}, got {self.sample_steps}"
            )
        if self.nll_time_samples < 0:
            raise ValueError(
                f"nll_time_samples must be >= 0 (0: sum every step), got {self.nll_time_samples}"
            )
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(
                f"need temperature >= 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}"
            )


class D3PM(Method):
    """Transition + x0-parameterized network on token data; see the module docstring.

    Args:
        net: ``net(x_t, t, cond) -> (B, *event_shape, K)`` logits; ``x_t`` holds ids in
            ``[0, transition.num_states)``.
        transition: the forward process.
        config: options (its ``transition`` and ``schedule`` are only read by :func:`build_d3pm`).
        event_shape: shape of one example, e.g. ``(L,)``.
        num_classes: number of class labels (0: unconditional).
    """

    samplers = ("ancestral", "argmax")
    nll_estimators = ("bound",)
    representation = "tokens"
    known_semantics = "replacement"

    @property
    def loss_label(self) -> str:
        lam = self.config.hybrid_lambda
        return "bound, nats per token" + (f" + {lam:g} x cross-entropy" if lam else "")

    def __init__(
        self,
        net: Callable,
        transition: Transition,
        config: D3PMConfig,
        *,
        event_shape: Sequence[int],
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.net = net
        self.transition = transition
        self.config = config
        self.event_shape = tuple(event_shape)
        self.num_classes = num_classes
        self.T = config.timesteps
        self.nfe = 0
        self.closed = closed_form(transition)  # uniform / absorbing: closed forms; None: generic path

    # ---- parameterization ----------------------------------------------------------------------

    def denoise(
        self, x_t: Tensor, t: Tensor, cond: Tensor | None = None, *, guidance_scale: float = 1.0
    ) -> Tensor:
        r"""Network estimate :math:`\log\hat p(x_0|x_t)`: ``(B, *D)`` long, ``(B,)`` -> ``(B, *D, K)``.

        With ``guidance_scale`` w != 1, classifier-free guidance in log space:
        :math:`\log\hat p \propto \log\hat p_u + w(\log\hat p_c - \log\hat p_u)` (Ho & Salimans 2022,
        applied to log-probabilities).
        """
        self.nfe += network_calls(guidance_scale)
        return guided_log_probs(self._logits, x_t, t, cond, guidance_scale)

    def _logits(self, x: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
        """The network's checked logits over the data ids, ``(B, *D, K)``."""
        return check_logits(
            self.net(x, t.to(torch.float32), cond), expected=(*x.shape, self.transition.vocab_size)
        )

    def reverse_from_x0(self, x_t: Tensor, log_p0: Tensor, s: Tensor, t: Tensor) -> Tensor:
        r""":math:`\log p_\theta(x_s|x_t)` ``(B, *D, S)`` from an x_0 distribution ``(B, *D, K)``."""
        return self.transition.log_reverse(x_t, log_p0, s, t, form=self.config.reverse)

    def reverse_log_probs(
        self,
        x_t: Tensor,
        s: Tensor,
        t: Tensor,
        cond: Tensor | None = None,
        *,
        guidance_scale: float = 1.0,
        temperature: float = 1.0,
        top_p: float = 1.0,
    ) -> Tensor:
        r"""The model's reverse step :math:`\log p_\theta(x_s|x_t)`, ``(B, *D, S)``, for s < t.

        ``temperature`` and ``top_p`` reshape :math:`\hat p(x_0|x_t)` before it is marginalized.
        """
        log_p0 = sharpen(
            self.denoise(x_t, t, cond, guidance_scale=guidance_scale), temperature=temperature, top_p=top_p
        )
        return self.reverse_from_x0(x_t, log_p0, s, t)

    # ---- bound terms ---------------------------------------------------------------------------

    def _token_kl(self, x0: Tensor, x_t: Tensor, s: Tensor, t: Tensor, log_p0: Tensor) -> Tensor:
        """Per-token KL of one step, ``(B, *D)``; ``-log p(x0|x_t)`` where s = 0."""
        return self.transition.step_kl(x0, x_t, s, t, log_p0, form=self.config.reverse)

    def step_kl(self, x0: Tensor, x_t: Tensor, s: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        r""":math:`D_{KL}(q(x_s|x_t,x_0)\,\|\,p_\theta(x_s|x_t))` summed over tokens, ``(B,)`` nats.

        At s = 0 this is the reconstruction term :math:`-\log p_\theta(x_0|x_t)`.
        """
        return sum_except_batch(self._kl_and_ce(x0, x_t, s, t, cond)[0])

    def _kl_and_ce(
        self, x0: Tensor, x_t: Tensor, s: Tensor, t: Tensor, cond: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        r"""Per-token step KL and :math:`-\log\hat p(x_0|x_t)`, ``(B, *D)`` each: in closed form
        (:mod:`.closed_d3pm`) for uniform and absorbing transitions, else from the dense posteriors."""
        if self.closed is not None:
            self.nfe += 1
            z = self._logits(x_t, t, cond)
            return step_kl_and_ce(self.closed, z, x_t, x0, s, t, self.config.reverse)
        log_p0 = self.denoise(x_t, t, cond)
        return self._token_kl(x0, x_t, s, t, log_p0), -log_p0.gather(-1, x0[..., None])[..., 0]

    # ---- the interface -------------------------------------------------------------------------

    def _check_batch(self, batch: Batch) -> Tensor:
        x0 = check_tokens(
            batch.x, num_ids=self.transition.vocab_size, event_shape=self.event_shape, what="batch.x"
        )
        if self.num_classes > 0 and batch.cond is None:
            raise ValueError("this model is class-conditional: the batch needs labels")
        return x0

    def _noise(self, x0: Tensor, t: Tensor, batch: Batch) -> Tensor:
        r"""Draw :math:`x_t \sim q(x_t|x_0)` with uniforms from ``batch.rand``."""
        return self.transition.sample_marginal(x0, t, batch.rand(*x0.shape[1:], 2, dtype=torch.float64))

    def loss(self, batch: Batch) -> LossOutput:
        x0 = self._check_batch(batch)
        cond = drop_labels(batch, self.config.cond_drop_prob)
        num_tokens = x0[0].numel()
        i = torch.clamp(torch.floor(batch.rand(dtype=torch.float64) * self.T), max=self.T - 1) + 1
        t, s = i / self.T, (i - 1) / self.T
        with torch.no_grad():
            prior = self.transition.prior_kl(x0)
        kl, ce = self._kl_and_ce(x0, self._noise(x0, t, batch), s, t, cond)
        step, ce = sum_except_batch(kl), sum_except_batch(ce)
        bound = prior.to(step.dtype) + self.T * step
        total = (bound + self.config.hybrid_lambda * ce) / num_tokens
        metrics = {  # tensors: no host synchronization (the trainer checks the loss is finite)
            "bound_nats_per_token": bound.detach().mean() / num_tokens,
            "ce_nats_per_token": ce.detach().mean() / num_tokens,
        }
        return LossOutput(total.mean(), total.detach(), metrics)

    def nll(self, batch: Batch, *, estimator: str = "bound") -> NLLOutput:
        r"""Per-example bound in nats: prior + diffusion (i = 2..T) + reconstruction (i = 1).

        Every step is summed unless ``nll_time_samples`` k < T - 1: then each example uses k
        stratified steps, an unbiased estimate of the sum of the T - 1 terms
        (:func:`~discodiff.utils.stratified_steps`).
        """
        self.check_estimator(estimator)
        x0 = self._check_batch(batch)
        B = x0.shape[0]
        num_dims = torch.full((B,), float(x0[0].numel()), device=x0.device)
        k = self.config.nll_time_samples
        steps, weight = stratified_steps(self.T, k, lambda: batch.rand(dtype=torch.float64), B, x0.device)

        def term(i: Tensor) -> Tensor:
            t, s = i / self.T, (i - 1) / self.T
            return self.step_kl(x0, self._noise(x0, t, batch), s, t, batch.cond).to(torch.float64)

        with torch.no_grad():
            prior = self.transition.prior_kl(x0).to(torch.float64)  # T terms accumulate in float64
            reconstruction = term(torch.ones(B, dtype=torch.float64, device=x0.device))
            diffusion = torch.zeros_like(prior)
            for i in steps:
                diffusion += term(i)
            diffusion *= weight  # 1 when every step is summed
        nll = prior + diffusion + reconstruction
        if not bool(torch.isfinite(nll).all()):
            raise FloatingPointError("D3PM bound is not finite")
        return NLLOutput(
            nll, num_dims, {"prior": prior, "diffusion": diffusion, "reconstruction": reconstruction}
        )

    def sampler_info(self, name: str) -> SamplerInfo:
        self.check_sampler(name)
        return SamplerInfo(
            name,
            nfe_per_step=1.0,
            default_steps=self.config.sample_steps or self.T,
            max_steps=self.T,
            deterministic=name == "argmax",
            limit="the model's timesteps",
        )

    def generate(self, request: SampleRequest) -> SampleOutput:
        r"""Ancestral sampling (``"ancestral"``) or the mode of every reverse step (``"argmax"``).

        ``steps`` < T walks the grid points ``round(linspace(T, 0, steps + 1))`` with the skip
        kernels :math:`p_\theta(x_s|x_t)` built from :math:`q(x_s|x_t,x_0)`. Known tokens are
        re-imposed after every step, noised to :math:`q(x_s|x_0)`, and exactly at the end.
        """
        shape, sampler, steps, generator = request.shape, request.sampler, request.steps, request.generator
        device = self.device
        cond = sample_labels(request.cond, shape[0], self.num_classes, device)
        known_pair = check_known_tokens(
            request.known, request.known_mask, shape, self.transition.vocab_size, device
        )
        nfe_before = self.nfe
        with torch.no_grad():
            prior = self.transition.log_prior().to(device).expand(*shape, self.transition.num_states)
            x = self._impose(sample_categorical(prior, generator=generator), known_pair, 1.0, generator)
            grid = np.round(np.linspace(self.T, 0, steps + 1)).astype(int).tolist()
            keep = set(
                np.round(np.linspace(0, steps, min(TRAJECTORY_POINTS, steps + 1))).astype(int).tolist()
            )
            trajectory = [(1.0, x.clone())] if request.return_trajectory else []
            pairs = list(itertools.pairwise(grid))
            bar = track(pairs, desc=sampler, enabled=request.progress)
            for k, (i, j) in enumerate(bar):
                x = self._reverse_step(x, i, j, cond, request.guidance_scale, sampler, generator)
                x = self._impose(x, known_pair, j / self.T, generator)
                if request.return_trajectory and k + 1 in keep:
                    trajectory.append((j / self.T, x.clone()))
        return SampleOutput(x, trajectory, self.nfe - nfe_before)

    def _reverse_step(
        self,
        x: Tensor,
        i: int,
        j: int,
        cond: Tensor | None,
        guidance_scale: float,
        sampler: str,
        generator: torch.Generator | None,
    ) -> Tensor:
        r"""One step from grid point i to j < i: a draw of :math:`p_\theta(x_{t_j}|x_{t_i})`, or its mode."""
        t = torch.full((x.shape[0],), i / self.T, dtype=torch.float64, device=x.device)
        s = torch.full_like(t, j / self.T)
        c = self.config
        log_ps = self.reverse_log_probs(
            x, s, t, cond, guidance_scale=guidance_scale, temperature=c.temperature, top_p=c.top_p
        )
        if sampler == "argmax":
            return log_ps.argmax(dim=-1)
        return sample_categorical(log_ps, generator=generator)

    def _impose(
        self, x: Tensor, known: tuple[Tensor, Tensor] | None, s: float, generator: torch.Generator | None
    ) -> Tensor:
        r"""Replace the known positions by a draw of :math:`q(x_s|x_0 = \text{known})` (exact at s = 0)."""
        if known is None:
            return x
        values, mask = known
        if s > 0:
            u = uniform((*values.shape, 2), generator=generator, device=values.device)
            values = self.transition.sample_marginal(values, s, u)
        return torch.where(mask, values, x)


@METHODS.register("d3pm", config=D3PMConfig)
def build_d3pm(config: D3PMConfig, info, net_factory) -> D3PM:
    """Build from a token data set's :class:`~discodiff.data.DataInfo` and a network factory."""
    from ..nets import NetSpec

    if info.kind != "tokens" or info.vocab_size is None:
        raise ConfigError("method 'd3pm' models token data (DataInfo.kind == 'tokens' with a vocab_size)")
    transition = build_transition(
        config.transition, vocab_size=info.vocab_size, schedule=config.schedule, timesteps=config.timesteps
    )
    spec = NetSpec(
        tuple(info.event_shape),
        transition.vocab_size,
        num_classes=info.num_classes,
        input_vocab=transition.num_states,
    )
    return D3PM(
        net_factory(spec), transition, config, event_shape=info.event_shape, num_classes=info.num_classes
    )
