"""The synthetic graph benchmarks, generated with the SPECTRE recipes (Martinkus et al. 2022) and
fixed seeds, and the SPECTRE split.

- ``planar``: planar-64-200. For each graph, 64 points uniform in the unit square and their
  Delaunay triangulation (``scipy.spatial.Delaunay``), an edge on every side of every triangle.
- ``sbm``: SBM-200. For each graph, k communities with k uniform in {2, ..., 5}, each of a size
  uniform in {20, ..., 40}; every pair inside a community is an edge with probability
  p_in = 0.3, every pair across communities with p_out = 0.005 (the distribution of
  ``networkx.stochastic_block_model``, drawn here with numpy so the graphs depend only on the seed).

Both draw from ``numpy.random.default_rng(seed)`` (seed 0 by default), so the graphs are not
SPECTRE's stored files but come from the same distribution. :func:`spectre_split` reproduces
SPECTRE's ``random_split`` into 128 / 32 / 40 (train / val / test) with its seed 1234
(``torch.randperm`` under ``torch.Generator().manual_seed(1234)``, consecutive chunks); DiGress
uses its own permutation with seed 0 and DeFoG fixed files (PITFALLS, Graphs).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.spatial import Delaunay

from .io import Graph

PLANAR_NODES = 64
SBM_COMMUNITIES = (2, 5)  # inclusive range of the number of communities
SBM_SIZES = (20, 40)  # inclusive range of a community's size
SBM_P_IN, SBM_P_OUT = 0.3, 0.005
NUM_GRAPHS = 200
SPECTRE_SPLIT = (128, 32, 40)  # train, val, test
SPECTRE_SPLIT_SEED = 1234


def planar_graph(rng: np.random.Generator, num_nodes: int = PLANAR_NODES) -> Graph:
    """One Delaunay triangulation of ``num_nodes`` uniform points in the unit square."""
    points = rng.random((num_nodes, 2))
    simplices = Delaunay(points).simplices  # (triangles, 3)
    sides = np.concatenate([simplices[:, [0, 1]], simplices[:, [1, 2]], simplices[:, [0, 2]]])
    sides = np.unique(np.sort(sides, axis=1), axis=0)
    return Graph(num_nodes, sides)


def sbm_graph(
    rng: np.random.Generator,
    *,
    communities: tuple[int, int] = SBM_COMMUNITIES,
    sizes: tuple[int, int] = SBM_SIZES,
    p_in: float = SBM_P_IN,
    p_out: float = SBM_P_OUT,
) -> Graph:
    """One stochastic-block-model graph (module docstring); nodes are numbered community by community."""
    k = int(rng.integers(communities[0], communities[1] + 1))
    block_sizes = rng.integers(sizes[0], sizes[1] + 1, size=k)
    block = np.repeat(np.arange(k), block_sizes)
    n = len(block)
    u, v = np.triu_indices(n, k=1)
    p = np.where(block[u] == block[v], p_in, p_out)
    keep = rng.random(len(u)) < p
    return Graph(n, np.stack([u[keep], v[keep]], axis=1))


def planar_graphs(
    num_graphs: int = NUM_GRAPHS, *, num_nodes: int = PLANAR_NODES, seed: int = 0
) -> list[Graph]:
    """planar-64-200 (module docstring)."""
    rng = np.random.default_rng(seed)
    return [planar_graph(rng, num_nodes) for _ in range(num_graphs)]


def sbm_graphs(num_graphs: int = NUM_GRAPHS, *, seed: int = 0) -> list[Graph]:
    """SBM-200 (module docstring)."""
    rng = np.random.default_rng(seed)
    return [sbm_graph(rng) for _ in range(num_graphs)]


def spectre_split(
    num_graphs: int, sizes: Sequence[int] = SPECTRE_SPLIT, *, seed: int = SPECTRE_SPLIT_SEED
) -> dict[str, np.ndarray]:
    """Indices of the train / val / test graphs: SPECTRE's ``random_split(lengths, seed)``.

    ``sizes`` are counts summing to ``num_graphs``; returns int64 index arrays keyed by split.
    """
    if len(sizes) != 3 or sum(sizes) != num_graphs or min(sizes) < 0:
        raise ValueError(f"split sizes {list(sizes)} must be 3 counts >= 0 summing to {num_graphs}")
    perm = torch.randperm(num_graphs, generator=torch.Generator().manual_seed(seed)).numpy()
    a, b = sizes[0], sizes[0] + sizes[1]
    return {"train": perm[:a], "val": perm[a:b], "test": perm[b:]}
