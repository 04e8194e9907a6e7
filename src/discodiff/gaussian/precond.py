r"""From a raw network output to :math:`(\hat x_0, \hat\epsilon)`: the Gaussian parameterization.

The network never sees the schedule. :class:`GaussianDenoiser` scales its input, reads its output
as eps, x0, v or score, splits off a learned variance, applies classifier-free guidance and
optional clipping, and counts network evaluations.

- Input scaling :math:`c_{in}(t) = 1/\sqrt{\alpha_t^2\sigma_{data}^2 + \sigma_t^2}` keeps the
  network's input at unit variance (Karras et al. 2022, Table 1); it is 1 for VP with unit data.
- Learned variance (Nichol & Dhariwal 2021, Eq. 15): the second half of the output channels is
  :math:`v \in [-1, 1]`, and :math:`\log\Sigma = f\log\sigma_{t|s}^2 + (1-f)\log\tilde\sigma^2`
  with :math:`f = (v+1)/2`.
- Classifier-free guidance (:func:`discodiff.guidance.guide`; Ho & Salimans 2022, Eq. 6, with
  scale :math:`w = 1 + w_{HS}`): :math:`\tilde\epsilon = \epsilon_\emptyset + w(\epsilon_c -
  \epsilon_\emptyset)`; w = 1 is the conditional model, w = 0 the unconditional one. The raw
  outputs are combined; since every prediction is affine in :math:`(\hat x_0, \hat\epsilon)` at
  fixed :math:`x_t`, :math:`\hat x_0` is combined the same way, finite where :math:`\alpha = 0`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..base import Network
from ..guidance import guide, with_null_labels
from ..utils import append_dims
from .process import GaussianProcess, to_x0_eps, x0_to_eps


@dataclass
class Denoised:
    r"""A denoiser's estimate at :math:`(x_t, t)`.

    Attributes:
        x0: :math:`\hat x_0`, same shape as :math:`x_t`.
        eps: :math:`\hat\epsilon`, same shape.
        var_frac: learned-variance interpolation :math:`f \in [0, 1]` (same shape), or ``None``
            when the variance is fixed.
    """

    x0: Tensor
    eps: Tensor
    var_frac: Tensor | None = None


class GaussianDenoiser:
    """Wraps ``net(x_t, t, cond)`` into a :class:`Denoised` estimate; counts evaluations."""

    def __init__(
        self,
        net: Network,
        process: GaussianProcess,
        *,
        prediction: str,
        learn_variance: bool = False,
        data_std: float = 1.0,
        input_scaling: bool = True,
    ) -> None:
        self.net = net
        self.process = process
        self.prediction = prediction
        self.learn_variance = learn_variance
        self.data_std = data_std
        self.input_scaling = input_scaling
        self.nfe = 0

    def input_scale(self, t: Tensor) -> Tensor:
        r""":math:`c_{in}(t)`, float64 ``(B,)`` (ones when input scaling is off)."""
        alpha, sigma = self.process.alpha_sigma(t)
        if not self.input_scaling:
            return torch.ones_like(alpha)
        return 1 / torch.sqrt(alpha**2 * self.data_std**2 + sigma**2)

    def _evaluate(self, x_t: Tensor, t: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """One network call; returns (prediction, var_frac or None)."""
        c_in = append_dims(self.input_scale(t), x_t)
        out = self.net(c_in * x_t, t.to(x_t.dtype), cond)
        expected = list(x_t.shape)
        if self.learn_variance:
            expected[1] *= 2
        if list(out.shape) != expected:
            raise ValueError(
                f"network returned shape {tuple(out.shape)}, expected {tuple(expected)}"
                + (" (2x channels: mean and variance)" if self.learn_variance else "")
            )
        if self.learn_variance:
            pred, v = out.chunk(2, dim=1)
            return pred, (v.clamp(-1, 1) + 1) / 2
        return out, None

    def __call__(
        self,
        x_t: Tensor,
        t: Tensor,
        cond: Tensor | None = None,
        *,
        guidance_scale: float = 1.0,
        clip: float | None = None,
    ) -> Denoised:
        """Estimate ``x0`` and ``eps`` at ``(x_t, t)``; ``t``: (B,) float."""
        alpha, sigma = (append_dims(c, x_t) for c in self.process.alpha_sigma(t))
        if guidance_scale != 1.0:
            out, frac = self._evaluate(torch.cat([x_t, x_t]), torch.cat([t, t]), with_null_labels(cond))
            self.nfe += 2
            # combine the raw outputs: every prediction converts to (x0, eps) affinely at fixed x_t,
            # so this is the same combination of x0 and eps, finite where alpha = 0
            out = guide(*out.chunk(2), guidance_scale)
            frac = None if frac is None else frac.chunk(2)[0]
        else:
            out, frac = self._evaluate(x_t, t, cond)
            self.nfe += 1
        x0, eps = to_x0_eps(self.prediction, out, x_t, alpha, sigma)
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
            eps = x0_to_eps(x0, x_t, alpha, sigma)
        return Denoised(x0, eps, frac)
