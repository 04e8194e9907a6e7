"""The molecule data source: molecules as graphs for the graph methods, scored and written as
molecules.

:class:`MoleculeData` is a :class:`~discodiff.graphs.data.GraphData` whose node categories are
atom types (:class:`~.convert.AtomTypes`) and edge categories :data:`~.convert.BOND_TYPES` (0 = no
bond, then single, double, triple). It adds, over the graph source:

- class labels when ``data.condition`` names a property (QED or logP in quantile bins,
  :mod:`.properties`), for classifier-free guidance through the graph methods' labels;
- molecule metrics (:mod:`.evaluation`: validity, uniqueness, novelty, FCD, MOSES's metrics)
  instead of the graph MMDs, which DiGress does not report for molecules;
- outputs: ``<stem>.smi`` (one SMILES a sample, ``INVALID`` where sanitization fails) and
  ``<stem>.png``, a grid of the first :data:`GRID_MOLECULES` molecules drawn by RDKit (invalid ones
  drawn as generated, labelled "invalid"), beside the graph source's ``<stem>.jsonl``.

The run's ``data_state.json`` keeps the atom types, the size limit, the property bins, the split
sizes and the refusal counts (:meth:`~.corpus.Corpus.state_dict`); a restored run encodes with
the saved atom types and bins.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..data.base import TensorStream, TrainStream
from ..graphs.data import GraphData
from ..graphs.io import Graph, write_jsonl
from ..graphs.state import GraphState
from ..state import index, to_device
from .configs import MoleculeConfig
from .convert import BOND_TYPES
from .corpus import Corpus, load_corpus
from .datasets import SPLITS
from .draw import drawable, write_grid, write_smiles
from .evaluation import MoleculeMetrics
from .store import MoleculeSet

GRID_MOLECULES = 48
"""Molecules drawn in a sample grid (6 rows of 8)."""


def graph_records(mols: MoleculeSet) -> list[Graph]:
    """A molecule set as labelled graph records (edge label = bond category - 1)."""
    out = []
    for i in range(len(mols)):
        atoms = mols.atoms[mols.atom_offsets[i] : mols.atom_offsets[i + 1]].astype(np.int64)
        edges = mols.edges[mols.edge_offsets[i] : mols.edge_offsets[i + 1]].astype(np.int64)
        out.append(Graph(len(atoms), edges[:, :2], node_labels=atoms, edge_labels=edges[:, 2] - 1))
    return out


class MoleculeData(GraphData):
    """Molecules as graphs (module docstring)."""

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        config = corpus.config
        super().__init__(
            {split: graph_records(corpus.sets[split]) for split in SPLITS},
            node_count_pseudocount=config.node_count_pseudocount,
            node_vocab=len(corpus.atom_types),
            edge_vocab=len(BOND_TYPES),
        )
        if self.max_nodes != corpus.max_atoms:  # pad to the data set's limit, not the largest seen
            self._pad_to(corpus.max_atoms)
        self.cond = {split: torch.from_numpy(v) for split, v in corpus.labels.items()}
        classes = corpus.bins.num_bins if corpus.bins is not None else 0
        self.info = dataclasses.replace(self.info, num_classes=classes)
        self.metrics = MoleculeMetrics(corpus)

    @property
    def max_nodes(self) -> int:
        return self.dense["train"].max_nodes

    def _pad_to(self, n: int) -> None:
        for split, x in self.dense.items():
            k = x.max_nodes
            nodes = torch.nn.functional.pad(x.nodes, (0, n - k))
            edges = torch.nn.functional.pad(x.edges, (0, n - k, 0, n - k))
            self.dense[split] = GraphState(nodes, edges, torch.nn.functional.pad(x.node_mask, (0, n - k)))
        counts = tuple(self.info.node_counts) + (0.0,) * (n - len(self.info.node_counts) + 1)
        fields = {
            name: dataclasses.replace(f, shape=(n,) * len(f.shape)) for name, f in self.info.fields.items()
        }
        self.info = dataclasses.replace(self.info, event_shape=(n, n), fields=fields, node_counts=counts)

    # ---- the DataSource interface ------------------------------------------------------------

    def state_dict(self) -> dict:
        return self.corpus.state_dict()

    def train_stream(self, seed: int) -> TrainStream:
        return TensorStream(self.dense["train"], self.cond.get("train"), seed)

    def split(self, name: str) -> tuple[GraphState, Tensor | None]:
        x, _ = super().split(name)
        return x, self.cond.get(name if name in self.dense else "test")

    def prepare_metrics(self, *, force: bool = False) -> list[Path]:
        return self.metrics.prepare()

    def sample_metrics(self, samples: GraphState, cond: Tensor | None = None) -> dict[str, float]:
        return self.metrics(samples, cond)

    def save_samples(self, samples: GraphState, stem: Path, cond: Tensor | None = None) -> list[Path]:
        stem = Path(stem)
        decoded = self.metrics.decode(samples)
        legends = self._legends(cond, len(decoded))
        return [
            write_jsonl(self.graphs_of(samples), stem.with_suffix(".jsonl")),
            write_smiles(decoded.full_smiles, stem.with_suffix(".smi")),
            self._grid(samples, stem.with_suffix(".png"), legends),
        ]

    def save_infilling(
        self, known: GraphState, known_mask: GraphState, samples: GraphState, stem: Path
    ) -> list[Path]:
        """Completed molecules (SMILES and grid), each legend saying how many atoms were given."""
        given = known_mask.nodes.sum(-1).tolist()
        decoded = self.metrics.decode(samples)
        legends = [f"{g} atoms given" for g in given]
        return [
            write_smiles(decoded.full_smiles, Path(stem).with_suffix(".smi")),
            self._grid(samples, Path(stem).with_suffix(".png"), legends),
        ]

    def _legends(self, cond: Tensor | None, n: int) -> list[str]:
        if cond is None or self.corpus.bins is None:
            return [""] * n
        bins, name = self.corpus.bins, self.corpus.config.condition
        return [f"{name} ~ {bins.targets[c]:.2f}" if c >= 0 else "" for c in cond.tolist()]

    def _grid(self, samples: GraphState, path: Path, legends: list[str]) -> Path:
        first = to_device(index(samples, slice(0, GRID_MOLECULES)), "cpu")
        mols, texts = [], []
        for b in range(first.num_graphs):
            k = int(first.node_mask[b].sum())
            mol, valid = drawable(
                first.nodes[b, :k].numpy(), first.edges[b, :k, :k].numpy(), self.corpus.atom_types
            )
            mols.append(mol)
            texts.append(legends[b] if valid else f"invalid {legends[b]}".strip())
        return write_grid(mols, path, texts)


def build_molecule_data(kind: str, config: MoleculeConfig, state: dict | None) -> MoleculeData:
    """The data set ``kind`` (``qm9``, ``moses`` or ``smiles``) from its config and saved state."""
    return MoleculeData(load_corpus(kind, config, state))
