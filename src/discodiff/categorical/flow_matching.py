r"""Discrete flow matching (Gat et al. 2024; Campbell et al. 2024) on the continuous-time core.

**Path.** The mixture path puts each token at its data value with probability :math:`\kappa` and
at a draw of the source otherwise. Flow matching runs from source (time 0) to data (time 1);
here data sit at t = 0 (PITFALLS, "Time and conventions"), so :math:`\bar\alpha(t) = \kappa(1-t)`
and the path is exactly the marginal of a mixing transition:

.. math::
    q(x_t|x_0) = \bar\alpha(t)\,\delta_{x_0} + (1 - \bar\alpha(t))\,\pi,

:math:`\pi` = [MASK] (``source: mask``, :class:`~.mixing.AbsorbingTransition`) or uniform
(``source: uniform``). Schedulers: ``polynomial`` (:math:`\kappa(s) = s^n`; n = 1 is the linear
CondOT one) or any registered schedule.

**Rates.** The conditional process jumps straight to the data value,
:math:`u(y|x_t, x_0) = w(t)\,\delta_{x_0}(y)` for :math:`y \ne x_t`, with
:math:`w(t) = -\bar\alpha'(t)/(1-\bar\alpha(t)) = \kappa'/(1-\kappa)` (Gat et al. 2024, Eq. 25
in reverse time; :func:`.masked_process.elbo_weight`). With the network's
:math:`\hat p(x_0|x_t)` the model's rates are :math:`w(t)\,\hat p(y|x_t)` (Campbell et al.
2024, Prop. 3.1): ratios :math:`s_y = \hat p(y|x_t)` with weights :math:`w(t)`
(:meth:`rate_weights`), and target ratios :math:`\delta_{x_0}(y)` (:meth:`target_log_ratios`).
Through these two hooks the continuous-time core's score entropy *is* the generalized KL
(Gat et al. 2024, Eq. 28; Shaul et al. 2024), per token

.. math::
    \ell = \sum_{y\ne x_t} w\Big(\hat p_y - \delta_{x_0 y}
    + \delta_{x_0 y}\log\frac{\delta_{x_0 y}}{\hat p_y}\Big)
    = w\,\big[\delta_{x_0}(x_t) - \hat p(x_t|x_t) - (1 - \delta_{x_0}(x_t))\log\hat p(x_0|x_t)\big],

the rate of the path-space KL from the conditional process to the model's; its integral over
[0, 1] plus the prior KL (0: the source is the prior) is an ELBO (``nll``). For the mask source it
is MDLM's bound term by term; for the uniform source the conditional process is not the
time-reversal of a noising chain and the bound stays above the entropy even with the exact
posterior. ``loss: ce`` trains instead with :math:`-\log\hat p(x_0|x_t)` per token (Campbell et
al. 2024, Eq. 8), unweighted; ``nll`` is always the ELBO.

**Parameterization.** :math:`\hat p` is restricted to the :math:`x_0` that can produce
:math:`x_t` (for the mask source an unmasked token is carried over, MDLM's SUBS).

**Samplers** (t from 1 to 0; the last step is always ``analytic``, which at s = 0 draws
:math:`x_0 \sim \hat p`, flow_matching's final step): ``euler``, at most one jump per token with
probability :math:`1 - e^{-h\lambda}` (:func:`.jumps.exponential_log_probs`); ``analytic``, the
mixture step (jump to :math:`x_0 \sim \hat p` with probability
:math:`(\bar\alpha_s - \bar\alpha_t)/(1 - \bar\alpha_t)`), MDLM's ancestral step for the mask
source; ``tau_leaping`` with the same rates. ``eta`` > 0 adds Campbell et al. 2024's
detailed-balance rates (Sec. 3.3, their masking and uniform toy code), which keep the path's
marginals: mask source, re-mask an unmasked token at rate :math:`\eta` and unmask at
:math:`w + \eta\kappa/(1-\kappa)`; uniform source, leave :math:`x_0` at rate :math:`\eta` to each
other value and enter it at :math:`w + \eta(K\kappa + 1 - \kappa)/(1-\kappa)`, with
:math:`\kappa = \bar\alpha(t)` (Euler and tau-leaping; not in the last step).

**Guidance** (classifier-free): on :math:`\log\hat p`, :math:`\log\hat p_u + w(\log\hat p_c -
\log\hat p_u)`, renormalized (as :mod:`.ctmc`). **Infilling**: known tokens are pinned at every
time (exact conditioning for the mask source, an approximation for the uniform one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.nn import functional as F

from ..base import METHODS, Batch, LossOutput, drop_labels
from ..config import component
from ..schedules import SCHEDULES, Schedule
from ..utils import sum_except_batch
from .continuous_time import LAST_TIME, ContinuousTimeMethod, ContinuousTimeOptions, pin
from .ctmc import _token_spec, check_token_data
from .jumps import exponential_log_probs
from .logspace import NEG_INF
from .masked_process import elbo_weight, unmask_log_probs
from .mixing import AbsorbingTransition, MixingTransition, UniformTransition
from .sampling import sample_categorical
from .transitions import per_token


@dataclass
class DFMConfig(ContinuousTimeOptions):
    """``method: {name: dfm, ...}``: discrete flow matching with a mixture path."""

    source: Literal["mask", "uniform"] = "mask"  # source distribution of the mixture path
    schedule: Schedule = component(
        SCHEDULES, {"name": "polynomial", "exponent": 1.0}
    )  # alpha_bar = kappa(1 - t)
    loss: Literal["gkl", "ce"] = "gkl"  # generalized KL (the ELBO) or cross-entropy on x0
    eta: float = 0.0  # Campbell et al.'s stochasticity (detailed-balance rates) in euler / tau_leaping
    sampler: Literal["euler", "analytic", "tau_leaping"] = "euler"  # default sampler

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.eta < 0:
            raise ValueError(f"eta must be >= 0, got {self.eta}")
        defaults = ContinuousTimeOptions()
        corrector = ("corrector_steps", "corrector_step_size", "corrector_entry_time")
        if any(getattr(self, key) != getattr(defaults, key) for key in corrector):
            raise ValueError(
                "corrector_steps / corrector_step_size / corrector_entry_time belong to the CTMC 'pc' "
                "sampler, which DFM does not offer; DFM's stochasticity is eta"
            )


class DiscreteFlowMatching(ContinuousTimeMethod):
    """Mixture-path discrete flow matching; see the module docstring.

    Args:
        net: ``net(x_t, t, cond) -> (B, *event_shape, K)`` logits of :math:`\\hat p(x_0|x_t)`.
        transition: the path, an absorbing (mask source) or uniform transition.
        options: the method's options (:class:`DFMConfig`).
        event_shape: shape of one example.
        num_classes: number of class labels (0: unconditional).
    """

    samplers = ("euler", "analytic", "tau_leaping")

    def __init__(
        self,
        net: Callable,
        transition: MixingTransition,
        options: DFMConfig,
        *,
        event_shape: Sequence[int],
        num_classes: int = 0,
    ) -> None:
        if not isinstance(transition, (AbsorbingTransition, UniformTransition)):
            raise ValueError(f"DFM needs a mask (absorbing) or uniform path, got {type(transition).__name__}")
        super().__init__(net, transition, options, event_shape=event_shape, num_classes=num_classes)
        self.closed = None  # its own target and weights: the core's generic score-entropy path
        # pinned known tokens: the mask source conditions exactly (as MDLM), the uniform one not
        self.known_semantics = "exact" if isinstance(transition, AbsorbingTransition) else "replacement"

    # ---- parameterization and rates ------------------------------------------------------------

    def denoise(
        self, x_t: Tensor, t: Tensor, cond: Tensor | None = None, *, guidance_scale: float = 1.0
    ) -> Tensor:
        r""":math:`\log\hat p(x_0|x_t)` ``(B, *D, K)``, restricted to the :math:`x_0` reaching :math:`x_t`."""
        log_p = self.guided(x_t, t, cond, guidance_scale, lambda out: torch.log_softmax(out, dim=-1))
        return self.transition.restrict_x0(log_p, x_t, t)

    def log_ratios(
        self, x_t: Tensor, t: Tensor, cond: Tensor | None = None, *, guidance_scale: float = 1.0
    ) -> Tensor:
        r"""Ratios :math:`s_y = \hat p(y|x_t)` over the S states (0 at added states), ``(B, *D, S)``."""
        log_p0 = self.denoise(x_t, t, cond, guidance_scale=guidance_scale)
        return F.pad(log_p0, (0, self.transition.num_states - self.transition.vocab_size), value=NEG_INF)

    def rate_weights(self, x_t: Tensor, t: Tensor, *, dtype: torch.dtype) -> Tensor:
        r""":math:`w(t) = -\bar\alpha'/(1-\bar\alpha)` to every data id :math:`y \ne x_t`, 0 elsewhere."""
        w = elbo_weight(self.transition.schedule, t, 0).to(dtype)
        S, K = self.transition.num_states, self.transition.vocab_size
        out = per_token(w, x_t.dim() + 1).expand(*x_t.shape, S).clone()
        out[..., K:] = 0.0
        return out.scatter_(-1, x_t[..., None], 0.0)

    def target_log_ratios(self, x0: Tensor, x_t: Tensor, t: Tensor, *, dtype: torch.dtype) -> Tensor:
        r"""The conditional process's ratios :math:`\delta_{x_0}(y)`: 0 at :math:`x_0`, ``-inf`` elsewhere."""
        out = torch.full((*x_t.shape, self.transition.num_states), NEG_INF, dtype=dtype, device=x_t.device)
        return out.scatter_(-1, x0[..., None], 0.0)

    def elbo_integrand(
        self,
        x0: Tensor,
        x_t: Tensor,
        t: Tensor,
        cond: Tensor | None = None,
        *,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        r"""The generalized KL of the module docstring; for the mask source in closed form: an
        unmasked token's :math:`\hat p` is :math:`\delta_{x_t}` (its term is 0) and a masked one's
        is :math:`w(t)\,(-\log\hat p(x_0|x_t))`, MDLM's weighted cross-entropy, from the logits
        in one pass (no ``(B, *D, S)`` ratios, targets or weights). Uniform source: the core's
        generic score entropy, which tests compare this with."""
        if not isinstance(self.transition, AbsorbingTransition):
            return super().elbo_integrand(x0, x_t, t, cond, dtype=dtype)
        z = self.guided(x_t, t, cond, 1.0, lambda out: out if dtype is None else out.to(dtype))
        K = self.transition.vocab_size
        ce = F.cross_entropy(z.reshape(-1, K), x0.reshape(-1), reduction="none").view(x0.shape)
        w = per_token(elbo_weight(self.transition.schedule, t, 0), x0.dim()).to(ce.dtype)
        return sum_except_batch(torch.where(x_t == self.transition.mask_id, w * ce, 0.0))

    def reverse_rates(
        self, x_t: Tensor, t: Tensor, cond: Tensor | None = None, *, guidance_scale: float = 1.0
    ) -> Tensor:
        r"""Model rates :math:`w\,\hat p(y|x_t)` plus, with ``eta`` > 0, the detailed-balance rates."""
        log_p = self.log_ratios(x_t, t, cond, guidance_scale=guidance_scale)
        rates = log_p.exp().mul_(self.rate_weights(x_t, t, dtype=log_p.dtype))
        eta = self.options.eta
        if eta == 0:
            return rates
        kappa = per_token(self.transition.schedule.alpha_bar(t.to(torch.float64)), rates.dim())
        if isinstance(self.transition, AbsorbingTransition):
            masked = (x_t == self.transition.mask_id)[..., None]
            unmask = (eta * kappa / (1 - kappa)).to(rates.dtype) * log_p.exp()
            rates = torch.where(masked, rates + unmask, rates)
            remask = torch.zeros_like(rates)
            remask[..., self.transition.mask_id] = eta
            return torch.where(masked, rates, rates + remask)
        K = self.transition.vocab_size
        p = log_p.exp()
        enter = (eta * (K * kappa + 1 - kappa) / (1 - kappa)).to(rates.dtype) * p
        leave = eta * p.gather(-1, x_t[..., None])
        return (rates + enter + leave).scatter_(-1, x_t[..., None], 0.0)

    def analytic_log_probs(
        self, x_t: Tensor, s: Tensor, t: Tensor, cond: Tensor | None = None, *, guidance_scale: float = 1.0
    ) -> Tensor:
        r"""The mixture step: :math:`P\,\hat p(y)` for :math:`y \ne x_t` and
        :math:`\hat p(x_t) + (1-P)(1-\hat p(x_t))` at :math:`x_t`, :math:`P = (\bar\alpha_s -
        \bar\alpha_t)/(1-\bar\alpha_t)`; float64 ``(B, *D, S)``."""
        p = self.log_ratios(x_t, t, cond, guidance_scale=guidance_scale).double().exp()
        log_move, log_stay = unmask_log_probs(self.transition.schedule, s, t)
        move, stay = (per_token(c.exp(), p.dim()) for c in (log_move, log_stay))
        current = p.gather(-1, x_t[..., None])
        return (p * move).scatter_(-1, x_t[..., None], current + stay * (1 - current)).log_()

    # ---- training and sampling -----------------------------------------------------------------

    def loss(self, batch: Batch) -> LossOutput:
        """``gkl``: the ELBO per token (the core's loss); ``ce``: mean :math:`-\\log\\hat p(x_0|x_t)`."""
        if self.options.loss == "gkl":
            return super().loss(batch)
        x0 = self._check_batch(batch)
        t = self._train_times(batch)
        x_t = self._noise(x0, t, batch)
        log_p = self.denoise(x_t, t, drop_labels(batch, self.options.cond_drop_prob))
        per_token = -log_p.gather(-1, x0[..., None]).squeeze(-1).reshape(x0.shape[0], -1)
        per_example = per_token.mean(dim=1)
        metrics = {"ce_nats_per_token": per_example.detach().mean()}
        return LossOutput(per_example.mean(), per_example.detach(), metrics)

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
        """``euler`` here; ``analytic``, ``tau_leaping`` and every last step in the core."""
        if sampler != "euler" or bool((s == 0).all()):
            return super()._step(x, s, t, cond, guidance_scale, sampler, generator, pinned)
        rates = self.reverse_rates(x, t.clamp(max=LAST_TIME), cond, guidance_scale=guidance_scale)
        return pin(sample_categorical(exponential_log_probs(rates, x, t - s), generator=generator), pinned)


@METHODS.register("dfm", config=DFMConfig)
def build_dfm(config: DFMConfig, info, net_factory) -> DiscreteFlowMatching:
    """Build from a token data set's :class:`~discodiff.data.DataInfo` and a network factory."""
    check_token_data("dfm", info)
    path = AbsorbingTransition if config.source == "mask" else UniformTransition
    transition = path(config.schedule, info.vocab_size)
    return DiscreteFlowMatching(
        net_factory(_token_spec(info, transition)),
        transition,
        config,
        event_shape=info.event_shape,
        num_classes=info.num_classes,
    )
