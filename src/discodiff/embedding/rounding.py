r"""Rounding: from a point in embedding space to the nearest token vector.

- :func:`nearest_index`: :math:`\arg\min_k \|x - e_k\|_2`, the "nearest embedding" decoder and
  Diffusion-LM's rounding of a generated :math:`\hat x_0` (Li et al. 2022, Sec. 4.2).
- :func:`clamp_to_nearest`: :math:`\mathrm{Clamp}(x) = e_{\arg\min_k \|x - e_k\|}`, the clamping
  trick: the sampler replaces the predicted :math:`\hat x_0` by its nearest embedding at every
  step (Li et al. 2022, Sec. 4.2), so decoding ends on exact embeddings.

Distances go through :math:`\|x - e_k\|^2 = \|x\|^2 - 2x^\top e_k + \|e_k\|^2` (the first term
does not change the argmin), in float32 at least, over chunks of rows so that the ``(rows, K)``
score matrix stays below :data:`NEAREST_CHUNK_ELEMENTS` for any vocabulary size.
"""

from __future__ import annotations

import torch
from torch import Tensor

NEAREST_CHUNK_ELEMENTS = 1 << 22
"""Largest ``rows x K`` score block (16 MB in float32): K = 50,257 takes 83 rows at a time."""


def nearest_index(x: Tensor, table: Tensor) -> Tensor:
    r""":math:`\arg\min_k \|x - e_k\|_2` for every vector: ``x`` (..., d), ``table`` (K, d) -> (...) long."""
    if x.shape[-1] != table.shape[-1]:
        raise ValueError(
            f"vectors of width {x.shape[-1]} cannot be rounded to a table of width {table.shape[-1]}"
        )
    dtype = torch.promote_types(torch.promote_types(x.dtype, table.dtype), torch.float32)
    flat = x.reshape(-1, x.shape[-1]).to(dtype)
    table = table.to(dtype)
    half_sq_norm = 0.5 * (table**2).sum(dim=-1)  # (K,)
    rows = max(1, NEAREST_CHUNK_ELEMENTS // table.shape[0])
    out = torch.empty(flat.shape[0], dtype=torch.long, device=x.device)
    for start in range(0, flat.shape[0], rows):
        scores = flat[start : start + rows] @ table.T - half_sq_norm  # = -(||x - e||^2 - ||x||^2) / 2
        out[start : start + rows] = scores.argmax(dim=-1)
    return out.reshape(x.shape[:-1])


def clamp_to_nearest(x: Tensor, table: Tensor) -> Tensor:
    r"""The clamping trick: every vector replaced by its nearest table row, same shape and dtype as ``x``."""
    return table[nearest_index(x, table)].to(x.dtype)
