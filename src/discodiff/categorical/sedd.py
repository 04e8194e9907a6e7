r"""SEDD: score entropy discrete diffusion (Lou et al. 2024) over uniform and absorbing transitions.

The network outputs log-ratios ("log-scores") directly, :math:`\log s_\theta(x_t)_y` for the K data
ids y, per token; the current token's entry is fixed to 0 (:math:`s_x = 1`, SEDD's final scatter)
and the [MASK] entry of an absorbing process is never a jump target (padded with 0). With
``scale_by_sigma`` (absorbing only, SEDD's default there) the output is shifted by
:math:`-\log(e^{\Delta}-1) - \log K`, :math:`\Delta = \bar\sigma(t) - \bar\sigma(0)`: the true ratios
at a masked token are :math:`p(x_0 = y|x_t)/(e^{\Delta}-1)`, so a zero output starts as a uniform
posterior over the K data ids (SEDD writes :math:`\log(N - 1)` with N its output width, which
counts [MASK]).

**Loss and likelihood.** Diffusion-weighted denoising score entropy with its constant term
(Lou et al. 2024, Sec. 3.3; :func:`.ratios.score_entropy`), which makes each term zero at the true
ratios and the whole a true ELBO term: for an absorbing token at [MASK],
:math:`\bar\sigma'(t)\big[\sum_{y}e^{s_y} - a\,s_{x_0} + a(\log a - 1)\big]`, :math:`a = 1/(e^\Delta-1)`
(PITFALLS, "Score entropy"). ``nll`` estimates the ELBO of :mod:`.continuous_time` (prior KL plus
the integral over all of [0, 1]); SEDD's own code has no likelihood evaluation (its issue #2).
The t = 0 end: SEDD's geometric noise :math:`\bar\sigma(t) = \sigma_{min}^{1-t}\sigma_{max}^t` has
:math:`\bar\alpha(0) = e^{-\sigma_{min}} < 1`; SEDD's code treats :math:`\bar\sigma(t)` as the noise
from the data, so its t = 0 state already carries :math:`\sigma_{min}` of noise and a bound over
[0, 1] would miss the stretch from the data to it. Here the transitions use
:math:`\Delta(t) = \bar\sigma(t) - \bar\sigma(0)`: the process starts exactly at the data at t = 0, the
network sees the noise :math:`\Delta(t)`, and the bound over [0, 1] is complete (checked: with the
exact ratios it equals the data entropy plus the prior mismatch, also for the geometric schedule).

**Samplers**: the CTMC samplers of :mod:`.continuous_time`; ``analytic`` is SEDD's Tweedie
:math:`\tau`-leaping (:func:`.ratios.tweedie_log_probs`), also its final denoising step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor
from torch.nn import functional as F

from ..base import METHODS
from ..config import Spec, component
from ..errors import ConfigError
from ..schedules import SCHEDULES, Schedule
from .continuous_time import ContinuousTimeMethod, ContinuousTimeOptions
from .ctmc import _token_spec, check_token_data
from .mixing import AbsorbingTransition, MixingTransition, UniformTransition
from .ratios import tweedie_log_probs
from .transition_configs import TRANSITIONS, build_transition

SEDD_TRANSITIONS = ("absorbing", "uniform")
"""SEDD's graphs: Lou et al. 2024, Sec. 3.3 (their uniform graph :math:`(\\mathbf 1\\mathbf 1^\\top - KI)/K`
in the code is the uniform transition's generator)."""


@dataclass
class SEDDConfig(ContinuousTimeOptions):
    """``method: {name: sedd, ...}``: score entropy discrete diffusion."""

    transition: Spec = component(TRANSITIONS, "absorbing")  # absorbing or uniform
    schedule: Schedule = component(SCHEDULES, "loglinear")  # SEDD: loglinear (absorb), geometric (uniform)
    scale_by_sigma: bool = False  # absorbing only: shift the output by -log(e^sigma - 1) - log K

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.transition.name not in SEDD_TRANSITIONS:
            raise ValueError(
                f"transition must be one of {', '.join(SEDD_TRANSITIONS)} for sedd, "
                f"got {self.transition.name!r}"
            )
        if self.scale_by_sigma and self.transition.name != "absorbing":
            raise ValueError("scale_by_sigma is defined for the absorbing transition only (SEDD)")


class SEDD(ContinuousTimeMethod):
    """Score entropy discrete diffusion; see the module docstring.

    Args:
        net: ``net(x_t, t, cond) -> (B, *event_shape, K)`` log-scores over the data ids.
        transition: :class:`~.mixing.UniformTransition` or :class:`~.mixing.AbsorbingTransition`.
        options: shared continuous-time options.
        scale_by_sigma: absorbing only; see the module docstring.
        event_shape: shape of one example.
        num_classes: number of class labels (0: unconditional).
    """

    def __init__(
        self,
        net: Callable,
        transition: MixingTransition,
        options: ContinuousTimeOptions,
        *,
        scale_by_sigma: bool = False,
        event_shape: Sequence[int],
        num_classes: int = 0,
    ) -> None:
        if not isinstance(transition, (UniformTransition, AbsorbingTransition)):
            raise ConfigError(
                f"SEDD needs a uniform or absorbing transition, got {type(transition).__name__}"
            )
        if scale_by_sigma and not isinstance(transition, AbsorbingTransition):
            raise ConfigError("scale_by_sigma is defined for the absorbing transition only (SEDD)")
        super().__init__(net, transition, options, event_shape=event_shape, num_classes=num_classes)
        self.scale_by_sigma = scale_by_sigma

    def log_ratios(
        self, x_t: Tensor, t: Tensor, cond: Tensor | None = None, *, guidance_scale: float = 1.0
    ) -> Tensor:
        r"""Log-scores :math:`\log s_\theta(x_t)_y`, ``(B, *D, S)``: the network's output over the data
        ids (shifted with ``scale_by_sigma``), 0 at [MASK] and at the current token."""
        out = self.guided(x_t, t, cond, guidance_scale, lambda raw: raw)
        if self.scale_by_sigma:
            out = out - self.log_expm1_noise(x_t, t).to(out.dtype) - math.log(self.transition.vocab_size)
        out = F.pad(out, (0, self.transition.num_states - self.transition.vocab_size))
        return out.scatter(-1, x_t[..., None], 0.0)

    def log_expm1_noise(self, x_t: Tensor, t: Tensor) -> Tensor:
        r""":math:`\log(e^{\Delta}-1) = \Delta + \log(1 - e^{-\Delta})`, :math:`\Delta = \bar\sigma(t) -
        \bar\sigma(0)`, per example, shaped to broadcast over ``(B, *D, K)`` (float64)."""
        log_keep, log_move = self.transition.log_keep_move(0.0, t, x_t)
        return (log_move - log_keep).reshape(-1, *(1,) * x_t.dim())

    def analytic_log_probs(
        self, x_t: Tensor, s: Tensor, t: Tensor, cond: Tensor | None = None, *, guidance_scale: float = 1.0
    ) -> Tensor:
        log_ratio = self.log_ratios(x_t, t, cond, guidance_scale=guidance_scale)
        return tweedie_log_probs(self.transition, x_t, log_ratio, s, t)


@METHODS.register("sedd", config=SEDDConfig)
def build_sedd(config: SEDDConfig, info, net_factory) -> SEDD:
    """Build from a token data set's :class:`~discodiff.data.DataInfo` and a network factory."""
    check_token_data("sedd", info)
    transition = build_transition(
        config.transition, vocab_size=info.vocab_size, schedule=config.schedule, timesteps=0
    )
    return SEDD(
        net_factory(_token_spec(info, transition)),
        transition,
        config,
        scale_by_sigma=config.scale_by_sigma,
        event_shape=info.event_shape,
        num_classes=info.num_classes,
    )
