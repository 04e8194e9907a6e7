r"""Arithmetic modulo K on one-hot states, with straight-through gradients (Tran et al. 2019).

A discrete flow moves one-hot vectors :math:`x \in \{0,1\}^K` (one per position) through modular
location-scale maps. Every tensor here has forward values that are exact one-hots; gradients
come from the straight-through estimator (Tran et al. 2019, Sec. 2.3; Bengio et al. 2013):

.. math::
    \mathrm{st}(\ell) = \mathrm{onehot}(\arg\max\ell)
    + \mathrm{softmax}(\ell/\tau) - \mathrm{sg}\big(\mathrm{softmax}(\ell/\tau)\big),

forward the argmax one-hot, backward the gradient of the softmax at temperature :math:`\tau`
(:func:`straight_through`).

**Modular operations as bilinear maps, in O(K).** Addition and multiplication of one-hots are
bilinear: :math:`(a \oplus b)_k = \sum_j a_{k-j} b_j` (a circular convolution; edward2 computes it
with K x K products or an FFT) and :math:`(a \otimes b)_k = \sum_{ij \equiv k} a_i b_j`. For a
bilinear map f at one-hot values :math:`\bar a, \bar b` (forward values are always one-hot),

.. math::
    f(a, b) = f(\bar a, \bar b) + f(a - \bar a, \bar b) + f(\bar a, b - \bar b) + f(a - \bar a, b - \bar b),

and the last term is zero with zero gradient at :math:`a = \bar a, b = \bar b`. The two middle
terms are re-indexings of :math:`a - \mathrm{sg}(a)` and :math:`b - \mathrm{sg}(b)` (values 0,
identity gradients), i.e. gathers and one scatter, so :func:`mod_add`, :func:`mod_sub` and
:func:`mod_mul` return the exact gradient of the bilinear forms in O(K) per position instead of
O(K^2), and K = 50,257 costs what a softmax over K costs.

**Invertible scales.** :math:`x \mapsto \sigma x \bmod K` is a bijection of
:math:`\{0,\dots,K-1\}` iff :math:`\gcd(\sigma, K) = 1` (a *unit* of :math:`\mathbb Z_K`). edward2
takes :math:`\sigma` as an argmax over all K values and never checks; a scale of 0 or with a
factor in common with K silently breaks the bijection (PITFALLS, "Discrete flows"). Here scale
logits are restricted to the units (:meth:`Modulus.restrict_to_units`) and every multiplication
or inversion checks its scales (:meth:`Modulus.check_units`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..categorical.logspace import NEG_INF
from ..state import checks_deferred


def straight_through(logits: Tensor, temperature: float) -> Tensor:
    r"""One-hot of the argmax forward, gradient of :math:`\mathrm{softmax}(\ell/\tau)` backward.

    ``logits`` ``(..., K)`` (``-inf`` entries are never chosen) -> ``(..., K)`` float with exactly
    one-hot values.
    """
    soft = torch.softmax(logits / temperature, dim=-1)
    hard = F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(soft.dtype)
    return hard + (soft - soft.detach())


def one_hot(ids: Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``(...)`` long -> ``(...,  K)`` one-hot floats (no gradient)."""
    return F.one_hot(ids, num_classes).to(dtype)


def ids_of(x: Tensor) -> Tensor:
    """The id of each one-hot row, ``(..., K)`` -> ``(...)`` long."""
    return x.argmax(dim=-1)


def _grad_part(x: Tensor) -> Tensor:
    """``x - sg(x)``: value 0, gradient the identity."""
    return x - x.detach()


def mod_add(a: Tensor, b: Tensor) -> Tensor:
    r""":math:`a \oplus b`, ids :math:`(i + j) \bmod K`; gradients of :math:`\sum_j a_{k-j} b_j`."""
    K = a.shape[-1]
    i, j = ids_of(a)[..., None], ids_of(b)[..., None]
    k = torch.arange(K, device=a.device)
    out = F.one_hot((i[..., 0] + j[..., 0]) % K, K).to(a.dtype)
    return out + _grad_part(a).gather(-1, (k - j) % K) + _grad_part(b).gather(-1, (k - i) % K)


def mod_sub(a: Tensor, b: Tensor) -> Tensor:
    r""":math:`a \ominus b`, ids :math:`(i - j) \bmod K`; gradients of :math:`\sum_j a_{k+j} b_j`."""
    K = a.shape[-1]
    i, j = ids_of(a)[..., None], ids_of(b)[..., None]
    k = torch.arange(K, device=a.device)
    out = F.one_hot((i[..., 0] - j[..., 0]) % K, K).to(a.dtype)
    return out + _grad_part(a).gather(-1, (k + j) % K) + _grad_part(b).gather(-1, (i - k) % K)


class Modulus(nn.Module):
    r"""The ring :math:`\mathbb Z_K`: its units, their inverses, and scaling by a unit.

    An ``nn.Module`` so that its tables follow the method across devices (non-persistent
    buffers; nothing is saved in checkpoints).

    Args:
        K: the modulus (vocabulary size), >= 2.
    """

    def __init__(self, K: int) -> None:
        super().__init__()
        if K < 2:
            raise ValueError(f"the modulus K must be >= 2, got {K}")
        self.K = K
        units = torch.tensor([math.gcd(s, K) == 1 for s in range(K)])
        inverse = torch.arange(K)
        for s in range(1, K):
            if units[s]:
                inverse[s] = pow(s, -1, K)
        self.register_buffer("is_unit", units, persistent=False)
        self.register_buffer("inverse", inverse, persistent=False)

    @property
    def num_units(self) -> int:
        r"""Euler's :math:`\varphi(K)`, the number of invertible scales."""
        return int(self.is_unit.sum())

    def restrict_to_units(self, logits: Tensor) -> Tensor:
        """Scale logits ``(..., K)`` with ``-inf`` at every non-unit, so argmax and softmax only
        ever select invertible scales."""
        return logits.masked_fill(~self.is_unit, NEG_INF)

    def check_units(self, scale_ids: Tensor) -> None:
        """Refuse scales that share a factor with K (the map would not be a bijection); skipped
        inside the trainer's step (:func:`~discodiff.state.deferred_checks`), whose scales come
        from :meth:`restrict_to_units`."""
        if checks_deferred():
            return
        bad = ~self.is_unit[scale_ids]
        if bool(bad.any()):
            value = int(scale_ids[bad][0])
            raise ValueError(
                f"scale {value} is not invertible modulo K = {self.K} (gcd({value}, {self.K}) = "
                f"{math.gcd(value, self.K)}): a discrete flow's scales must be coprime to K"
            )

    def mul(self, a: Tensor, s: Tensor) -> Tensor:
        r""":math:`a \otimes s` for unit scales s, ids :math:`(i\,c) \bmod K`; gradients of
        :math:`\sum_{ij \equiv k} a_i s_j`: the a-part gathers at :math:`k c^{-1}`, the s-part
        scatters :math:`(s - \mathrm{sg}(s))_j` to :math:`i j \bmod K`."""
        K = self.K
        i, c = ids_of(a), ids_of(s)
        self.check_units(c)
        j = torch.arange(K, device=a.device)
        out = F.one_hot((i * c) % K, K).to(a.dtype)
        out = out + _grad_part(a).gather(-1, (j * self.inverse[c][..., None]) % K)
        return out.scatter_add(-1, (i[..., None] * j) % K, _grad_part(s))

    def invert(self, s: Tensor) -> Tensor:
        r""":math:`s^{-1}` of unit one-hots (a permutation of the units, applied to the soft part
        too), ``(..., K)``."""
        self.check_units(ids_of(s))
        return s.gather(-1, self.inverse.expand_as(s))
