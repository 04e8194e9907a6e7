"""MOSES's distribution metrics (Polykovskiy et al. 2020), implemented on RDKit.

The ``molsets`` package does not install here (its pinned ``pomegranate==0.12.0`` fails to build
under Cython 3), so these follow MOSES's definitions (``moses/metrics/metrics.py`` and
``utils.py``) on RDKit directly, tested against hand-computed values:

- ``filters``: the fraction of molecules that pass MOSES's filters: no ring of 8 or more atoms, no
  formal charge, only the atoms C, N, S, O, F, Cl, Br, H, and no match (on the molecule with explicit
  hydrogens) of MOSES's 22 medicinal-chemistry filters (:data:`MCF_SMARTS`) or of the 480 PAINS
  patterns (Baell & Holloway 2010; ``wehi_pains.csv``, which RDKit ships in ``RDDataDir/Pains``
  and MOSES copies).
- ``snn``: similarity to the nearest neighbour, the mean over generated molecules of the largest
  Tanimoto similarity to a reference molecule, on Morgan fingerprints (radius 2, 1,024 bits); two
  empty fingerprints have similarity 1.
- ``frag``: cosine similarity of the BRICS-fragment count vectors (``FragmentOnBRICSBonds``; the
  canonical SMILES of every fragment, counted over the set).
- ``scaf``: cosine similarity of the Bemis-Murcko scaffold count vectors; as in MOSES, scaffolds
  with fewer than 2 rings are left out.
- ``int_div``: internal diversity, ``1 - mean_{x, y} T(x, y)`` over all ordered pairs (with x = y).

Licences: MOSES is MIT (the MCF patterns below are MOSES's ``mcf.csv``); RDKit and its PAINS file
are BSD-3-Clause.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from rdkit import RDConfig
from rdkit.Chem import rdFingerprintGenerator
from rdkit.Chem.Scaffolds import MurckoScaffold

from .convert import Chem

MCF_SMARTS = (
    "[#6]=&!@[#6]-[#6]#[#7]",
    "[#6]=&!@[#6]-[#16](=[#8])=[#8]",
    "[#6]=&!@[#6&!H0]-&!@[#6](=[#8])-&!@[#7]",
    "[H]C([H])([#6])[F,Cl,Br,I]",
    "[#6]1-[#8]-[#6]-1",
    "[#6]-[#7]=[#6]=[#8]",
    "[#6&!H0]=[#8]",
    "[#6](=&!@[#7&!H0])-&!@[#6,#7,#8,#16]",
    "[#6]1-[#7]-[#6]-1",
    "[#6]~&!@[#7]~&!@[#7]~&!@[#6]",
    "[#7]=&!@[#7]",
    "[H][#6]-1=[#6]([H])-[#6]=[#6](-*)-[#8]-1",
    "[H][#6]-1=[#6]([H])-[#6]=[#6](-*)-[#16]-1",
    "[#17,#35,#53]-c(:*):[!#1!#6]:*",
    "[H][#7]([H])-[#6]-1=[#6]-[#6]=[#6]-[#6]=[#6]-1",
    "[#16]~[#16]",
    "[#7]~&!@[#7]~&!@[#7]",
    "[#7]-&!@[#6&!H0&!H1]-&!@[#7]",
    "[#6&!H0](-&!@[#8])-&!@[#8]",
    "[#35].[#35].[#35]",
    "[#17].[#17].[#17].[#17]",
    "[#9].[#9].[#9].[#9].[#9].[#9].[#9]",
)
"""MOSES's medicinal-chemistry filters MCF1-MCF22 (``moses/metrics/mcf.csv``, MIT)."""

FILTER_ATOMS = frozenset({"C", "N", "S", "O", "F", "Cl", "Br", "H"})
"""Atoms a molecule may contain to pass MOSES's filters."""

LARGEST_RING = 8
"""A ring of this many atoms or more fails the filters."""

MORGAN_RADIUS, MORGAN_BITS = 2, 1024
"""MOSES's fingerprint for SNN and internal diversity."""

SCAFFOLD_MIN_RINGS = 2
"""Scaffolds with fewer rings are left out of ``scaf`` (MOSES's ``compute_scaffolds`` default)."""

TANIMOTO_CHUNK = 4096
"""Reference fingerprints per matrix product in :func:`snn` (bounds memory)."""


@lru_cache(maxsize=1)
def filter_patterns() -> tuple:
    """The compiled MCF and PAINS patterns."""
    pains = Path(RDConfig.RDDataDir) / "Pains" / "wehi_pains.csv"
    with pains.open() as f:
        smarts = [row[0] for row in csv.reader(f) if row]
    patterns = [Chem.MolFromSmarts(s) for s in (*MCF_SMARTS, *smarts)]
    if any(p is None for p in patterns):
        raise RuntimeError("a MOSES filter pattern failed to compile")
    return tuple(patterns)


def passes_filters(mol: Chem.Mol) -> bool:
    """Whether a sanitized molecule passes MOSES's filters (see the module docstring)."""
    ring_info = mol.GetRingInfo()
    if any(len(ring) >= LARGEST_RING for ring in ring_info.AtomRings()):
        return False
    atoms = mol.GetAtoms()
    if any(a.GetFormalCharge() != 0 for a in atoms) or any(a.GetSymbol() not in FILTER_ATOMS for a in atoms):
        return False
    with_h = Chem.AddHs(mol)
    if any(with_h.HasSubstructMatch(p) for p in filter_patterns()):
        return False
    smiles = Chem.MolToSmiles(mol, isomericSmiles=False)
    return bool(smiles) and Chem.MolFromSmiles(smiles) is not None


def fraction_passing_filters(mols: Sequence[Chem.Mol]) -> float:
    return sum(map(passes_filters, mols)) / len(mols) if mols else math.nan


def morgan_fingerprints(mols: Iterable[Chem.Mol]) -> np.ndarray:
    """``(N, 1024)`` uint8 Morgan bit vectors (radius 2)."""
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=MORGAN_RADIUS, fpSize=MORGAN_BITS)
    fps = [gen.GetFingerprintAsNumPy(m).astype(np.uint8) for m in mols]
    return np.stack(fps) if fps else np.zeros((0, MORGAN_BITS), dtype=np.uint8)


def tanimoto_max_and_mean(gen: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per generated fingerprint, the largest and the mean Tanimoto similarity to ``ref``."""
    g = torch.from_numpy(gen).float()
    g_bits = g.sum(1)
    best = torch.zeros(len(gen), dtype=torch.float64)
    total = torch.zeros(len(gen), dtype=torch.float64)
    for i in range(0, len(ref), TANIMOTO_CHUNK):
        r = torch.from_numpy(ref[i : i + TANIMOTO_CHUNK]).float()
        both = g @ r.T
        union = g_bits[:, None] + r.sum(1)[None, :] - both
        sim = torch.where(union > 0, both / union.clamp(min=1), torch.ones_like(both)).double()
        best = torch.maximum(best, sim.max(1).values)
        total += sim.sum(1)
    return best.numpy(), (total / max(len(ref), 1)).numpy()


def snn(gen_fps: np.ndarray, ref_fps: np.ndarray) -> float:
    """Mean over generated molecules of the nearest reference neighbour's Tanimoto similarity."""
    if len(gen_fps) == 0 or len(ref_fps) == 0:
        return math.nan
    return float(tanimoto_max_and_mean(gen_fps, ref_fps)[0].mean())


def internal_diversity(fps: np.ndarray) -> float:
    """``1 - mean`` Tanimoto similarity over all ordered pairs of the set (MOSES's IntDiv)."""
    if len(fps) == 0:
        return math.nan
    return float(1 - tanimoto_max_and_mean(fps, fps)[1].mean())


def fragment_counts(mols: Iterable[Chem.Mol]) -> Counter:
    """BRICS fragments (canonical SMILES with the dummy-atom labels) counted over the set."""
    counts: Counter = Counter()
    for m in mols:
        counts.update(Chem.MolToSmiles(Chem.FragmentOnBRICSBonds(m)).split("."))
    return counts


def scaffold_counts(mols: Iterable[Chem.Mol]) -> Counter:
    """Bemis-Murcko scaffolds with at least :data:`SCAFFOLD_MIN_RINGS` rings, counted."""
    counts: Counter = Counter()
    for m in mols:
        scaffold = MurckoScaffold.GetScaffoldForMol(m)
        smiles = Chem.MolToSmiles(scaffold)
        if smiles and scaffold.GetRingInfo().NumRings() >= SCAFFOLD_MIN_RINGS:
            counts[smiles] += 1
    return counts


def cosine_similarity(a: Counter | dict, b: Counter | dict) -> float:
    """Cosine similarity of two count vectors indexed by name (absent names count 0)."""
    if not a or not b:
        return math.nan
    dot = sum(v * b.get(k, 0) for k, v in a.items())
    norm = math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    return dot / norm
