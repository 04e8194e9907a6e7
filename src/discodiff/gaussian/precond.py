r"""From a raw network output to :math:`(\hat x_0, \hat\epsilon)`: the Gaussian parameterization.

The network never sees the schedule. :class:`GaussianDenoiser` scales its input, reads its output
as eps, x0, v or score, splits off a learned variance, applies classifier-free guidance and
optional clipping, and counts network evaluations.

- Input scaling :math:`c_{in}(t) = 1/\sqrt{\alpha_t^2\sigma_{data}^2 + \sigma_t^2}` keeps the
  network's input at unit variance (Karras et al. 2022, Table 1); it is 1 for VP with unit data.
- Learned variance (Nichol & Dhariwal 2021, Eq. 15): the second half of the output channels is
  :math:`v \in [-1, 1]`, and :math:`\log\Sigma = f\log\sigma_{t|s}^2 + (1-f)\log\tilde\sigma^2`
  with :math:`f = (v+1)/2`.
- Classifier-free guidance (Ho & Salimans 2022, Eq. 6, written with scale :math:`w = 1 + w_{HS}`):
  :math:`\tilde\epsilon = \epsilon_\emptyset + w(\epsilon_c - \epsilon_\emptyset)`; w = 1 is the
  conditional model, w = 0 the unconditional one. :math:`\hat x_0` is combined the same way (it is
  affine in :math:`\hat\epsilon` at fixed :math:`x_t`), which stays finite where :math:`\alpha = 0`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..base import NULL_LABEL, Network
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
            if cond is None:
                raise ValueError("classifier-free guidance (guidance_scale != 1) needs class labels")
            both = torch.cat([cond, torch.full_like(cond, NULL_LABEL)])
            out, frac = self._evaluate(torch.cat([x_t, x_t]), torch.cat([t, t]), both)
            self.nfe += 2
            out_c, out_u = out.chunk(2)
            x0_c, eps_c = to_x0_eps(self.prediction, out_c, x_t, alpha, sigma)
            x0_u, eps_u = to_x0_eps(self.prediction, out_u, x_t, alpha, sigma)
            eps = eps_u + guidance_scale * (eps_c - eps_u)
            # the same combination of x0 (affine in eps at fixed x_t), finite where alpha = 0
            x0 = x0_u + guidance_scale * (x0_c - x0_u)
            frac = None if frac is None else frac.chunk(2)[0]
        else:
            out, frac = self._evaluate(x_t, t, cond)
            self.nfe += 1
            x0, eps = to_x0_eps(self.prediction, out, x_t, alpha, sigma)
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
            eps = x0_to_eps(x0, x_t, alpha, sigma)
        return Denoised(x0, eps, frac)
