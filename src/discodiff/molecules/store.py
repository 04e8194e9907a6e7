"""A compact set of molecular graphs, densified batch by batch.

MOSES has 1.58 M training molecules of up to 27 heavy atoms: as dense ``(N, 27, 27)`` long edge
tensors that would be 9 GB. :class:`MoleculeSet` keeps atoms and bonds as flat int8 arrays with
offsets (about 100 bytes a molecule) and builds dense padded tensors only for the rows asked for.
Its arrays go to safetensors (never pickle) and its SMILES to JSON (:mod:`.cache`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from .convert import MolGraph


@dataclass
class MoleculeSet:
    """Molecules as graphs, compactly.

    Attributes:
        smiles: canonical SMILES of each molecule.
        num_atoms: ``(N,)`` int64 heavy-atom counts.
        atoms: ``(sum n,)`` int8 node categories, molecule after molecule.
        edges: ``(E, 3)`` int8 ``[u, v, bond category]`` with ``u < v``, molecule after molecule.
        edge_counts: ``(N,)`` int64 bonds per molecule.
        refused: reason -> number of molecules of the source left out.
    """

    smiles: list[str]
    num_atoms: np.ndarray
    atoms: np.ndarray
    edges: np.ndarray
    edge_counts: np.ndarray
    refused: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.atom_offsets = np.concatenate([[0], np.cumsum(self.num_atoms)]).astype(np.int64)
        self.edge_offsets = np.concatenate([[0], np.cumsum(self.edge_counts)]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.smiles)

    @classmethod
    def from_graphs(
        cls, graphs: Sequence[MolGraph], smiles: list[str], refused: dict[str, int] | None = None
    ) -> MoleculeSet:
        num_atoms = np.array([g.num_atoms for g in graphs], dtype=np.int64)
        atoms = np.concatenate([g.atoms for g in graphs]) if graphs else np.zeros(0)
        edge_lists = []
        for g in graphs:
            us, vs = np.nonzero(np.triu(g.bonds, k=1))
            edge_lists.append(np.stack([us, vs, g.bonds[us, vs]], axis=1))
        edges = np.concatenate(edge_lists) if edge_lists else np.zeros((0, 3))
        counts = np.array([len(e) for e in edge_lists], dtype=np.int64)
        return cls(
            smiles, num_atoms, atoms.astype(np.int8), edges.astype(np.int8), counts, dict(refused or {})
        )

    def subset(self, idx: np.ndarray) -> MoleculeSet:
        """The molecules at ``idx`` (in that order)."""
        idx = np.asarray(idx, dtype=np.int64)
        atom_rows = _segments(self.atom_offsets, idx)
        edge_rows = _segments(self.edge_offsets, idx)
        return MoleculeSet(
            [self.smiles[i] for i in idx.tolist()],
            self.num_atoms[idx],
            self.atoms[atom_rows],
            self.edges[edge_rows],
            self.edge_counts[idx],
            dict(self.refused),
        )

    def dense(self, idx: np.ndarray | Tensor, max_atoms: int) -> tuple[Tensor, Tensor, Tensor]:
        """Padded tensors of the molecules at ``idx``: node categories ``(B, max_atoms)`` long,
        edge categories ``(B, max_atoms, max_atoms)`` long (symmetric, 0 = no bond and on the
        diagonal and padding), node mask ``(B, max_atoms)`` bool. Padded nodes have category 0."""
        idx = np.asarray(idx, dtype=np.int64)
        b = len(idx)
        counts = self.num_atoms[idx]
        if b and counts.max() > max_atoms:
            raise DataError(f"a molecule has {int(counts.max())} atoms, more than max_atoms={max_atoms}")
        nodes = np.zeros((b, max_atoms), dtype=np.int64)
        row = np.repeat(np.arange(b), counts)
        col = _ranks(counts)
        nodes[row, col] = self.atoms[_segments(self.atom_offsets, idx)]
        mask = np.zeros((b, max_atoms), dtype=bool)
        mask[row, col] = True
        edges = np.zeros((b, max_atoms, max_atoms), dtype=np.int64)
        e = self.edges[_segments(self.edge_offsets, idx)].astype(np.int64)
        erow = np.repeat(np.arange(b), self.edge_counts[idx])
        edges[erow, e[:, 0], e[:, 1]] = e[:, 2]
        edges[erow, e[:, 1], e[:, 0]] = e[:, 2]
        return torch.from_numpy(nodes), torch.from_numpy(edges), torch.from_numpy(mask)

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays (for safetensors); the SMILES and refusal counts go to JSON."""
        return {
            "num_atoms": self.num_atoms,
            "atoms": self.atoms,
            "edges": self.edges,
            "edge_counts": self.edge_counts,
        }

    @classmethod
    def from_arrays(
        cls, arrays: dict[str, np.ndarray], smiles: list[str], refused: dict[str, int]
    ) -> MoleculeSet:
        """Inverse of :meth:`arrays`."""
        return cls(
            smiles, arrays["num_atoms"], arrays["atoms"], arrays["edges"], arrays["edge_counts"], refused
        )


def _ranks(counts: np.ndarray) -> np.ndarray:
    """``[0..c0-1, 0..c1-1, ...]`` for segment lengths ``counts``."""
    total = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(total) - starts


def _segments(offsets: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Flat indices of the segments ``offsets[i]:offsets[i + 1]`` for ``i`` in ``idx``."""
    counts = offsets[idx + 1] - offsets[idx]
    return np.repeat(offsets[idx], counts) + _ranks(counts)
