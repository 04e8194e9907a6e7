r"""Node orbit counts of graphlets on 2 to 4 nodes (the 15 orbits of ORCA, Hočevar & Demšar 2014).

For node v, orbit o counts the *induced* connected subgraphs on 2, 3 or 4 nodes in which v plays
the role o. ORCA's numbering (the order of the GraphRNN orbit statistic):

====  ================================  ====  ======================================
  0   edge                                8   4-cycle
  1   3-path, end                         9   paw (triangle + pendant), pendant end
  2   3-path, middle                     10   paw, triangle node of degree 2
  3   triangle                           11   paw, triangle node of degree 3
  4   4-path, end                        12   diamond (K4 minus an edge), degree 2
  5   4-path, inner                      13   diamond, degree 3
  6   3-star, leaf                       14   K4
  7   3-star, centre
====  ================================  ====  ======================================

In a connected graph on at most 4 nodes the sorted degree sequence names the graphlet and a
node's degree its orbit (:data:`ORBIT_OF`). :func:`orbit_counts` is exact and fast: it counts
*non-induced* copies of each 4-node pattern per node from powers of the adjacency matrix and
turns them into induced counts with the matrix :func:`pattern_coefficients`, which is itself
computed by enumeration (how many copies of pattern p with v in position p each graphlet holds
when v is in orbit o). :func:`orbit_counts_brute_force` enumerates every node subset, for tests.
orbit-count (GPL) and ORCA itself are not used.
"""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np

NUM_ORBITS = 15

ORBIT_OF: dict[tuple[tuple[int, ...], int], int] = {
    ((1, 1), 1): 0,
    ((1, 1, 2), 1): 1,
    ((1, 1, 2), 2): 2,
    ((2, 2, 2), 2): 3,
    ((1, 1, 2, 2), 1): 4,
    ((1, 1, 2, 2), 2): 5,
    ((1, 1, 1, 3), 1): 6,
    ((1, 1, 1, 3), 3): 7,
    ((2, 2, 2, 2), 2): 8,
    ((1, 2, 2, 3), 1): 9,
    ((1, 2, 2, 3), 2): 10,
    ((1, 2, 2, 3), 3): 11,
    ((2, 2, 3, 3), 2): 12,
    ((2, 2, 3, 3), 3): 13,
    ((3, 3, 3, 3), 3): 14,
}
"""(sorted degree sequence of a connected graphlet, degree of the node) -> orbit."""


def _is_connected(adj: np.ndarray) -> bool:
    seen, stack = {0}, [0]
    while stack:
        for w in np.nonzero(adj[stack.pop()])[0].tolist():
            if w not in seen:
                seen.add(w)
                stack.append(w)
    return len(seen) == len(adj)


def graphlet_orbits(sub: np.ndarray) -> list[int] | None:
    """Orbit of each node of a small graph ``sub`` (k x k, k = 2..4), or ``None`` if disconnected."""
    if not _is_connected(sub):
        return None
    deg = sub.sum(axis=1)
    key = tuple(sorted(deg.tolist()))
    return [ORBIT_OF[(key, int(d))] for d in deg]


def orbit_counts_brute_force(adj: np.ndarray) -> np.ndarray:
    """``(n, 15)`` int64 orbit counts by enumerating every 2-, 3- and 4-node subset (O(n^4))."""
    adj = np.asarray(adj, dtype=np.int64)
    out = np.zeros((len(adj), NUM_ORBITS), dtype=np.int64)
    for k in (2, 3, 4):
        for nodes in itertools.combinations(range(len(adj)), k):
            orbits = graphlet_orbits(adj[np.ix_(nodes, nodes)])
            if orbits is not None:
                out[list(nodes), orbits] += 1
    return out


# The six 4-node graphlets, edge lists on nodes 0..3.
GRAPHLETS_4 = {
    "path": [(0, 1), (1, 2), (2, 3)],
    "star": [(0, 1), (0, 2), (0, 3)],
    "cycle": [(0, 1), (1, 2), (2, 3), (0, 3)],
    "paw": [(0, 1), (1, 2), (0, 2), (2, 3)],
    "diamond": [(0, 1), (1, 2), (2, 3), (0, 3), (0, 2)],
    "clique": [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)],
}


@cache
def pattern_coefficients() -> np.ndarray:
    r"""``C`` (11 x 11) over orbits 4..14: ``C[p, o]`` = number of (not necessarily induced) copies
    of pattern p's graphlet, with the node in pattern position p, that a node in orbit o sees
    inside its own graphlet. Non-induced counts are then ``N = I C^T`` per node, I the induced ones.

    Found by enumerating the connected spanning edge subsets of each graphlet.
    """
    coeff = np.zeros((11, 11), dtype=np.int64)
    for edges in GRAPHLETS_4.values():
        full = np.zeros((4, 4), dtype=np.int64)
        for u, v in edges:
            full[u, v] = full[v, u] = 1
        orbits = graphlet_orbits(full)
        for r in range(3, len(edges) + 1):
            for subset in itertools.combinations(edges, r):
                sub = np.zeros((4, 4), dtype=np.int64)
                for u, v in subset:
                    sub[u, v] = sub[v, u] = 1
                positions = graphlet_orbits(sub)
                if positions is None:
                    continue
                for node in range(4):
                    coeff[positions[node] - 4, orbits[node] - 4] += 1
    # each orbit o was visited once per node in o: divide by the orbit's size in its graphlet
    sizes = np.zeros(11, dtype=np.int64)
    for edges in GRAPHLETS_4.values():
        full = np.zeros((4, 4), dtype=np.int64)
        for u, v in edges:
            full[u, v] = full[v, u] = 1
        for o in graphlet_orbits(full):
            sizes[o - 4] += 1
    return coeff // sizes[None, :]


def _noninduced_4node_counts(a: np.ndarray) -> np.ndarray:
    """Per node, non-induced copies of each 4-node pattern position (orbits 4..14): ``(n, 11)``."""
    d = a.sum(axis=1)
    a2 = a @ a
    t = (a2 * a).sum(axis=1) // 2  # triangles at v
    common = a2 * a  # common neighbours of adjacent pairs (triangles on edge vu)
    off = a2 - np.diag(np.diag(a2))
    n = len(a)
    out = np.zeros((n, 11), dtype=np.int64)
    out[:, 0] = a @ (a @ (d - 1)) - d * (d - 1) - 2 * t  # path end: v-u-w-x
    out[:, 1] = (d - 1) * (a @ (d - 1)) - 2 * t  # path inner: u-v-w-x
    out[:, 2] = a @ ((d - 1) * (d - 2) // 2)  # star leaf
    out[:, 3] = d * (d - 1) * (d - 2) // 6  # star centre
    out[:, 4] = (off * (off - 1) // 2).sum(axis=1)  # 4-cycles through v
    out[:, 5] = a @ t - common.sum(axis=1)  # paw, pendant end v-c, triangle at c avoiding v
    out[:, 6] = (common * (d - 2)[None, :]).sum(axis=1)  # paw, degree-2 triangle node
    out[:, 7] = t * (d - 2)  # paw, degree-3 node
    chord = a * (a2 - 1)
    out[:, 8] = np.einsum("va,ab,bv->v", a, chord, a) // 2  # diamond, degree 2
    out[:, 9] = (common * (common - 1) // 2).sum(axis=1)  # diamond, degree 3 (chord end)
    for v in range(n):  # K4 through v: triangles among v's neighbours
        nb = np.nonzero(a[v])[0]
        if len(nb) >= 3:
            s = a[np.ix_(nb, nb)]
            out[v, 10] = np.einsum("ij,jk,ki->", s, s, s) // 6
    return out


def orbit_counts(adj: np.ndarray) -> np.ndarray:
    """``(n, 15)`` int64 node orbit counts of the graph with 0/1 adjacency ``adj`` (module docstring)."""
    a = np.asarray(adj, dtype=np.int64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"adjacency must be a square matrix, got shape {a.shape}")
    d = a.sum(axis=1)
    t = ((a @ a) * a).sum(axis=1) // 2
    out = np.zeros((len(a), NUM_ORBITS), dtype=np.int64)
    out[:, 0] = d
    out[:, 1] = a @ (d - 1) - 2 * t
    out[:, 2] = d * (d - 1) // 2 - t
    out[:, 3] = t
    noninduced = _noninduced_4node_counts(a)
    # N = I C^T with C unit upper triangular in edge order: solve exactly in integers
    coeff = pattern_coefficients()
    induced = np.zeros_like(noninduced)
    for o in range(10, -1, -1):
        induced[:, o] = noninduced[:, o] - induced[:, o + 1 :] @ coeff[o, o + 1 :]
    out[:, 4:] = induced
    return out
