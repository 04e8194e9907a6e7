r"""Graph data sets: a JSONL file or a generated benchmark, as padded ``GraphState`` batches, with
the graph metrics as sample metrics.

``data: {name: graphs, source: jsonl, path: ...}`` reads the JSONL format of :mod:`.io`;
``source: planar`` and ``source: sbm`` generate SPECTRE's planar-64-200 and SBM-200
(:mod:`.generators`). Splits are a seeded permutation (:func:`~.generators.spectre_split`, seed
1234): 128 / 32 / 40 for the generated sets (SPECTRE's fractions 0.64 / 0.16 / 0.2), 80% / 0 / 20%
for a file (GDSS's community-small and ego-small protocol; with no validation split ``val`` is the
test split). The split's indices are recorded in the run's ``data_state.json``.

What the model sees (:attr:`GraphData.info`): fields ``nodes`` (K_x categories: node labels, or
one category), ``edges`` (K_e categories: 0 = no edge, label + 1 otherwise) with their training
marginals, the node mask, and the node-count distribution :math:`p(n)` of the training split with
``node_count_pseudocount`` added to every count from the smallest to the largest graph of the
data set (so a test graph of a size absent from training keeps a finite likelihood).

Sample metrics (:meth:`GraphData.graph_metrics`), against the test split: ``mmd_degree``,
``mmd_clustering``, ``mmd_orbit``, ``mmd_spectral`` (squared MMD, kernels of ``mmd: emd`` or
``mmd: tv``, :mod:`discodiff.metrics.graph_mmd`), ``mmd_average`` (degree, clustering, orbit:
GDSS's "Avg."), the ratios to the train-vs-test MMD (``mmd_*_ratio``, ``mmd_ratio``),
``uniqueness`` and ``novelty``, and with ``validity: planar | sbm`` also ``validity`` and ``vun``.

Subclassing (molecules): pass the splits of :class:`~.io.Graph` records to :class:`GraphData`
and override :meth:`GraphData.to_objects` (graphs -> domain objects), :meth:`GraphData.object_metrics`
(score them) and :meth:`GraphData.save_objects` (write them); node and edge categories come
from the labels in the data (or ``node_vocab`` / ``edge_vocab``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ..data.base import DATASETS, DataInfo, DataSource, FieldInfo, TensorStream, TrainStream
from ..errors import DataError
from ..metrics.graph_mmd import descriptors, graph_mmds, mmd_ratios
from ..metrics.graph_validity import VALIDITY, IsomorphismIndex, vun
from ..state import index
from . import generators
from .io import Graph, read_jsonl, write_jsonl
from .plots import graph_grid
from .state import GraphState, edge_entries, from_dense, to_dense

GDSS_STATISTICS = ("mmd_degree", "mmd_clustering", "mmd_orbit")


@dataclass
class GraphDataConfig:
    """``data: {name: graphs, ...}`` (module docstring)."""

    source: Literal["jsonl", "planar", "sbm"] = "jsonl"
    path: str = ""  # the JSONL file (source: jsonl)
    num_graphs: int = generators.NUM_GRAPHS  # generated sources
    seed: int = 0  # generator seed (generated sources)
    val_fraction: float | None = None  # None: 0.16 generated, 0 for a file
    test_fraction: float = 0.2
    split_seed: int = generators.SPECTRE_SPLIT_SEED
    mmd: Literal["emd", "tv"] = "tv"  # kernels: emd (GraphRNN / GDSS tables) or tv (SPECTRE / DiGress)
    validity: Literal["none", "planar", "sbm"] = "none"  # V.U.N. validity check
    node_count_pseudocount: float = 0.01  # added to every node count in the data's range

    def __post_init__(self) -> None:
        if self.source == "jsonl" and not self.path:
            raise ValueError("data.path is required for source 'jsonl' (a JSONL graph file)")
        val = self.val_fraction if self.val_fraction is not None else 0.0
        if not (0 <= val < 1 and 0 < self.test_fraction < 1 and val + self.test_fraction < 1):
            raise ValueError("data.val_fraction and data.test_fraction must be in [0, 1) and sum below 1")
        if self.num_graphs < 3 or self.node_count_pseudocount < 0:
            raise ValueError("data.num_graphs must be >= 3 and data.node_count_pseudocount >= 0")


class GraphData(DataSource):
    """Graphs split into train / val / test (module docstring).

    Args:
        splits: ``{"train": [...], "val": [...], "test": [...]}`` graphs (``val`` may be empty).
        mmd: kernel protocol of the MMDs.
        validity: name of the V.U.N. validity check, or ``None``.
        node_count_pseudocount: see the module docstring.
        split_indices: the split's indices into the source, recorded in :meth:`state_dict`.
        node_vocab, edge_vocab: numbers of categories (default: from the labels in the data).
    """

    def __init__(
        self,
        splits: dict[str, list[Graph]],
        *,
        mmd: str = "tv",
        validity: str | None = None,
        node_count_pseudocount: float = 0.01,
        split_indices: dict[str, list[int]] | None = None,
        node_vocab: int | None = None,
        edge_vocab: int | None = None,
    ) -> None:
        if not splits.get("train") or not splits.get("test"):
            raise DataError("a graph data set needs non-empty train and test splits")
        self.graphs = {k: list(v) for k, v in splits.items()}
        everything = [g for v in self.graphs.values() for g in v]
        self.labelled_nodes = everything[0].node_labels is not None
        self.labelled_edges = everything[0].edge_labels is not None
        self.node_vocab = node_vocab or (
            max(int(g.node_labels.max()) for g in everything) + 1 if self.labelled_nodes else 1
        )
        self.edge_vocab = edge_vocab or (
            max((int(g.edge_labels.max()) for g in everything if g.num_edges), default=0) + 2
            if self.labelled_edges
            else 2
        )
        self.mmd, self.validity = mmd, validity
        self.split_indices = split_indices or {}
        sizes = [g.num_nodes for g in everything]
        n_max = max(sizes)
        self.dense = {k: self._compact(to_dense(v, n_max)) for k, v in self.graphs.items() if v}
        counts = np.bincount([g.num_nodes for g in self.graphs["train"]], minlength=n_max + 1).astype(
            np.float64
        )
        counts[min(sizes) :] += node_count_pseudocount
        node_marginal, edge_marginal = self._marginals(self.dense["train"])
        self.info = DataInfo(
            event_shape=(n_max, n_max),
            kind="graph",
            unit="bits_per_entry",
            example_unit="bits_per_graph",
            fields={
                "nodes": FieldInfo((n_max,), "tokens", self.node_vocab, marginal=node_marginal),
                "edges": FieldInfo(
                    (n_max, n_max), "tokens", self.edge_vocab, symmetric=True, marginal=edge_marginal
                ),
                "node_mask": FieldInfo((n_max,), "mask"),
            },
            node_counts=tuple((counts / counts.sum()).tolist()),
        )
        self._reference: dict[str, dict] = {}
        self._train_mmds: dict[str, float] | None = None
        self._train_index: IsomorphismIndex | None = None

    def _compact(self, state: GraphState) -> GraphState:
        """Store categories as uint8 where they fit (the methods read them as long)."""
        small = max(self.node_vocab, self.edge_vocab) <= 255
        dtype = torch.uint8 if small else torch.long
        return GraphState(state.nodes.to(dtype), state.edges.to(dtype), state.node_mask)

    def _marginals(self, train: GraphState) -> tuple[tuple[float, ...], tuple[float, ...]]:
        nodes = torch.bincount(train.nodes[train.node_mask].long(), minlength=self.node_vocab).double()
        pairs = edge_entries(train.node_mask, upper=True)
        edges = torch.bincount(train.edges[pairs].long(), minlength=self.edge_vocab).double()
        return tuple((nodes / nodes.sum()).tolist()), tuple((edges / edges.sum()).tolist())

    # ---- the DataSource interface ------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"split": self.split_indices}

    def train_stream(self, seed: int) -> TrainStream:
        return TensorStream(self.dense["train"], None, seed)

    def split(self, name: Literal["val", "test"]) -> tuple[GraphState, Tensor | None]:
        if name not in ("val", "test"):
            raise ValueError(f"unknown split {name!r}; allowed: val, test")
        return self.dense.get(name, self.dense["test"]), None

    def graphs_of(self, samples: GraphState) -> list[Graph]:
        """Samples as :class:`Graph` records (labels as in the data)."""
        return from_dense(samples, labelled_nodes=self.labelled_nodes, labelled_edges=self.labelled_edges)

    def save_samples(self, samples: GraphState, stem: Path, cond: Tensor | None = None) -> list[Path]:
        """``stem.jsonl`` (every sample), ``stem.png`` (a grid of the first 16) and the domain files."""
        graphs = self.graphs_of(samples)
        paths = [
            write_jsonl(graphs, Path(stem).with_suffix(".jsonl")),
            graph_grid(graphs, Path(stem).with_suffix(".png")),
        ]
        return paths + self.save_objects(self.to_objects(graphs), Path(stem))

    def sample_metrics(self, samples: GraphState, cond: Tensor | None = None) -> dict[str, float]:
        graphs = self.graphs_of(samples)
        return {**self.graph_metrics(graphs), **self.object_metrics(self.to_objects(graphs))}

    def infilling_example(self, n: int) -> tuple[GraphState, GraphState] | None:
        """The first ``n`` test graphs with the subgraph on their first half of nodes given."""
        known = index(self.dense["test"], slice(0, n))
        known = GraphState(known.nodes.long(), known.edges.long(), known.node_mask)
        half = torch.arange(known.max_nodes) < (known.node_mask.sum(-1, keepdim=True) + 1) // 2
        pairs = half[:, :, None] & half[:, None, :] & edge_entries(known.node_mask, upper=False)
        return known, GraphState(half & known.node_mask, pairs, known.node_mask.clone())

    def save_infilling(
        self, known: GraphState, known_mask: GraphState, samples: GraphState, stem: Path
    ) -> list[Path]:
        """The completed graphs as JSONL, and a picture with the given subgraph in black."""
        graphs = self.graphs_of(samples)
        given = [known_mask.nodes[b].nonzero().flatten().tolist() for b in range(known_mask.num_graphs)]
        return [
            write_jsonl(graphs, Path(stem).with_suffix(".jsonl")),
            graph_grid(graphs, Path(stem).with_suffix(".png"), known_nodes=given),
        ]

    def plot_trajectory(self, trajectory: list[tuple[float, GraphState]], path: Path) -> Path | None:
        """The first sample at each recorded time (noisy edges drawn as edges)."""
        firsts = [self.graphs_of(self._as_data(index(x, slice(0, 1))))[0] for _, x in trajectory]
        return graph_grid(firsts, path, titles=[f"t = {t:.2f}" for t, _ in trajectory])

    def _as_data(self, x: GraphState) -> GraphState:
        """A noisy state as data categories for drawing: [MASK] entries (id >= K) become 0."""
        nodes = torch.where(x.nodes >= self.node_vocab, 0, x.nodes)
        return GraphState(nodes, torch.where(x.edges >= self.edge_vocab, 0, x.edges), x.node_mask)

    # ---- metrics and hooks -------------------------------------------------------------------

    def reference(self, split: str) -> dict:
        """Descriptors of a split's graphs (cached)."""
        if split not in self._reference:
            self._reference[split] = descriptors([g.adjacency() for g in self.graphs[split]])
        return self._reference[split]

    def graph_metrics(self, graphs: list[Graph]) -> dict[str, float]:
        """MMDs against the test split, their ratios, uniqueness / novelty and V.U.N. (module docstring)."""
        if not graphs:
            return {}
        out = graph_mmds(self.reference("test"), descriptors([g.adjacency() for g in graphs]), self.mmd)
        out["mmd_average"] = float(np.mean([out[k] for k in GDSS_STATISTICS]))
        if self._train_mmds is None:
            self._train_mmds = graph_mmds(self.reference("test"), self.reference("train"), self.mmd)
        out.update(mmd_ratios(out, self._train_mmds))
        if self._train_index is None:
            self._train_index = IsomorphismIndex([g.to_networkx() for g in self.graphs["train"]])
        check = VALIDITY[self.validity] if self.validity else None
        out.update(vun([g.to_networkx() for g in graphs], self._train_index, check))
        return out

    def to_objects(self, graphs: list[Graph]) -> list:
        """Domain objects of sampled graphs (graphs themselves here; molecules in a subclass)."""
        return graphs

    def object_metrics(self, objects: list) -> dict[str, float]:
        """Domain metrics of the sampled objects (none for plain graphs)."""
        return {}

    def save_objects(self, objects: list, stem: Path) -> list[Path]:
        """Write domain objects next to ``stem`` (nothing for plain graphs)."""
        return []


def load_graphs(config: GraphDataConfig) -> list[Graph]:
    if config.source == "planar":
        return generators.planar_graphs(config.num_graphs, seed=config.seed)
    if config.source == "sbm":
        return generators.sbm_graphs(config.num_graphs, seed=config.seed)
    return read_jsonl(config.path)


@DATASETS.register("graphs", config=GraphDataConfig)
def build_graphs(config: GraphDataConfig, state: dict | None = None) -> GraphData:
    graphs = load_graphs(config)
    if state and state.get("split"):
        parts = {k: np.asarray(v, dtype=np.int64) for k, v in state["split"].items()}
        if max(int(v.max(initial=-1)) for v in parts.values()) >= len(graphs):
            raise DataError(f"the run's recorded split does not fit the {len(graphs)} graphs of the data")
    else:
        n = len(graphs)
        val_fraction = config.val_fraction
        if val_fraction is None:
            val_fraction = (
                0.0 if config.source == "jsonl" else generators.SPECTRE_SPLIT[1] / generators.NUM_GRAPHS
            )
        n_test, n_val = round(n * config.test_fraction), round(n * val_fraction)
        parts = generators.spectre_split(n, (n - n_test - n_val, n_val, n_test), seed=config.split_seed)
    splits = {k: [graphs[i] for i in v] for k, v in parts.items()}
    validity = None if config.validity == "none" else config.validity
    return GraphData(
        splits,
        mmd=config.mmd,
        validity=validity,
        node_count_pseudocount=config.node_count_pseudocount,
        split_indices={k: v.tolist() for k, v in parts.items()},
    )
