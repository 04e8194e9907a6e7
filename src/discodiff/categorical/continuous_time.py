r"""The continuous-time ELBO, its estimators and the CTMC samplers, shared by every method whose
reverse process is a factorized CTMC given by probability ratios (:mod:`.ratios`).

A subclass says how its network gives the log-ratios :math:`\log s_\theta(x_t)` (x_0-prediction
in :mod:`.ctmc`, log-scores in :mod:`.sedd`) and the analytic reverse step; this base turns them
into the bound, the training loss and samples.

**Bound** (per example, nats; Campbell et al. 2022, Prop. 2; Lou et al. 2024, Sec. 3.3):

.. math::
    -\log p_\theta(x_0) \le D_{KL}(q(x_1|x_0)\,\|\,p(x_1))
    + \int_0^1 E_{q(x_t|x_0)}\sum_{d}\ell^d(x_t, t)\,dt,

with :math:`\ell` the score-entropy integrand (:func:`.ratios.score_entropy`). The forward process
starts at the data: :math:`q(x_t|x_0)` uses :math:`\bar\sigma(t) - \bar\sigma(0)`, so a schedule with
:math:`\bar\alpha(0) < 1` (the geometric one) needs no reconstruction term and the integral covers
all of [0, 1]. ``nll`` estimates the integral without bias by ``nll_time_samples`` stratified
times per example, :math:`t_j = (j + u_j)/N`; ``loss`` uses one time per example, stratified over
the global batch (index k of B: :math:`t = (k + u)/B`, a low-discrepancy draw as in Kingma et al.
2021 and MDLM), and reports the bound per token.

**Samplers** (``steps`` equal steps from t = 1 to 0, started from the prior :math:`p(x_1)`):
``analytic`` (the exact per-token reverse step given the ratios; the final step of every sampler,
so the output lies on the data ids), ``euler`` and ``tau_leaping`` (:mod:`.jumps`), and ``pc``:
tau-leaping followed at each new time s by ``corrector_steps`` tau-leaping steps of length
``corrector_step_size`` times the predictor's with the corrector rates
:math:`R(s)[x, y] + \hat R_\theta(s)[x, y]`, whose stationary distribution is :math:`q_s`
(Campbell et al. 2022, Sec. 4.4), once :math:`s \le` ``corrector_entry_time``.

**Infilling**: positions with ``known_mask`` hold their known value at every time and are never
updated. For absorbing transitions this conditions the reverse chain exactly (a clean token is
what :math:`q(x_t|x_0)` shows with probability :math:`\bar\alpha_t`, and the rates of the other
tokens are then those of :math:`p(x_0^{\text{other}}|x_0^{\text{known}}, x_t^{\text{other}})`);
for uniform and marginal transitions it is the usual approximation.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ..base import (
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
from ..errors import ConfigError
from ..guidance import guided_call
from ..progress import track
from ..utils import sum_except_batch
from .closed_forms import closed_form
from .d3pm import TRAJECTORY_POINTS
from .guidance import network_calls
from .jumps import MultiJump
from .ratio_rows import RatioRows
from .ratios import log_ratios_given_x0, score_entropy
from .sampling import sample_categorical
from .steps import LAST_TIME, ctmc_step, pin
from .transitions import ContinuousTimeTransition
from .validation import check_known_tokens, check_logits, check_tokens


@dataclass
class ContinuousTimeOptions:
    """Options every continuous-time method shares (keys of its ``method:`` section)."""

    nll_time_samples: int = 128  # stratified times per example in nll (unbiased bound estimate)
    cond_drop_prob: float = 0.0  # label dropout for classifier-free guidance
    sampler: Literal["analytic", "euler", "tau_leaping", "pc"] = "analytic"  # default sampler
    sample_steps: int = 128  # default number of sampler steps
    multi_jump: MultiJump = "reject"  # tau-leaping, nominal ids, >= 2 jumps: reject | keep_one
    ordinal: bool = False  # tau-leaping sums jumps and clamps (ordinal ids, no added states)
    corrector_steps: int = 1  # pc: corrector steps after each predictor step
    corrector_step_size: float = 1.0  # pc: corrector step length / predictor step length
    corrector_entry_time: float = 1.0  # pc: correct only once s <= this (Campbell et al.: 0.1)

    def __post_init__(self) -> None:
        if self.nll_time_samples < 1 or self.sample_steps < 1:
            raise ValueError(
                f"nll_time_samples and sample_steps must be >= 1, got {self.nll_time_samples}, "
                f"{self.sample_steps}"
            )
        if not 0 <= self.cond_drop_prob < 1:
            raise ValueError(f"cond_drop_prob must be in [0, 1), got {self.cond_drop_prob}")
        if self.corrector_steps < 0 or self.corrector_step_size <= 0:
            raise ValueError(
                f"need corrector_steps >= 0 and corrector_step_size > 0, got {self.corrector_steps}, "
                f"{self.corrector_step_size}"
            )
        if not 0 <= self.corrector_entry_time <= 1:
            raise ValueError(f"corrector_entry_time must be in [0, 1], got {self.corrector_entry_time}")


class ContinuousTimeMethod(Method):
    """A factorized reverse CTMC given by log-ratios; see the module docstring.

    Args:
        net: ``net(x_t, t, cond)``; what it returns is the subclass's business.
        transition: the forward CTMC.
        options: shared options.
        event_shape: shape of one example, e.g. ``(L,)``.
        num_classes: number of class labels (0: unconditional).
    """

    samplers = ("analytic", "euler", "tau_leaping", "pc")
    nll_estimators = ("bound",)
    representation = "tokens"
    known_semantics = "replacement"
    loss_label = "bound, nats per token"

    def __init__(
        self,
        net: Callable,
        transition: ContinuousTimeTransition,
        options: ContinuousTimeOptions,
        *,
        event_shape: Sequence[int],
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(transition, ContinuousTimeTransition):
            raise ConfigError(
                f"a continuous-time method needs a CTMC transition (uniform, absorbing, marginal or a "
                f"rate matrix), got {type(transition).__name__}"
            )
        if options.ordinal and transition.num_states != transition.vocab_size:
            raise ConfigError("ordinal: true needs a transition without added states (not absorbing)")
        self.net = net
        self.transition = transition
        self.options = options
        self.event_shape = tuple(event_shape)
        self.num_classes = num_classes
        self.nfe = 0
        self.closed = closed_form(transition)  # uniform / absorbing: closed forms; None: generic path

    # ---- what a subclass provides --------------------------------------------------------------

    @abstractmethod
    def log_ratios(
        self, x_t: Tensor, t: Tensor, cond: Tensor | None = None, *, guidance_scale: float = 1.0
    ) -> Tensor:
        r"""The model's :math:`\log s_\theta(x_t)_y`, ``(B, *D)``, ``(B,)`` -> ``(B, *D, S)``; 0 at
        :math:`y = x_t`."""

    def ratio_rows(
        self, x_t: Tensor, t: Tensor, cond: Tensor | None = None, *, guidance_scale: float = 1.0
    ) -> RatioRows:
        r"""The model's ratios in closed form (:class:`.ratio_rows.RatioRows`), used instead of
        :meth:`log_ratios` when :attr:`closed` is set (uniform and absorbing transitions). A
        subclass that cannot give them, or that trains against its own targets
        (:meth:`target_log_ratios`), sets :attr:`closed` to ``None``."""
        raise TypeError(f"{type(self).__name__} gives no closed-form ratios; set closed = None")

    @abstractmethod
    def analytic_log_probs(
        self, x_t: Tensor, s: Tensor, t: Tensor, cond: Tensor | None = None, *, guidance_scale: float = 1.0
    ) -> Tensor:
        r"""The model's analytic reverse step :math:`\log p_\theta(x_s|x_t)` (unnormalized),
        ``(B, *D, S)``, for s < t (s may be 0)."""

    def guided(
        self, x_t: Tensor, t: Tensor, cond: Tensor | None, guidance_scale: float, transform: Callable
    ) -> Tensor:
        r"""``transform(net(x_t, t, cond))``, or with classifier-free guidance (w != 1)
        :math:`f_u + w(f_c - f_u)` of the transformed conditional and null-label outputs (Ho &
        Salimans 2022, in the space ``transform`` maps to). Output ``(B, *D, K)``; counts
        network evaluations in :attr:`nfe`."""

        def output(x: Tensor, s: Tensor, c: Tensor | None) -> Tensor:
            logits = check_logits(self.net(x, s, c), expected=(*x.shape, self.transition.vocab_size))
            return transform(logits)

        out = guided_call(output, x_t, t.to(torch.float32), cond, guidance_scale)
        self.nfe += network_calls(guidance_scale)
        return out

    # ---- rates and the bound -------------------------------------------------------------------

    def reverse_rates(
        self, x_t: Tensor, t: Tensor, cond: Tensor | None = None, *, guidance_scale: float = 1.0
    ) -> Tensor:
        r"""Off-diagonal reverse rates :math:`\hat R_\theta(t)[x_t, y] = R(t)[y, x_t]\,s_\theta(x_t)_y`
        (0 at :math:`y = x_t`), ``(B, *D, S)`` in the network's dtype (the draws are float64)."""
        if self.closed is not None:
            rows = self.ratio_rows(x_t, t, cond, guidance_scale=guidance_scale)
            return self.closed.reverse_rates(rows, x_t, t)
        ratio = self.log_ratios(x_t, t, cond, guidance_scale=guidance_scale).exp()
        return ratio.mul_(self.rate_weights(x_t, t, dtype=ratio.dtype))

    def rate_weights(self, x_t: Tensor, t: Tensor, *, dtype: torch.dtype) -> Tensor:
        r"""Hook: the weights :math:`w_y` that make rates of ratios, :math:`\hat R(x_t, y) = w_y s_y`,
        ``(B, *D, S)``, 0 at :math:`y = x_t`. Default: the forward rates into :math:`x_t`,
        :math:`R(t)[y, x_t]` (a time reversal); discrete flow matching supplies its own."""
        return self.transition.jump_weights(x_t, t, dtype=dtype)

    def target_log_ratios(self, x0: Tensor, x_t: Tensor, t: Tensor, *, dtype: torch.dtype) -> Tensor:
        r"""Hook: :math:`\log s^{x_0}`, whose rates :math:`w_y s^{x_0}_y` are the data-conditioned
        process the bound compares the model with (score entropy), ``(B, *D, S)``. Default: the
        conditioned reverse chain, :math:`q(y|x_0)/q(x_t|x_0)`."""
        return log_ratios_given_x0(self.transition, x_t, x0, t, dtype=dtype)

    def elbo_integrand(
        self,
        x0: Tensor,
        x_t: Tensor,
        t: Tensor,
        cond: Tensor | None = None,
        *,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        r""":math:`\sum_d \ell^d(x_t, t)`, the bound's integrand at one draw :math:`x_t \sim q(x_t|x_0)`,
        ``(B,)`` nats per unit time (:func:`.ratios.score_entropy`; in closed form for uniform and
        absorbing transitions, :mod:`.closed_forms`); ``dtype``: compute in this precision
        (default: the network's)."""
        if self.closed is not None:
            rows = self.ratio_rows(x_t, t, cond)
            return sum_except_batch(self.closed.score_entropy(rows, x_t, x0, t, dtype=dtype))
        log_ratio = self.log_ratios(x_t, t, cond)
        if dtype is not None:
            log_ratio = log_ratio.to(dtype)
        true = self.target_log_ratios(x0, x_t, t, dtype=log_ratio.dtype)
        weights = self.rate_weights(x_t, t, dtype=log_ratio.dtype)
        return sum_except_batch(score_entropy(log_ratio, true, weights))

    # ---- the interface -------------------------------------------------------------------------

    def _check_batch(self, batch: Batch) -> Tensor:
        x0 = check_tokens(
            batch.x, num_ids=self.transition.vocab_size, event_shape=self.event_shape, what="batch.x"
        )
        if self.num_classes > 0 and batch.cond is None:
            raise ValueError("this model is class-conditional: the batch needs labels")
        return x0

    def _noise(self, x0: Tensor, t: Tensor, batch: Batch) -> Tensor:
        return self.transition.sample_marginal(x0, t, batch.rand(*x0.shape[1:], 2, dtype=torch.float64))

    def _train_times(self, batch: Batch) -> Tensor:
        """One time per example, stratified over the global batch: ``(k + u) / B``, k its global index."""
        offset, total = batch.rows if batch.rows is not None else (0, batch.size)
        k = torch.arange(offset, offset + batch.size, device=batch.x.device, dtype=torch.float64)
        return ((k + batch.rand(dtype=torch.float64)) / total).clamp(max=LAST_TIME)

    def loss(self, batch: Batch) -> LossOutput:
        x0 = self._check_batch(batch)
        cond = drop_labels(batch, self.options.cond_drop_prob)
        t = self._train_times(batch)
        with torch.no_grad():
            prior = self.transition.prior_kl(x0)
        integrand = self.elbo_integrand(x0, self._noise(x0, t, batch), t, cond)
        bound = (prior.to(integrand.dtype) + integrand) / x0[0].numel()
        return LossOutput(bound.mean(), bound.detach(), {"bound_nats_per_token": bound.detach().mean()})

    def nll(self, batch: Batch, *, estimator: str = "bound") -> NLLOutput:
        self.check_estimator(estimator)
        x0 = self._check_batch(batch)
        n = self.options.nll_time_samples
        num_dims = torch.full((x0.shape[0],), float(x0[0].numel()), device=x0.device)
        with torch.no_grad():
            prior = self.transition.prior_kl(x0, dtype=torch.float64)
            u = batch.rand(n, dtype=torch.float64)
            diffusion = torch.zeros_like(prior)
            for j in range(n):
                t = ((j + u[:, j]) / n).clamp(max=LAST_TIME)
                x_t = self._noise(x0, t, batch)
                diffusion += self.elbo_integrand(x0, x_t, t, batch.cond, dtype=torch.float64) / n
        nll = prior + diffusion
        if not bool(torch.isfinite(nll).all()):
            raise FloatingPointError(f"{type(self).__name__} bound is not finite")
        return NLLOutput(nll, num_dims, {"prior": prior, "diffusion": diffusion})

    @property
    def default_sampler(self) -> str:
        return self.options.sampler

    def sampler_info(self, name: str) -> SamplerInfo:
        self.check_sampler(name)
        # the corrector runs only below corrector_entry_time: this is the most a step costs
        corrector = self.options.corrector_steps if name == "pc" else 0
        return SamplerInfo(name, nfe_per_step=1.0 + corrector, default_steps=self.options.sample_steps)

    def generate(self, request: SampleRequest) -> SampleOutput:
        """``steps`` equal steps from t = 1 to 0 with ``sampler``; the last is always analytic."""
        shape, sampler, steps, generator = request.shape, request.sampler, request.steps, request.generator
        device = self.device
        cond = sample_labels(request.cond, shape[0], self.num_classes, device)
        pinned = check_known_tokens(
            request.known, request.known_mask, shape, self.transition.vocab_size, device
        )
        nfe_before = self.nfe
        with torch.no_grad():
            prior = self.transition.log_prior().to(device).expand(*shape, self.transition.num_states)
            x = pin(sample_categorical(prior, generator=generator), pinned)
            grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64, device=device)
            keep = set(
                np.round(np.linspace(0, steps, min(TRAJECTORY_POINTS, steps + 1))).astype(int).tolist()
            )
            trajectory = [(1.0, x.clone())] if request.return_trajectory else []
            for k in track(range(steps), desc=sampler, enabled=request.progress):
                t, s = grid[k].expand(shape[0]), grid[k + 1].expand(shape[0])
                x = self._step(x, s, t, cond, request.guidance_scale, sampler, generator, pinned)
                if request.return_trajectory and k + 1 in keep:
                    trajectory.append((float(grid[k + 1]), x.clone()))
        return SampleOutput(x, trajectory, self.nfe - nfe_before)

    def _step(
        self,
        x: Tensor,
        s: Tensor,
        t: Tensor,
        cond: Tensor | None,
        guidance_scale: float,
        sampler: str,
        generator: torch.Generator | None,
        pinned: tuple[Tensor, Tensor] | None,
    ) -> Tensor:
        """One step from t to s < t (then re-pin the known tokens); see :mod:`.steps`."""
        return ctmc_step(self, x, s, t, cond, guidance_scale, sampler, generator, pinned)
