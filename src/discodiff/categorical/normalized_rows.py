r"""Row reductions of ratio rows whose coefficients depend on the softmax normalizer of ``z``: the
x_0-prediction forms, :math:`s_y = A e^{z_y} + C\pi_y` with :math:`(\log A, \log C\pi) =
f(\log\textstyle\sum_y e^{z_y},\ z_x)` (:mod:`.closed_forms`, :mod:`.closed_d3pm`).

:func:`stats_and_sums` returns the statistics (log-normalizer, :math:`z_x`, :math:`z_{x_0}`) and the
sums of :func:`.ratio_rows.row_sums` from one function whose backward pass writes a single
``(N, K)`` gradient: it applies the chain rule through f itself (a small autograd graph on
per-row values) and then writes the direct terms and the normalizer's :math:`g\,\mathrm{softmax}(z)`
in one pass, instead of two ``(N, K)`` gradients that autograd would then add. :func:`row_stats`
gives the statistics alone (sampling, D3PM's absorbing cross-entropy).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .ratio_rows import _excluded, _scratch, blocks, take, take_entries, zero_columns

Coefficients = Callable[[Tensor, Tensor], tuple[Tensor, Tensor | None]]
"""``(lse, z_x) -> (log A, log C pi or None)`` per selected row, differentiable torch operations."""


class _StatsAndSums(torch.autograd.Function):
    """See :func:`stats_and_sums`."""

    @staticmethod
    def forward(ctx, z, rows, x, x0, coefficients, need_log_sum):
        width, n = z.shape[1], x.numel()
        lse = torch.empty(n, dtype=z.dtype, device=z.device)
        copy = None if rows is None else _scratch(z, n)
        for lo, hi in blocks(n, width):
            lse[lo:hi] = torch.logsumexp(take(z, rows, lo, hi, copy), dim=1)
        z_x = torch.where(x < width, take_entries(z, rows, x), 0.0)
        z_x0 = take_entries(z, rows, x0)
        with torch.no_grad():
            log_a, log_cpi = coefficients(lse, z_x)
        cols_all = _excluded(x, x0, width)
        e_sum, log_sum, share_sum = (torch.zeros(n, dtype=z.dtype, device=z.device) for _ in range(3))
        work = _scratch(z, n)
        for lo, hi in blocks(n, width):
            block = take(z, rows, lo, hi, copy)
            cols = [(c[lo:hi], v[lo:hi]) for c, v in cols_all]
            w = torch.add(block, log_a[lo:hi, None], out=work[: hi - lo]).exp_()  # A e^z
            e_sum[lo:hi] = zero_columns(w, cols).sum(1)
            if need_log_sum and log_cpi is not None:
                s = w + log_cpi[lo:hi, None].exp()  # s_y
                share_sum[lo:hi] = zero_columns(torch.div(w, s, out=s), cols).sum(1)  # sum of A e^z / s
                log_sum[lo:hi] = zero_columns(w.add_(log_cpi[lo:hi, None].exp()).log_(), cols).sum(1)
            elif need_log_sum:
                log_sum[lo:hi] = block.sum(1)
        excluded = sum(v.to(z.dtype) for _, v in cols_all)
        if need_log_sum and log_cpi is None:
            dropped = sum(torch.where(v, take_entries(z, rows, c), 0.0) for c, v in cols_all)
            log_sum = log_sum - dropped + (width - excluded) * log_a
        log_s_x0 = z_x0 + log_a if log_cpi is None else torch.logaddexp(z_x0 + log_a, log_cpi)
        ctx.save_for_backward(z, rows, x, x0, lse, z_x, share_sum, e_sum)
        ctx.coefficients, ctx.need_log_sum, ctx.excluded = coefficients, need_log_sum, excluded
        return lse, z_x, z_x0, e_sum, log_sum, log_s_x0

    @staticmethod
    def backward(ctx, g_lse, g_zx, g_zx0, g_e, g_log, g_sx0):
        z, rows, x, x0, lse, z_x, share_sum, e_sum = ctx.saved_tensors
        width, n = z.shape[1], x.numel()
        zeros = torch.zeros_like(lse)
        g_lse, g_zx, g_zx0, g_e, g_log, g_sx0 = (
            zeros if g is None else g for g in (g_lse, g_zx, g_zx0, g_e, g_log, g_sx0)
        )
        g_log = g_log if ctx.need_log_sum else zeros
        with torch.enable_grad():  # the chain rule through the coefficients, on per-row values
            lse_, z_x_ = lse.detach().requires_grad_(), z_x.detach().requires_grad_()
            log_a_, log_cpi_ = ctx.coefficients(lse_, z_x_)
        log_a, log_cpi = log_a_.detach(), None if log_cpi_ is None else log_cpi_.detach()
        z_x0 = take_entries(z, rows, x0) + log_a
        share_x0 = torch.ones_like(z_x0) if log_cpi is None else torch.sigmoid(z_x0 - log_cpi)
        included = width - ctx.excluded
        if log_cpi is None:
            grad_a = g_e * e_sum + g_log * included + g_sx0 * share_x0
            outputs, grads = [log_a_], [grad_a]
        else:
            grad_a = g_e * e_sum + g_log * share_sum + g_sx0 * share_x0
            grad_c = g_log * (included - share_sum) + g_sx0 * (1 - share_x0)
            outputs, grads = [log_a_, log_cpi_], [grad_a, grad_c]
        pairs = [(o, g) for o, g in zip(outputs, grads, strict=True) if o.requires_grad]
        g_l = g_x = None
        if pairs:
            g_l, g_x = torch.autograd.grad(
                [o for o, _ in pairs], [lse_, z_x_], [g for _, g in pairs], allow_unused=True
            )
        g_lse = g_lse + (0.0 if g_l is None else g_l)
        g_zx = torch.where(x < width, g_zx + (0.0 if g_x is None else g_x), 0.0)
        out = torch.empty_like(z) if rows is None else torch.zeros_like(z)
        copy = None if rows is None else _scratch(z, n)
        share = None if log_cpi is None else _scratch(z, n)
        cols_all = _excluded(x, x0, width)
        to_p = torch.exp(-lse - log_a)  # softmax(z) = A e^z * to_p
        for lo, hi in blocks(n, width):
            block = take(z, rows, lo, hi, copy)
            cols = [(c[lo:hi], v[lo:hi]) for c, v in cols_all]
            target = out[lo:hi] if rows is None else block
            w = torch.add(block, log_a[lo:hi, None], out=target).exp_()  # A e^z
            p = w * to_p[lo:hi, None]
            if log_cpi is None:
                w.mul_(g_e[lo:hi, None]).add_(g_log[lo:hi, None])
            else:
                sh = torch.div(w, w + log_cpi[lo:hi, None].exp(), out=share[: hi - lo])
                w.mul_(g_e[lo:hi, None]).addcmul_(sh, g_log[lo:hi, None])
            zero_columns(w, cols)
            w.addcmul_(p, g_lse[lo:hi, None])
            w.scatter_add_(1, x0[lo:hi, None], (g_sx0[lo:hi] * share_x0[lo:hi] + g_zx0[lo:hi])[:, None])
            w.scatter_add_(1, x[lo:hi, None].clamp(max=width - 1), g_zx[lo:hi, None])
            if rows is not None:
                out.index_copy_(0, rows[lo:hi], w)
        return out, None, None, None, None, None


def stats_and_sums(
    z: Tensor,
    rows: Tensor | None,
    x: Tensor,
    x0: Tensor,
    coefficients: Coefficients,
    *,
    need_log_sum: bool,
) -> tuple[Tensor, ...]:
    r"""Statistics and sums of x_0-prediction ratio rows, ``(n,)`` each:
    :math:`(\log\sum_y e^{z_y},\ z_x,\ z_{x_0},\ E,\ \Lambda,\ \log s_{x_0})` with E, Λ and
    :math:`\log s_{x_0}` as in :func:`.ratio_rows.row_sums` for the coefficients
    ``coefficients(lse, z_x)``; differentiable in ``z`` (through the coefficients too).

    Args:
        z: ``(N, K)`` raw outputs.
        rows: ``(n,)`` long indices of the rows to reduce, or ``None`` for all.
        x, x0: ``(n,)`` long current states (``>= K``: an added state, :math:`z_x` = 0) and data ids.
        coefficients: per-row :math:`(\log A, \log C\pi)` from ``(lse, z_x)``.
        need_log_sum: compute Λ (else 0).
    """
    return _StatsAndSums.apply(z, rows, x, x0, coefficients, need_log_sum)


class _RowStats(torch.autograd.Function):
    """See :func:`row_stats`."""

    @staticmethod
    def forward(ctx, z: Tensor, rows: Tensor | None, *cols: Tensor) -> tuple[Tensor, ...]:
        n, width = cols[0].numel(), z.shape[1]
        lse = torch.empty(n, dtype=z.dtype, device=z.device)
        copy = None if rows is None else _scratch(z, n)
        for lo, hi in blocks(n, width):
            lse[lo:hi] = torch.logsumexp(take(z, rows, lo, hi, copy), dim=1)
        ctx.save_for_backward(z, rows, lse, *cols)
        return (lse, *(torch.where(c < width, take_entries(z, rows, c), 0.0) for c in cols))

    @staticmethod
    def backward(ctx, g_lse: Tensor, *g_cols: Tensor) -> tuple[Tensor | None, ...]:
        z, rows, lse, *cols = ctx.saved_tensors
        n, width = lse.numel(), z.shape[1]
        out = torch.empty_like(z) if rows is None else torch.zeros_like(z)
        g_cols = [torch.where(c < width, g, 0.0) for c, g in zip(cols, g_cols, strict=True)]
        copy = None if rows is None else _scratch(z, n)
        for lo, hi in blocks(n, width):
            block = take(z, rows, lo, hi, copy)
            target = out[lo:hi] if rows is None else block
            grad = torch.sub(block, lse[lo:hi, None], out=target).exp_().mul_(g_lse[lo:hi, None])
            for c, g in zip(cols, g_cols, strict=True):
                grad.scatter_add_(1, c[lo:hi, None].clamp(max=width - 1), g[lo:hi, None])
            if rows is not None:
                out.index_copy_(0, rows[lo:hi], grad)
        return (out, None, *(None for _ in cols))


def row_stats(z: Tensor, rows: Tensor | None, *cols: Tensor) -> tuple[Tensor, ...]:
    r""":math:`\log\sum_y e^{z_y}` and :math:`z_c` for each column tensor ``c`` (0 where c >= K) of
    the selected rows of ``z`` ``(N, K)``, ``(n,)`` each; no ``(N, K)`` temporary in the forward
    pass, one in the backward."""
    return _RowStats.apply(z, rows, *cols)
