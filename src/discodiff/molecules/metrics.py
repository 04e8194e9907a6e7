"""Sample metrics for generated molecules: validity, uniqueness, novelty, FCD.

Definitions (DiGress, Vignac et al. 2023, ``src/analysis/rdkit_functions.py``; MOSES):

- ``validity``: the fraction of generated graphs whose molecule passes RDKit sanitization (valences,
  kekulization). This is DiGress's figure: it then keeps the *largest fragment*, so a disconnected
  molecule counts as valid.
- ``validity_strict``: the fraction that sanitizes *and* is one connected molecule (nothing kept
  or dropped); GDSS-style tables report validity without any correction, closer to this.
- ``uniqueness``: distinct canonical SMILES (of the largest fragments) over the valid ones.
- ``novelty``: distinct valid SMILES not in the training set's canonical SMILES, over the distinct
  valid ones (DiGress and MOSES both divide by the unique count).
- ``fcd``: Frechet ChemNet Distance (Preuer et al. 2018) between the valid generated molecules and
  the reference (test) set, ``||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})`` over ChemNet's
  penultimate activations, computed by ``fcd-torch`` with its shipped weights (offline). Lower is
  better; GuacaMol's "FCD score" ``exp(-0.2 FCD)`` is a different number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from ..metrics.frechet import gaussian_frechet_distance
from .convert import AtomTypes, Chem, canonical_smiles, graph_to_mol, sanitize
from .deps import require

FCD_BATCH_SIZE = 512
"""SMILES per ChemNet batch (fcd-torch's default)."""


@dataclass
class Decoded:
    """Generated graphs turned into molecules.

    Attributes:
        valid: per sample, whether the whole molecule sanitizes.
        connected: per sample, whether it is one fragment (False for invalid ones).
        smiles: canonical SMILES of the largest fragment of each valid sample, else ``None``.
        full_smiles: canonical SMILES of the whole molecule (fragments joined by ``.``), else ``None``.
        mols: sanitized largest-fragment molecules (``None`` for invalid samples).
    """

    valid: list[bool]
    connected: list[bool]
    smiles: list[str | None]
    full_smiles: list[str | None]
    mols: list

    def __len__(self) -> int:
        return len(self.valid)

    @property
    def valid_smiles(self) -> list[str]:
        return [s for s in self.smiles if s is not None]


def decode_one(atoms: np.ndarray, bonds: np.ndarray, atom_types: AtomTypes) -> tuple:
    """``(valid, connected, largest-fragment SMILES, whole SMILES, largest-fragment mol)``."""
    if len(atoms) == 0:
        return False, False, None, None, None
    mol = sanitize(graph_to_mol(atoms, bonds, atom_types))
    if mol is None:
        return False, False, None, None, None
    frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=True)
    largest = max(frags, key=lambda m: m.GetNumAtoms())
    return True, len(frags) == 1, canonical_smiles(largest), canonical_smiles(mol), largest


def decode_graphs(nodes: Tensor, edges: Tensor, mask: Tensor, atom_types: AtomTypes) -> Decoded:
    """Molecules of a batch of graphs: node categories ``(N, n)``, edge categories ``(N, n, n)``,
    node mask ``(N, n)`` (nodes outside the mask, and their edges, are dropped)."""
    nodes, edges, mask = nodes.cpu().numpy(), edges.cpu().numpy(), mask.cpu().numpy().astype(bool)
    rows = []
    for i in range(len(nodes)):
        keep = np.nonzero(mask[i])[0]
        rows.append(decode_one(nodes[i, keep], edges[i][np.ix_(keep, keep)], atom_types))
    valid, connected, smiles, full, mols = (list(col) for col in zip(*rows)) if rows else ([],) * 5
    return Decoded(valid, connected, smiles, full, mols)


def basic_metrics(decoded: Decoded, train_smiles: set[str] | frozenset[str]) -> dict[str, float]:
    """``validity``, ``validity_strict``, ``uniqueness``, ``novelty`` as fractions (see the module
    docstring); ``nan`` where the denominator is empty."""
    n = len(decoded)
    valid = decoded.valid_smiles
    unique = set(valid)
    return {
        "validity": sum(decoded.valid) / n if n else math.nan,
        "validity_strict": sum(decoded.connected) / n if n else math.nan,
        "uniqueness": len(unique) / len(valid) if valid else math.nan,
        "novelty": len(unique - set(train_smiles)) / len(unique) if unique else math.nan,
    }


@dataclass
class FCDStats:
    """Mean ``(512,)`` and covariance ``(512, 512)`` of ChemNet activations of a molecule set."""

    mu: np.ndarray
    sigma: np.ndarray


class FCD:
    """Frechet ChemNet Distance through fcd-torch (ChemNet weights ship with it)."""

    def __init__(self, device: str = "cpu", batch_size: int = FCD_BATCH_SIZE) -> None:
        self._fcd = require("fcd_torch").FCD(device=device, n_jobs=1, batch_size=batch_size)

    def stats(self, smiles: Iterable[str]) -> FCDStats | None:
        """Activation statistics of ``smiles`` (``None`` for fewer than 2 molecules)."""
        smiles = list(smiles)
        if len(smiles) < 2:
            return None
        acts = self._fcd.get_predictions(smiles).astype(np.float64)
        return FCDStats(acts.mean(0), np.cov(acts.T))

    def distance(self, reference: FCDStats, generated: FCDStats | None) -> float:
        """FCD between two sets' statistics (``nan`` without generated statistics)."""
        if generated is None:
            return math.nan
        return gaussian_frechet_distance(reference.mu, reference.sigma, generated.mu, generated.sigma)
