r"""Score interpolation: CDCD's denoiser, a classifier over tokens turned into a Gaussian denoiser.

The network reads the noisy latent (and, with self-conditioning, the previous estimate) and
returns logits over the K tokens at every token position, :math:`p_\theta(w_i \mid x_t)`. The
clean-latent estimate is the expected embedding (Dieleman et al. 2022, Sec. 3, score
interpolation):

.. math::
    \hat x_0 = \mathbb{E}_{p_\theta}[e_w] = \mathrm{softmax}(\ell)\,E, \qquad
    \hat s(x_t, t) = \sum_k p_\theta(w = k \mid x_t)\,\nabla\log q(x_t \mid e_k)
    = \frac{\alpha_t\hat x_0 - x_t}{\sigma_t^2},

so the score is interpolated between the K conditional scores by the predicted probabilities,
and training is a cross-entropy. :math:`\hat x_0` then goes through the Gaussian core unchanged:
:class:`~discodiff.gaussian.precond.GaussianDenoiser` (x0-prediction) scales the input by
:math:`c_{in}`, applies classifier-free guidance, and converts to :math:`\hat\epsilon`.

Self-conditioning (Chen et al. 2022, Analog Bits, Sec. 3.2): the previous estimate
:math:`\tilde x_0` is concatenated to the network input along the channels (zeros when there is
none), so the network sees ``2 g d`` channels per latent position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..base import Network
from ..categorical.guidance import combine_guidance
from ..categorical.validation import check_logits
from ..gaussian.precond import Denoised, GaussianDenoiser
from ..gaussian.process import GaussianProcess
from .layout import LatentLayout


@dataclass
class Interpolated:
    r"""One evaluation of the interpolating denoiser.

    Attributes:
        log_probs: :math:`\log p_\theta(w_i \mid x_t)`, ``(B, n, K)`` float32 (guided, in log
            space, when a guidance scale is given).
        denoised: :math:`\hat x_0` and :math:`\hat\epsilon` in the latent layout ``(B, m, g d)``.
    """

    log_probs: Tensor
    denoised: Denoised


class InterpolatingDenoiser:
    """``net(input, t, cond) -> (B, m, g K)`` logits, wrapped into :class:`Interpolated` estimates.

    Args:
        net: the network; its input is the scaled latent, concatenated with the previous estimate
            when ``self_condition``.
        process: the Gaussian process the latent follows.
        layout: latent layout (grouping of tokens).
        vocab_size: K.
        data_std: coordinate scale of the embeddings, for the input scaling.
        input_scaling: scale the input by :math:`c_{in}(t)` (Karras et al. 2022, Table 1).
        self_condition: the network takes the previous estimate as extra channels.
    """

    def __init__(
        self,
        net: Network,
        process: GaussianProcess,
        layout: LatentLayout,
        *,
        vocab_size: int,
        data_std: float,
        input_scaling: bool,
        self_condition: bool,
    ) -> None:
        self.net = net
        self.process = process
        self.layout = layout
        self.vocab_size = vocab_size
        self.data_std = data_std
        self.input_scaling = input_scaling
        self.self_condition = self_condition
        self.nfe = 0

    def __call__(
        self,
        x_t: Tensor,
        t: Tensor,
        table: Tensor,
        cond: Tensor | None = None,
        *,
        previous: Tensor | None = None,
        guidance_scale: float = 1.0,
    ) -> Interpolated:
        r"""Estimate at ``x_t`` (B, m, g d), ``t`` (B,); ``table`` (K, d) the embeddings;
        ``previous`` (B, m, g d) the self-conditioning estimate (``None``: zeros)."""
        if self.self_condition and previous is None:
            previous = torch.zeros_like(x_t)
        outputs: list[Tensor] = []

        def x0_network(x_in: Tensor, t_in: Tensor, labels: Tensor | None) -> Tensor:
            net_in = x_in
            if self.self_condition:
                extra = previous if previous.shape[0] == x_in.shape[0] else previous.repeat(2, 1, 1)
                net_in = torch.cat([x_in, extra.to(x_in.dtype)], dim=-1)
            out = self.net(net_in, t_in, labels)
            expected = (x_in.shape[0], *self.layout.event_shape[:1], self.layout.group * self.vocab_size)
            logits = self.layout.split(check_logits(out, expected=expected)).float()
            log_probs = torch.log_softmax(logits, dim=-1)
            outputs.append(log_probs)
            return self.layout.merge(log_probs.exp() @ table.float())

        inner = GaussianDenoiser(
            x0_network,
            self.process,
            prediction="x0",
            data_std=self.data_std,
            input_scaling=self.input_scaling,
        )
        denoised = inner(x_t, t, cond, guidance_scale=guidance_scale)
        self.nfe += inner.nfe
        log_probs = outputs[0]
        if guidance_scale != 1.0:  # the network ran once on [conditional; unconditional] rows
            log_probs = combine_guidance(*log_probs.chunk(2), guidance_scale)
        return Interpolated(log_probs, denoised)
