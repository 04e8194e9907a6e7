r"""Model ratios in closed form per token, and the row reductions that the closed-form bound and
samplers of :mod:`.closed_forms` need, without any ``(B, *D, S)`` temporary.

For a mixing transition (uniform, absorbing) every continuous-time parameterization here gives,
for the token's current state x and every other state y,

.. math::
    s(x)_y = A\,e^{z_y} + C\,\pi_y \quad (y \ne x),\qquad s(x)_x = 1,

with ``z`` the network's raw output over the K data ids (no :math:`e^{z}` term at added states
such as [MASK]) and two numbers A, C >= 0 per token (:class:`RatioRows`): SEDD's log-scores are
:math:`A = e^{-\text{shift}}`, C = 0; an x_0-prediction :math:`\hat p = \mathrm{softmax}(z)` through
either ratio form of :mod:`.ctmc` is affine in :math:`\hat p` (:mod:`.closed_forms` gives A, C).

:func:`row_sums` reduces such rows over the data ids outside {x, x_0} block by block
(:data:`BLOCK_ELEMENTS` entries at a time, so that a block's passes stay in cache), with a backward
pass that recomputes from ``z`` (rows whose coefficients depend on the softmax normalizer:
:mod:`.normalized_rows`). Rows ``(N, K)`` are the tokens flattened; ``rows`` selects the tokens
that matter (absorbing: the masked ones; ``None``: all), whose gradient rows are written and the
others' left at 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

BLOCK_ELEMENTS = 1 << 18
"""Entries per block of a row reduction (1 MB in float32: the few passes over a block run in the
core's cache, and the per-block overhead stays small next to the work at large K)."""


@dataclass
class RatioRows:
    r"""Model ratios :math:`s_y = A e^{z_y} + C\pi_y` (y != x) of every token (module docstring).

    Attributes:
        z: ``(B, *D, K)`` raw network output over the data ids (never copied).
        log_a: ``(B, *D)`` :math:`\log A`, when it does not depend on ``z`` (SEDD).
        log_c: ``(B, *D)`` :math:`\log C`, or ``None`` for C = 0.
        coefficients: instead of ``log_a`` / ``log_c``, for x_0-prediction rows:
            ``(lse, z_x, index) -> (log A, log C pi)`` of the flat tokens ``index`` (``None``: all)
            from their :math:`\log\sum_y e^{z_y}` and :math:`z_x` (:mod:`.normalized_rows`).
    """

    z: Tensor
    log_a: Tensor | None = None
    log_c: Tensor | None = None
    coefficients: Callable[[Tensor, Tensor, Tensor | None], tuple[Tensor, Tensor | None]] | None = None


def blocks(n: int, width: int) -> list[tuple[int, int]]:
    """Row ranges ``[lo, hi)`` of about :data:`BLOCK_ELEMENTS` entries each."""
    step = max(1, BLOCK_ELEMENTS // max(width, 1))
    return [(i, min(i + step, n)) for i in range(0, n, step)]


def take(z: Tensor, rows: Tensor | None, lo: int, hi: int, out: Tensor | None = None) -> Tensor:
    """Rows ``lo:hi`` of the selection of ``z``: a view when every row is selected, else a copy
    (into ``out`` if given)."""
    if rows is None:
        return z[lo:hi]
    if out is None:
        return z.index_select(0, rows[lo:hi])
    return torch.index_select(z, 0, rows[lo:hi], out=out[: hi - lo])


def take_entries(z: Tensor, rows: Tensor | None, cols: Tensor) -> Tensor:
    r""":math:`z[\text{row}, \text{col}]` for every selected row, ``(n,)`` (``cols`` clamped into range)."""
    index = torch.arange(z.shape[0], device=z.device) if rows is None else rows
    return z[index, cols.clamp(max=z.shape[1] - 1)]


def zero_columns(block: Tensor, cols: list[tuple[Tensor, Tensor]]) -> Tensor:
    """Set ``block[i, col_i] = 0`` where ``valid_i``, for each ``(col, valid)`` pair, in place."""
    for col, valid in cols:
        index = col.clamp(max=block.shape[1] - 1)[:, None]
        block.scatter_(1, index, torch.where(valid[:, None], 0.0, block.gather(1, index)))
    return block


def _excluded(x: Tensor, x0: Tensor | None, width: int) -> list[tuple[Tensor, Tensor]]:
    """(column, valid) pairs of the excluded ids: x where it is a data id, and x_0."""
    cols = [(x, x < width)]
    if x0 is not None:
        cols.append((x0, x0 != x))  # counted once where x_0 = x
    return cols


def _scratch(z: Tensor, n: int) -> Tensor:
    return z.new_empty(min(n, max(1, BLOCK_ELEMENTS // max(z.shape[1], 1))), z.shape[1])


class _RowSums(torch.autograd.Function):
    """See :func:`row_sums`."""

    @staticmethod
    def forward(ctx, z, rows, x, x0, log_a, log_cpi, need_log_sum):
        width, n = z.shape[1], x.numel()
        cols_all = _excluded(x, x0, width)
        excluded = sum(valid.to(z.dtype) for _, valid in cols_all)
        e_sum = torch.empty(n, dtype=z.dtype, device=z.device)
        log_sum = torch.zeros_like(e_sum)
        copy, work = (None if rows is None else _scratch(z, n)), _scratch(z, n)
        for lo, hi in blocks(n, width):
            block = take(z, rows, lo, hi, copy)
            cols = [(c[lo:hi], v[lo:hi]) for c, v in cols_all]
            if need_log_sum and log_cpi is None:  # sum of z + log A over the ids kept
                log_sum[lo:hi] = block.sum(1)
            w = torch.add(block, log_a[lo:hi, None], out=work[: hi - lo]).exp_()  # A e^z
            e_sum[lo:hi] = zero_columns(w, cols).sum(1)
            if need_log_sum and log_cpi is not None:  # log(A e^z + C pi) over the ids kept
                log_sum[lo:hi] = zero_columns(w.add_(log_cpi[lo:hi, None].exp()).log_(), cols).sum(1)
        log_s_x0 = None
        if x0 is not None:
            z_x0 = take_entries(z, rows, x0) + log_a
            log_s_x0 = z_x0 if log_cpi is None else torch.logaddexp(z_x0, log_cpi)
        if need_log_sum:
            if log_cpi is None:
                dropped = sum(torch.where(v, take_entries(z, rows, c), 0.0) for c, v in cols_all)
                log_sum = log_sum - dropped + (width - excluded) * log_a
        ctx.save_for_backward(z, rows, x, x0, log_a, log_cpi)
        ctx.need_log_sum = need_log_sum
        return e_sum, log_sum, log_s_x0

    @staticmethod
    def backward(ctx, g_e, g_log, g_x0):
        z, rows, x, x0, log_a, log_cpi = ctx.saved_tensors
        width, n = z.shape[1], x.numel()
        cols_all = _excluded(x, x0, width)
        out = torch.empty_like(z) if rows is None else torch.zeros_like(z)
        g_log = g_log if ctx.need_log_sum else torch.zeros_like(g_e)
        grad_a = torch.empty_like(g_e)
        grad_c = None if log_cpi is None else torch.zeros_like(g_e)
        share_x0 = None  # A e^{z_{x0}} / s_{x0}
        if x0 is not None:
            z_x0 = take_entries(z, rows, x0) + log_a
            share_x0 = torch.ones_like(z_x0) if log_cpi is None else torch.sigmoid(z_x0 - log_cpi)
            if grad_c is not None:
                grad_c += g_x0 * (1 - share_x0)
        copy = None if rows is None else _scratch(z, n)
        share = None if log_cpi is None else _scratch(z, n)
        for lo, hi in blocks(n, width):
            block = take(z, rows, lo, hi, copy)
            cols = [(c[lo:hi], v[lo:hi]) for c, v in cols_all]
            target = out[lo:hi] if rows is None else block  # the gradient, written in place
            w = torch.add(block, log_a[lo:hi, None], out=target).exp_()  # A e^z
            if log_cpi is None:
                w.mul_(g_e[lo:hi, None]).add_(g_log[lo:hi, None])
            else:
                sh = torch.div(w, w + log_cpi[lo:hi, None].exp(), out=share[: hi - lo])  # A e^z / s
                zero_columns(sh, cols)
                included = width - sum(v.to(z.dtype) for _, v in cols)
                grad_c[lo:hi] += g_log[lo:hi] * (included - sh.sum(1))
                w.mul_(g_e[lo:hi, None]).addcmul_(sh, g_log[lo:hi, None])
            zero_columns(w, cols)
            if x0 is not None:
                w.scatter_add_(1, x0[lo:hi, None], (g_x0[lo:hi] * share_x0[lo:hi])[:, None])
            grad_a[lo:hi] = w.sum(1)
            if rows is not None:
                out.index_copy_(0, rows[lo:hi], w)
        return out, None, None, None, grad_a, grad_c, None


def row_sums(
    z: Tensor,
    rows: Tensor | None,
    x: Tensor,
    x0: Tensor | None,
    log_a: Tensor,
    log_cpi: Tensor | None,
    *,
    need_log_sum: bool,
) -> tuple[Tensor, Tensor, Tensor | None]:
    r"""Reductions of ratio rows :math:`s_y = A e^{z_y} + C\pi` over the data ids y outside {x, x_0}.

    Args:
        z: ``(N, K)`` raw outputs (differentiable).
        rows: ``(n,)`` long indices of the rows to reduce, or ``None`` for all (n = N).
        x: ``(n,)`` long current states (``>= K``: an added state, nothing to exclude).
        x0: ``(n,)`` long data ids also excluded (and :math:`\log s_{x_0}` returned), or ``None``.
        log_a: ``(n,)`` :math:`\log A` (differentiable).
        log_cpi: ``(n,)`` :math:`\log(C\pi_y)`, the same for every data id (uniform), or ``None``
            for C = 0 (differentiable).
        need_log_sum: compute :math:`\Lambda` (else 0).

    Returns:
        ``(n,)`` each: :math:`E = \sum A e^{z_y}`, :math:`\Lambda = \sum\log s_y` over those y, and
        :math:`\log s_{x_0}` by the formula (``None`` without ``x0``).
    """
    return _RowSums.apply(z, rows, x, x0, log_a, log_cpi, need_log_sum)
