"""Pictures and files of generated molecules: a PNG grid (RDKit Draw) and a SMILES file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rdkit.Chem import Draw
from rdkit.Chem.Draw import rdMolDraw2D

from .convert import AtomTypes, Chem, graph_to_mol, sanitize

GRID_COLUMNS = 8
GRID_CELL = 180
"""Pixels per molecule in the grid."""

INVALID_SMILES = "INVALID"
"""What the SMILES file holds for a sample that fails sanitization."""


def drawable(atoms: np.ndarray, bonds: np.ndarray, atom_types: AtomTypes) -> tuple[Chem.Mol | None, bool]:
    """The whole molecule of a graph (every fragment) and whether it is valid. An invalid one is
    drawn as generated, with its valences unchecked, so the picture shows what went wrong."""
    raw = graph_to_mol(atoms, bonds, atom_types)
    mol = sanitize(raw)
    if mol is not None:
        return mol, True
    raw = raw.GetMol()
    raw.UpdatePropertyCache(strict=False)
    return raw, False


def write_grid(
    mols: Sequence[Chem.Mol | None], path: Path, legends: Sequence[str], *, columns: int = GRID_COLUMNS
) -> Path:
    """A PNG grid of molecules with a legend under each. A molecule RDKit cannot draw (an invalid
    graph whose 2D layout puts two bonded atoms on one point) is drawn as its atoms alone, and its
    legend says so."""
    mols, legends = list(mols), list(legends)
    for i, mol in enumerate(mols):
        if mol is not None and not _can_draw(mol):
            atoms = Chem.RWMol(mol)
            for bond in list(atoms.GetBonds()):
                atoms.RemoveBond(bond.GetBeginAtomIdx(), bond.GetEndAtomIdx())
            atoms = atoms.GetMol()
            mols[i] = atoms if _can_draw(atoms) else None
            legends[i] = f"{legends[i]} (bonds not drawn)".strip()
    img = Draw.MolsToGridImage(mols, molsPerRow=columns, subImgSize=(GRID_CELL, GRID_CELL), legends=legends)
    img.save(str(path))
    return path


def _can_draw(mol: Chem.Mol) -> bool:
    try:
        rdMolDraw2D.MolDraw2DCairo(GRID_CELL, GRID_CELL).DrawMolecule(Chem.Mol(mol))
    except RuntimeError:  # "Cannot normalize a zero length vector"
        return False
    return True


def write_smiles(smiles: Sequence[str | None], path: Path) -> Path:
    """One SMILES a line (whole molecules, fragments joined by ``.``; invalid ones as ``INVALID``)."""
    path.write_text("".join(f"{s if s is not None else INVALID_SMILES}\n" for s in smiles))
    return path
