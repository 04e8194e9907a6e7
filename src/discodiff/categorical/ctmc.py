r"""Continuous-time discrete diffusion with an x_0-predicting network: Campbell et al. 2022's
CTMC framework over any CTMC transition, and the uniform-state UDLM (Schiff et al. 2024; DUO,
Sahoo et al. 2025) as its instance with the joint-form ratios.

The network maps :math:`(x_t, t)` to logits over the K data ids, :math:`\hat p(x_0|x_t)` per token.
Its probability ratios :math:`s_\theta(x_t)_y` (:mod:`.ratios`) come in one of the two forms of the
discrete reverse step (``reverse``, as in :mod:`.d3pm`; PITFALLS "(a)/(b)"):

- ``"average"``: :math:`s_y = \sum_{x_0}\hat p(x_0|x_t)\,q(y|x_0)/q(x_t|x_0)` (Campbell et al. 2022,
  Prop. 1), exact when :math:`\hat p` is the per-token posterior :math:`p(x_0^d|x_t)`, the continuous-
  time limit of D3PM's ``reverse: average``;
- ``"d3pm"``: :math:`s_y = (\tilde p\bar Q(t))_y/(\tilde p\bar Q(t))_{x_t}`, the limit of D3PM's own
  form and UDLM's parameterization :math:`\bar x_\theta = K\bar\alpha_t\tilde p + (1-\bar\alpha_t)`.

**UDLM's loss is this ELBO.** For uniform transitions, :math:`G[y,x] = 1/K` off the diagonal and
:math:`q(y|x_0) = \bar x_y/K` with :math:`\bar x = K\bar\alpha_t e_{x_0} + (1-\bar\alpha_t)`, so with
``reverse: d3pm`` the score-entropy integrand :math:`\sum_{y\ne z}\bar\sigma' G[y,z](s_y - s^0_y +
s^0_y\log(s^0_y/s_y))`, :math:`s_y = \bar x_{\theta,y}/\bar x_{\theta,z}`, :math:`s^0_y = \bar x_y/\bar x_z`,
sums (using :math:`\sum_y\bar x_y = \sum_y\bar x_{\theta,y} = K`) to

.. math::
    \frac{\bar\alpha_t'}{K\bar\alpha_t}\Big[\frac{K}{\bar x_z} - \frac{K}{\bar x_{\theta,z}}
    - \sum_j\frac{\bar x_j}{\bar x_z}\log\frac{\bar x_{\theta,z}\,\bar x_j}{\bar x_{\theta,j}\,\bar x_z}\Big],

the per-token loss of UDLM / DUO (:math:`\bar\alpha'/\bar\alpha = -\bar\sigma'`). So ``udlm`` is
registered as its own method name (fixed uniform transition, ``reverse: d3pm``) on this class
rather than a second copy of one formula; the tests check the closed form above against it and
against the T -> infinity limit of D3PM's bound.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..base import METHODS
from ..config import Spec, component
from ..errors import ConfigError
from ..schedules import SCHEDULES, Schedule
from .continuous_time import ContinuousTimeMethod, ContinuousTimeOptions
from .mixing import UniformTransition
from .ratios import log_ratios_joint
from .transition_configs import TRANSITIONS, build_transition
from .transitions import ContinuousTimeTransition

Reverse = Literal["average", "d3pm"]


@dataclass
class CTMCConfig(ContinuousTimeOptions):
    """``method: {name: ctmc, ...}``: a CTMC over token data with an x_0-predicting network."""

    transition: Spec = component(TRANSITIONS, "uniform")  # uniform, absorbing, marginal, dense (rate)
    schedule: Schedule = component(SCHEDULES, "loglinear")  # total noise sigma_bar(t)
    reverse: Reverse = "average"  # ratio form (module docstring)


@dataclass
class UDLMConfig(ContinuousTimeOptions):
    """``method: {name: udlm, ...}``: uniform-state continuous-time diffusion (Schiff et al. 2024)."""

    schedule: Schedule = component(SCHEDULES, "loglinear")  # UDLM: alpha_bar = 1 - t


class CTMC(ContinuousTimeMethod):
    """A CTMC with x_0-prediction; see the module docstring.

    Args:
        net: ``net(x_t, t, cond) -> (B, *event_shape, K)`` logits over the data ids.
        transition: the forward CTMC.
        options: shared continuous-time options.
        reverse: ratio form, ``"average"`` or ``"d3pm"``.
        event_shape: shape of one example.
        num_classes: number of class labels (0: unconditional).
    """

    def __init__(
        self,
        net: Callable,
        transition: ContinuousTimeTransition,
        options: ContinuousTimeOptions,
        *,
        reverse: Reverse = "average",
        event_shape: Sequence[int],
        num_classes: int = 0,
    ) -> None:
        super().__init__(net, transition, options, event_shape=event_shape, num_classes=num_classes)
        if reverse not in ("average", "d3pm"):
            raise ConfigError(f"reverse must be 'average' or 'd3pm', got {reverse!r}")
        self.reverse = reverse

    def denoise(
        self, x_t: Tensor, t: Tensor, cond: Tensor | None = None, *, guidance_scale: float = 1.0
    ) -> Tensor:
        r""":math:`\log\hat p(x_0|x_t)`, ``(B, *D, K)``; guidance in log-probability space."""
        log_p = self.guided(x_t, t, cond, guidance_scale, lambda out: torch.log_softmax(out, dim=-1))
        return log_p if guidance_scale == 1.0 else torch.log_softmax(log_p, dim=-1)

    def log_ratios(
        self, x_t: Tensor, t: Tensor, cond: Tensor | None = None, *, guidance_scale: float = 1.0
    ) -> Tensor:
        log_p0 = self.denoise(x_t, t, cond, guidance_scale=guidance_scale)
        if self.reverse == "average":
            return self.transition.log_ratios(x_t, log_p0, t)
        return log_ratios_joint(self.transition, x_t, log_p0, t)

    def analytic_log_probs(
        self, x_t: Tensor, s: Tensor, t: Tensor, cond: Tensor | None = None, *, guidance_scale: float = 1.0
    ) -> Tensor:
        r"""The discrete reverse step in the matching form: :math:`\sum_{x_0}\hat p\,q(x_s|x_t,x_0)`
        (``average``, whose ratios' Tweedie step it is) or :math:`\propto\sum_{x_0}\tilde p\,q(x_s,x_t|x_0)`
        (``d3pm``); see :meth:`.Transition.log_posterior_expected`."""
        log_p0 = self.denoise(x_t, t, cond, guidance_scale=guidance_scale)
        if self.reverse == "average":
            return self.transition.log_posterior_expected(x_t, log_p0, s, t)
        return self.transition.log_posterior_joint(x_t, log_p0, s, t)


def _token_spec(info, transition: ContinuousTimeTransition):
    from ..nets import NetSpec

    return NetSpec(
        tuple(info.event_shape),
        transition.vocab_size,
        num_classes=info.num_classes,
        input_vocab=transition.num_states,
    )


def check_token_data(name: str, info) -> None:
    """Refuse anything but token data with a vocabulary size."""
    if info.kind != "tokens" or info.vocab_size is None:
        raise ConfigError(f"method {name!r} models token data (DataInfo.kind == 'tokens' with a vocab_size)")


@METHODS.register("ctmc", config=CTMCConfig)
def build_ctmc(config: CTMCConfig, info, net_factory) -> CTMC:
    """Build from a token data set's :class:`~discodiff.data.DataInfo` and a network factory."""
    check_token_data("ctmc", info)
    transition = build_transition(
        config.transition, vocab_size=info.vocab_size, schedule=config.schedule, timesteps=0
    )
    if not isinstance(transition, ContinuousTimeTransition):
        raise ConfigError(
            f"transition {config.transition.name!r} is not a CTMC; use uniform, absorbing, marginal"
        )
    return CTMC(
        net_factory(_token_spec(info, transition)),
        transition,
        config,
        reverse=config.reverse,
        event_shape=info.event_shape,
        num_classes=info.num_classes,
    )


@METHODS.register("udlm", config=UDLMConfig)
def build_udlm(config: UDLMConfig, info, net_factory) -> CTMC:
    """UDLM: the CTMC method with a uniform transition and UDLM's ratios (``reverse: d3pm``)."""
    check_token_data("udlm", info)
    transition = UniformTransition(config.schedule, info.vocab_size)
    return CTMC(
        net_factory(_token_spec(info, transition)),
        transition,
        config,
        reverse="d3pm",
        event_shape=info.event_shape,
        num_classes=info.num_classes,
    )
