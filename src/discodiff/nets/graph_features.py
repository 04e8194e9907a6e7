r"""Structural features of (noisy) graphs for the graph transformer (Vignac et al. 2023, DiGress, Sec. 4.3).

All are computed from the 0/1 adjacency A of the real nodes and are permutation-equivariant (node
features) or invariant (graph features):

- **Cycles** (:func:`cycle_counts`): per node the number of 3-, 4- and 5-cycles through it, per
  graph the number of 3-, 4-, 5- and 6-cycles, from traces and diagonals of powers of A (float64).
  With :math:`d = A\mathbf 1` and :math:`a_k = \mathrm{diag}(A^k)`:

  .. math::
      c_3(i) = \tfrac12 a_3(i),\qquad
      c_4(i) = \tfrac12\big(a_4(i) - d_i(d_i - 1) - (A d)_i\big),

      c_5(i) = \tfrac12 a_5(i) - d_i a_3(i) - \tfrac12 (A a_3)_i + \tfrac52 a_3(i)
               - \textstyle\sum_j A_{ij} (A^2)_{ij} d_j,

  totals :math:`C_k = \sum_i c_k(i)/k`, and the 6-cycle total of DiGress's ``KNodeCycles``
  (:func:`six_cycles`). DiGress's main branch gets the 5-cycle count wrong (PITFALLS, Graphs):
  these are checked against brute-force enumeration in the tests.
- **Components** (:func:`components`): connected components by min-label propagation; the number
  of components (graph feature) and whether a node lies outside the largest one (node feature).
- **Spectrum** (:func:`laplacian_features`): eigenvalues and eigenvectors of the combinatorial
  Laplacian L = D - A of the real nodes (padded nodes get eigenvalue 2n, beyond the spectrum, as
  DiGress). Graph features: the ``k`` smallest eigenvalues after the zero ones (one per
  component); node features: the ``m`` eigenvectors that follow the zero eigenvalues. An
  eigenvector's sign is arbitrary, so it is fixed by the sign of its third moment
  :math:`\sum_i v_i^3` (a permutation-invariant choice; DiGress leaves it to ``eigh``). They are
  therefore equivariant where that moment is non-zero and the eigenvalue simple; a graph with
  symmetries (an automorphism mapping v to -v) has no canonical sign, with any method. Every other
  feature is exactly equivariant.

Counts enter the network as :math:`\log(1 + c)` (DiGress clips counts / 10 at 1).
"""

from __future__ import annotations

import torch
from torch import Tensor

ZERO_EIGENVALUE = 1e-5
"""Laplacian eigenvalues below this count as zero (one per connected component)."""


def masked_adjacency(adj: Tensor, node_mask: Tensor) -> Tensor:
    """``adj`` ``(B, n, n)`` as float64 0/1 with padded rows/columns and the diagonal zeroed."""
    pair = node_mask[:, :, None] & node_mask[:, None, :]
    eye = torch.eye(adj.shape[-1], dtype=torch.bool, device=adj.device)
    return (adj.bool() & pair & ~eye).to(torch.float64)


def six_cycles(a: Tensor, a2: Tensor, a3: Tensor, a4: Tensor) -> Tensor:
    r"""Number of 6-cycles per graph, ``(B,)`` (Alon, Yuster & Zwick 1997; DiGress ``KNodeCycles``):

    .. math::
        12 C_6 = \mathrm{tr}A^6 - 3\textstyle\sum a_3^2 + 9\sum A\circ(A^2)^{\circ 2}
        - 6\,a_2\!\cdot a_4 + 6\,\mathrm{tr}A^4 - 4\,\mathrm{tr}A^3 + 4\sum a_2^3
        + 3\sum A^3 - 12\sum a_2^2 + 4\,\mathrm{tr}A^2.
    """

    def tr(x: Tensor) -> Tensor:
        return x.diagonal(dim1=-2, dim2=-1).sum(-1)

    d2, d3, d4 = (x.diagonal(dim1=-2, dim2=-1) for x in (a2, a3, a4))
    total = (
        tr(a4 @ a2)
        - 3 * (d3**2).sum(-1)
        + 9 * (a * a2 * a2).sum((-2, -1))
        - 6 * (d2 * d4).sum(-1)
        + 6 * tr(a4)
        - 4 * tr(a3)
        + 4 * (d2**3).sum(-1)
        + 3 * a3.sum((-2, -1))
        - 12 * (d2**2).sum(-1)
        + 4 * tr(a2)
    )
    return total / 12


def cycle_counts(a: Tensor) -> tuple[Tensor, Tensor]:
    """Per-node 3/4/5-cycles ``(B, n, 3)`` and per-graph 3/4/5/6-cycles ``(B, 4)`` (module docstring).

    ``a``: ``(B, n, n)`` float64 0/1 symmetric adjacency with zero diagonal and padding.
    """
    d = a.sum(-1)
    a2 = a @ a
    a3 = a2 @ a
    a4 = a3 @ a
    a5 = a4 @ a
    t3 = a3.diagonal(dim1=-2, dim2=-1)
    t4, t5 = a4.diagonal(dim1=-2, dim2=-1), a5.diagonal(dim1=-2, dim2=-1)
    c3 = t3 / 2
    c4 = (t4 - d * (d - 1) - (a @ d[..., None])[..., 0]) / 2
    c5 = t5 / 2 - d * t3 - (a @ t3[..., None])[..., 0] / 2 + 2.5 * t3 - (a * a2 * d[:, None, :]).sum(-1)
    per_node = torch.stack([c3, c4, c5], dim=-1)
    totals = torch.stack([c3.sum(-1) / 3, c4.sum(-1) / 4, c5.sum(-1) / 5, six_cycles(a, a2, a3, a4)], -1)
    return per_node, totals


def components(a: Tensor, node_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Number of connected components ``(B,)`` and "not in a largest component" ``(B, n)`` bool.

    Labels start as node indices and take the minimum over neighbours until nothing changes (at
    most n rounds); padded nodes are ignored. A node is outside when its component is smaller than
    the largest one (so ties between largest components keep the feature equivariant).
    """
    B, n = node_mask.shape
    big = torch.full((B, n), n, dtype=torch.long, device=a.device)
    labels = torch.where(node_mask, torch.arange(n, device=a.device).expand(B, n), big)
    neighbour = a.bool() | torch.eye(n, dtype=torch.bool, device=a.device)
    for _ in range(n):
        spread = torch.where(neighbour, labels[:, None, :], big[:, :, None]).amin(-1)
        new = torch.where(node_mask, spread, big)
        if torch.equal(new, labels):
            break
        labels = new
    counts = torch.zeros(B, n + 1, dtype=torch.long, device=a.device)
    counts = counts.scatter_add_(1, labels, node_mask.long())[:, :n]
    size = counts.gather(1, labels.clamp(max=n - 1))
    outside = (size < counts.amax(-1, keepdim=True)) & node_mask
    return (counts > 0).sum(-1), outside


def laplacian_features(a: Tensor, node_mask: Tensor, k: int, m: int) -> tuple[Tensor, Tensor]:
    """``k`` leading non-zero eigenvalues ``(B, k)`` and ``m`` eigenvectors ``(B, n, m)`` (module docstring).

    Graphs with fewer eigenvalues than asked are padded with zeros.
    """
    B, n = node_mask.shape
    mask = node_mask.to(torch.float64)
    lap = torch.diag_embed(a.sum(-1)) - a
    lap = lap + torch.diag_embed((1 - mask) * 2 * n)
    vals, vecs = torch.linalg.eigh(lap)
    zero = ((vals < ZERO_EIGENVALUE) & (vals > -1)).sum(-1)  # number of components
    index = zero[:, None] + torch.arange(max(k, m), device=a.device)[None]
    valid = index < node_mask.sum(-1, keepdim=True)
    index = index.clamp(max=n - 1)
    eigvals = torch.where(valid[:, :k], vals.gather(1, index[:, :k]), 0.0)
    vec = vecs.gather(2, index[:, None, :m].expand(B, n, m))
    sign = torch.sign((vec**3 * mask[..., None]).sum(1, keepdim=True))
    vec = vec * torch.where(sign == 0, 1.0, sign) * mask[..., None]
    return eigvals, torch.where(valid[:, None, :m], vec, 0.0)
