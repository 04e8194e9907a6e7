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
terms are re-indexings, so the gradient of each input is the output gradient read at shifted
(:func:`mod_add`, :func:`mod_sub`) or scaled (:meth:`Modulus.mul`) positions of its row: O(K)
per position instead of O(K^2). Each operation is an autograd function that keeps only the ids
(no ``(..., K)`` index or copy is saved for backward), so K = 50,257 costs what a softmax over K
costs; the straight-through estimator keeps only its softmax.

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

from ..categorical.logspace import NEG_INF
from ..state import checks_deferred


def one_hot(ids: Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """``(...)`` long -> ``(...,  K)`` one-hot floats (no gradient), written in place (no int64
    temporary of ``F.one_hot``)."""
    out = torch.zeros(*ids.shape, num_classes, dtype=dtype, device=ids.device)
    return out.scatter_(-1, ids[..., None], 1.0)


def ids_of(x: Tensor) -> Tensor:
    """The id of each one-hot row, ``(..., K)`` -> ``(...)`` long."""
    return x.argmax(dim=-1)


class _StraightThrough(torch.autograd.Function):
    """Forward the one-hot of the argmax, backward the softmax's Jacobian; keeps one ``(..., K)``
    tensor (the softmax) for backward instead of autograd's hard + soft - sg(soft) graph."""

    @staticmethod
    def forward(ctx, logits: Tensor, temperature: float) -> Tensor:
        soft = torch.softmax(logits / temperature, dim=-1)
        out = one_hot(logits.argmax(dim=-1), logits.shape[-1], soft.dtype)
        # NaN or inf logits make the row's softmax NaN: pass that on (x - x is NaN for a NaN x and
        # 0 otherwise), so a diverged network gives a NaN loss as hard + soft - sg(soft) does
        row = soft.sum(dim=-1, keepdim=True)
        ctx.save_for_backward(soft)
        ctx.temperature = temperature
        return out.add_(row - row)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (soft,) = ctx.saved_tensors
        out = grad * soft  # d softmax(l / tau) = soft (g - <g, soft>) / tau
        out.addcmul_(soft, out.sum(dim=-1, keepdim=True), value=-1.0)
        return out.div_(ctx.temperature), None


def straight_through(logits: Tensor, temperature: float) -> Tensor:
    r"""One-hot of the argmax forward, gradient of :math:`\mathrm{softmax}(\ell/\tau)` backward.

    ``logits`` ``(..., K)`` (``-inf`` entries are never chosen) -> ``(..., K)`` float with exactly
    one-hot values.
    """
    return _StraightThrough.apply(logits, temperature)


INDEX_CHUNK = 1 << 22
"""Elements of one chunk's int64 index in :func:`_read_rows` (32 MB)."""


def _nan_rows(*xs: Tensor) -> Tensor:
    """``(..., 1)``: NaN where a row of any input is non-finite, 0 elsewhere. A row that is not
    finite is NaN throughout (:func:`straight_through` and these operations make it so), so its
    first entry tells: passing it on keeps a diverged network's loss NaN."""
    first = [x[..., :1] for x in xs]
    return sum(f - f for f in first)


def _read_rows(g: Tensor, v: Tensor, how: str) -> Tensor:
    """``out[..., m] = g[..., f(m, v) % K]`` per row, with ``f`` ``m + v`` (``"plus"``), ``v - m``
    (``"minus"``) or ``m v`` (``"times"``) and ``v`` ``(...)`` long. The int64 index (twice a float
    ``(..., K)`` tensor) is built a chunk of rows at a time, so it is never whole; shifts read a
    doubled row, ``[g, g]``, instead of taking an int64 remainder (the slow part: 3 ns an element)."""
    K = g.shape[-1]
    rows, out = g.reshape(-1, K), torch.empty_like(g).reshape(-1, K)
    v, m = v.reshape(-1, 1).remainder(K), torch.arange(K, device=g.device)
    source = rows if how == "times" else torch.cat([rows, rows], dim=1)
    step = max(1, INDEX_CHUNK // K)
    for start in range(0, rows.shape[0], step):
        part = slice(start, start + step)
        if how == "times":
            index = (m * v[part]).remainder_(K)
        else:
            index = m + v[part] if how == "plus" else (v[part] + K) - m
        torch.gather(source[part], 1, index, out=out[part])
    return out.reshape(g.shape)


class _ModShift(torch.autograd.Function):
    r"""Ids :math:`(i + s j) \bmod K` for a sign :math:`s = \pm 1`; gradients of
    :math:`\sum_j a_{k - s j} b_j` at one-hot a, b: :math:`\partial_a[m] = g[m + s j]`, and
    :math:`\partial_b[m] = g[m + i]` for :math:`s = 1`, :math:`g[i - m]` for :math:`s = -1`."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, sign: int) -> Tensor:
        K = a.shape[-1]
        i, j = ids_of(a), ids_of(b)
        ctx.save_for_backward(i, j)
        ctx.sign = sign
        return one_hot((i + sign * j) % K, K, a.dtype).add_(_nan_rows(a, b))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        i, j = ctx.saved_tensors
        grad_a = _read_rows(grad, ctx.sign * j, "plus") if ctx.needs_input_grad[0] else None
        how = "plus" if ctx.sign > 0 else "minus"
        return grad_a, _read_rows(grad, i, how) if ctx.needs_input_grad[1] else None, None


class _ModMul(torch.autograd.Function):
    r"""Ids :math:`(i\,c) \bmod K` for a unit c; gradients of :math:`\sum_{ij \equiv k} a_i s_j`
    at one-hot a, s: :math:`\partial_a[m] = g[m c]`, :math:`\partial_s[m] = g[i m]`."""

    @staticmethod
    def forward(ctx, a: Tensor, s: Tensor, c: Tensor) -> Tensor:
        K = a.shape[-1]
        i = ids_of(a)
        ctx.save_for_backward(i, c)
        return one_hot((i * c) % K, K, a.dtype).add_(_nan_rows(a, s))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
        i, c = ctx.saved_tensors
        grad_a = _read_rows(grad, c, "times") if ctx.needs_input_grad[0] else None
        return grad_a, _read_rows(grad, i, "times") if ctx.needs_input_grad[1] else None, None


def mod_add(a: Tensor, b: Tensor) -> Tensor:
    r""":math:`a \oplus b`, ids :math:`(i + j) \bmod K`; gradients of :math:`\sum_j a_{k-j} b_j`."""
    return _ModShift.apply(a, b, 1)


def mod_sub(a: Tensor, b: Tensor) -> Tensor:
    r""":math:`a \ominus b`, ids :math:`(i - j) \bmod K`; gradients of :math:`\sum_j a_{k+j} b_j`."""
    return _ModShift.apply(a, b, -1)


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
        :math:`\sum_{ij \equiv k} a_i s_j` (the a-part reads g at :math:`m c`, the s-part at
        :math:`i m`)."""
        c = ids_of(s)
        self.check_units(c)
        return _ModMul.apply(a, s, c)

    def invert(self, s: Tensor) -> Tensor:
        r""":math:`s^{-1}` of unit one-hots (a permutation of the units, applied to the soft part
        too), ``(..., K)``."""
        self.check_units(ids_of(s))
        return s.gather(-1, self.inverse.expand_as(s))
