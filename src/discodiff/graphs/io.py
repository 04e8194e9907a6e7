"""Graphs as records, and the JSONL graph format.

One graph per line::

    {"num_nodes": 4, "edges": [[0, 1], [1, 2], [2, 3]]}
    {"num_nodes": 3, "edges": [[0, 1]], "node_labels": [0, 2, 1], "edge_labels": [1]}

- ``num_nodes``: n >= 1; nodes are ``0 .. n-1``.
- ``edges``: undirected pairs ``[u, v]`` with ``u != v`` (no self-loops), each pair at most once
  (``[1, 0]`` repeats ``[0, 1]``).
- ``node_labels`` (optional): one integer category >= 0 per node.
- ``edge_labels`` (optional): one integer category >= 0 per edge, in the order of ``edges``.
  Inside the models "no edge" is category 0 and an edge of label c is category c + 1.

A file either has labels on every line or on none. Any violation raises one
:class:`~discodiff.errors.DataError` naming the file and line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError


@dataclass
class Graph:
    """An undirected simple graph with optional integer node and edge categories.

    Attributes:
        num_nodes: n.
        edges: ``(m, 2)`` int64 pairs with ``u < v``, sorted.
        node_labels: ``(n,)`` int64 categories, or ``None``.
        edge_labels: ``(m,)`` int64 categories of ``edges`` (row by row), or ``None``.
    """

    num_nodes: int
    edges: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    node_labels: np.ndarray | None = None
    edge_labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.edges = np.asarray(self.edges, dtype=np.int64).reshape(-1, 2)
        problem = _edge_problem(self.num_nodes, self.edges)
        if problem:
            raise ValueError(problem)
        u, v = np.minimum(self.edges[:, 0], self.edges[:, 1]), np.maximum(self.edges[:, 0], self.edges[:, 1])
        order = np.lexsort((v, u))
        self.edges = np.stack([u, v], axis=1)[order]
        if self.node_labels is not None:
            self.node_labels = np.asarray(self.node_labels, dtype=np.int64)
        if self.edge_labels is not None:
            self.edge_labels = np.asarray(self.edge_labels, dtype=np.int64)[order]

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    def adjacency(self) -> np.ndarray:
        """``(n, n)`` int64 0/1 symmetric adjacency matrix, zero diagonal."""
        a = np.zeros((self.num_nodes, self.num_nodes), dtype=np.int64)
        a[self.edges[:, 0], self.edges[:, 1]] = 1
        a[self.edges[:, 1], self.edges[:, 0]] = 1
        return a

    def to_networkx(self):
        """A ``networkx.Graph`` with nodes ``0 .. n-1`` (labels as ``label`` attributes)."""
        import networkx as nx

        g = nx.Graph()
        g.add_nodes_from(range(self.num_nodes))
        if self.node_labels is not None:
            nx.set_node_attributes(g, dict(enumerate(self.node_labels.tolist())), "label")
        if self.edge_labels is None:
            g.add_edges_from(self.edges.tolist())
        else:
            g.add_edges_from((u, v, {"label": c}) for (u, v), c in zip(self.edges.tolist(), self.edge_labels))
        return g

    def to_record(self) -> dict:
        """The JSONL record of this graph."""
        rec: dict = {"num_nodes": int(self.num_nodes), "edges": self.edges.tolist()}
        if self.node_labels is not None:
            rec["node_labels"] = self.node_labels.tolist()
        if self.edge_labels is not None:
            rec["edge_labels"] = self.edge_labels.tolist()
        return rec


def from_networkx(g) -> Graph:
    """A :class:`Graph` from a ``networkx.Graph`` (nodes relabelled 0 .. n-1 in iteration order)."""
    index = {node: i for i, node in enumerate(g.nodes())}
    edges = [(index[u], index[v]) for u, v in g.edges()]
    return Graph(len(index), np.asarray(edges, dtype=np.int64).reshape(-1, 2))


def _edge_problem(n: int, edges: np.ndarray) -> str | None:
    """What is wrong with an edge list of a graph on ``n`` nodes, or ``None``."""
    if n < 1:
        return f"num_nodes must be >= 1, got {n}"
    if len(edges) == 0:
        return None
    loops = np.nonzero(edges[:, 0] == edges[:, 1])[0]
    if len(loops):
        return f"self-loop [{edges[loops[0], 0]}, {edges[loops[0], 1]}] (edge {loops[0]})"
    bad = np.nonzero((edges < 0).any(axis=1) | (edges >= n).any(axis=1))[0]
    if len(bad):
        u, v = edges[bad[0]]
        return f"edge [{u}, {v}] (edge {bad[0]}) has a node id outside 0 .. {n - 1}"
    keys = np.minimum(edges[:, 0], edges[:, 1]) * n + np.maximum(edges[:, 0], edges[:, 1])
    _, first, counts = np.unique(keys, return_index=True, return_counts=True)
    if (counts > 1).any():
        key = keys[first[counts > 1][0]]
        dup = np.nonzero(keys == key)[0]
        return f"duplicate edge [{key // n}, {key % n}] (edges {dup[0]} and {dup[1]})"
    return None


def _int_list(value, name: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"'{name}' must be a list of integers")
    return value


def parse_record(rec: object) -> Graph:
    """One JSONL record -> :class:`Graph`; ``ValueError`` naming the problem."""
    if not isinstance(rec, dict):
        raise ValueError(f"expected a JSON object, got {type(rec).__name__}")
    unknown = set(rec) - {"num_nodes", "edges", "node_labels", "edge_labels"}
    if unknown:
        raise ValueError(
            f"unknown key(s) {', '.join(sorted(unknown))}; "
            "allowed: num_nodes, edges, node_labels, edge_labels"
        )
    n = rec.get("num_nodes")
    if not isinstance(n, int) or isinstance(n, bool):
        raise ValueError("'num_nodes' is missing or not an integer")
    raw_edges = rec.get("edges", [])
    if not isinstance(raw_edges, list) or not all(
        isinstance(e, list) and len(e) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in e)
        for e in raw_edges
    ):
        raise ValueError("'edges' must be a list of [u, v] integer pairs")
    edges = np.asarray(raw_edges, dtype=np.int64).reshape(-1, 2)
    problem = _edge_problem(n, edges)
    if problem:
        raise ValueError(problem)
    node_labels = edge_labels = None
    if "node_labels" in rec:
        node_labels = np.asarray(_int_list(rec["node_labels"], "node_labels"), dtype=np.int64)
        if len(node_labels) != n or (node_labels < 0).any():
            raise ValueError(f"'node_labels' must hold {n} integers >= 0 (one per node)")
    if "edge_labels" in rec:
        edge_labels = np.asarray(_int_list(rec["edge_labels"], "edge_labels"), dtype=np.int64)
        if len(edge_labels) != len(edges) or (edge_labels < 0).any():
            raise ValueError(f"'edge_labels' must hold {len(edges)} integers >= 0 (one per edge)")
    return Graph(n, edges, node_labels, edge_labels)


def read_jsonl(path: str | Path) -> list[Graph]:
    """Read and validate a JSONL graph file (module docstring); blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"graph file not found: {path}")
    graphs: list[Graph] = []
    labelled: tuple[bool, bool] | None = None
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                graph = parse_record(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(f"{path}, line {number}: not valid JSON ({err.msg})") from None
            except ValueError as err:
                raise DataError(f"{path}, line {number}: {err}") from None
            kinds = (graph.node_labels is not None, graph.edge_labels is not None)
            if labelled is not None and kinds != labelled:
                raise DataError(
                    f"{path}, line {number}: node_labels/edge_labels must be on every line or on none"
                )
            labelled = kinds
            graphs.append(graph)
    if not graphs:
        raise DataError(f"{path}: no graphs (the file is empty)")
    return graphs


def write_jsonl(graphs: Iterable[Graph], path: str | Path) -> Path:
    """Write graphs in the JSONL format; returns the path."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as f:
        for g in graphs:
            f.write(json.dumps(g.to_record()) + "\n")
    return path


def node_count_histogram(graphs: Sequence[Graph], n_max: int | None = None) -> np.ndarray:
    """Empirical distribution of the node count: ``(n_max + 1,)`` float64, entry n = P(num_nodes = n)."""
    counts = np.bincount([g.num_nodes for g in graphs], minlength=(n_max or 0) + 1).astype(np.float64)
    return counts / counts.sum()
