"""SMILES <-> kekulized heavy-atom graphs (RDKit).

A molecule becomes a graph with one node per heavy atom and one edge per bond:

- node category: the atom's type, an element with its formal charge, written as a SMILES atom
  (``"C"``, ``"N"``, ``"[N+]"``, ``"[O-]"``); the list of types is an :class:`AtomTypes`;
- edge category: :data:`BOND_TYPES` = no bond, single, double, triple. Aromatic rings are
  kekulized first (``Chem.Kekulize(..., clearAromaticFlags=True)``), as DiGress stores QM9's bonds
  as written in its SDF (Kekule form).

Hydrogens are not nodes: going back, RDKit gives each atom the hydrogens its default valence
implies for its bonds and charge (``[NH3+]`` is ``[N+]`` with one bond). A molecule whose
hydrogen counts differ from that (a radical, a hypervalent atom written with explicit H) cannot
come back unchanged and is refused. Stereochemistry is not part of the graph. Every refusal names
its reason (:data:`REASONS`), so loaders can count them.

Graph -> molecule -> canonical SMILES: :func:`graph_to_mol` builds the molecule unsanitized;
:func:`sanitize` applies RDKit's sanitization (valence checks, aromaticity) and returns ``None``
where it fails; :func:`canonical_smiles` writes RDKit's canonical SMILES.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from rdkit import Chem, RDLogger

from ..errors import ConfigError, DataError

RDLogger.DisableLog("rdApp.*")  # invalid generated molecules are expected and counted, not logged

BOND_TYPES = ("none", "single", "double", "triple")
"""Edge categories: index 0 is "no bond"; 1-3 are the kekulized bond orders."""

_RDKIT_BONDS = (None, Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE)
_BOND_INDEX = {b: i for i, b in enumerate(_RDKIT_BONDS) if b is not None}

REASONS = {
    "unparsable": "RDKit cannot parse or sanitize the SMILES",
    "empty": "the molecule has no heavy atom",
    "too_many_atoms": "more heavy atoms than the data set's maximum",
    "atom_type": "an atom type outside the node categories",
    "formal_charge": "a charged atom, and charges are refused (charges: refuse)",
    "isotope": "an isotope label (not part of the graph)",
    "kekulize": "RDKit finds no Kekule structure",
    "hydrogens": "an atom's hydrogen count differs from the one its valence implies (radicals, "
    "unusual valences), so the graph cannot give the molecule back",
}
"""Why a molecule cannot be a graph: reason -> explanation."""

Charges = Literal["types", "refuse"]
"""``types``: a charged atom is its own node category (``[N+]``); ``refuse``: molecules with a
charged atom are refused (reason ``formal_charge``), as DiGress's QM9 has no charges."""

_LABEL = re.compile(r"^\[?([A-Z][a-z]?)([+-]\d*)?\]?$")


def atom_label(symbol: str, charge: int) -> str:
    """The SMILES atom for an element with a formal charge: ``C``, ``[N+]``, ``[O-]``, ``[N+2]``."""
    if charge == 0:
        return symbol
    sign = "+" if charge > 0 else "-"
    return f"[{symbol}{sign}{abs(charge) if abs(charge) > 1 else ''}]"


def parse_label(label: str) -> tuple[str, int]:
    """Inverse of :func:`atom_label`: ``"[N+]" -> ("N", 1)``."""
    m = _LABEL.match(label.strip())
    if m is None or not _is_element(m.group(1)):
        raise ConfigError(f"{label!r} is not an atom type (examples: C, N, Cl, [N+], [O-])")
    sign = m.group(2)
    if sign is None:
        return m.group(1), 0
    magnitude = int(sign[1:]) if len(sign) > 1 else 1
    return m.group(1), magnitude if sign[0] == "+" else -magnitude


def _is_element(symbol: str) -> bool:
    try:
        return Chem.GetPeriodicTable().GetAtomicNumber(symbol) > 0
    except RuntimeError:  # RDKit raises for an unknown symbol
        return False


@dataclass(frozen=True)
class AtomTypes:
    """The node categories: atom labels, index = category id."""

    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.labels:
            raise ConfigError("at least one atom type is needed")
        keys = [parse_label(label) for label in self.labels]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"atom types repeat: {list(self.labels)}")
        object.__setattr__(self, "_index", {k: i for i, k in enumerate(keys)})
        object.__setattr__(self, "_keys", tuple(keys))

    def __len__(self) -> int:
        return len(self.labels)

    def index(self, symbol: str, charge: int) -> int | None:
        return self._index.get((symbol, charge))

    def element(self, i: int) -> tuple[str, int]:
        """(symbol, formal charge) of category ``i``."""
        return self._keys[i]


@dataclass
class MolGraph:
    """One molecule as a graph.

    Attributes:
        atoms: ``(n,)`` int64 node categories (indices into :class:`AtomTypes`).
        bonds: ``(n, n)`` int64 edge categories (indices into :data:`BOND_TYPES`), symmetric, 0 on
            the diagonal.
    """

    atoms: np.ndarray
    bonds: np.ndarray

    @property
    def num_atoms(self) -> int:
        return len(self.atoms)


def parse_smiles(smiles: str) -> Chem.Mol | None:
    """A sanitized RDKit molecule, or ``None`` where RDKit cannot read the SMILES."""
    if not smiles or not smiles.strip():
        return None
    return Chem.MolFromSmiles(smiles.strip())


def mol_to_graph(
    mol: Chem.Mol, atom_types: AtomTypes, *, max_atoms: int | None = None, charges: Charges = "types"
) -> MolGraph | str:
    """The kekulized heavy-atom graph of a sanitized molecule, or a reason from :data:`REASONS`."""
    mol = Chem.RemoveHs(mol, sanitize=False)
    atom_list = list(mol.GetAtoms())
    n = len(atom_list)
    if n == 0:
        return "empty"
    if max_atoms is not None and n > max_atoms:
        return "too_many_atoms"
    atoms = np.empty(n, dtype=np.int64)
    for a in atom_list:
        if charges == "refuse" and a.GetFormalCharge() != 0:
            return "formal_charge"
        if a.GetIsotope():
            return "isotope"
        i = atom_types.index(a.GetSymbol(), a.GetFormalCharge())
        if i is None:
            return "atom_type"
        atoms[a.GetIdx()] = i
    hydrogens = [(a.GetTotalNumHs(), a.GetNumRadicalElectrons()) for a in atom_list]
    mol = Chem.Mol(mol)
    try:
        Chem.Kekulize(mol, clearAromaticFlags=True)
    except Chem.KekulizeException:
        return "kekulize"
    bonds = np.zeros((n, n), dtype=np.int64)
    for b in mol.GetBonds():
        kind = _BOND_INDEX.get(b.GetBondType())
        if kind is None:
            return "kekulize"
        u, v = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        bonds[u, v] = bonds[v, u] = kind
    back = sanitize(graph_to_mol(atoms, bonds, atom_types))
    if back is None or hydrogens != [
        (a.GetTotalNumHs(), a.GetNumRadicalElectrons()) for a in back.GetAtoms()
    ]:
        return "hydrogens"
    return MolGraph(atoms, bonds)


def smiles_to_graph(
    smiles: str, atom_types: AtomTypes, *, max_atoms: int | None = None, charges: Charges = "types"
) -> MolGraph | str:
    """:func:`mol_to_graph` of a SMILES string (reason ``unparsable`` where RDKit cannot read it)."""
    mol = parse_smiles(smiles)
    if mol is None:
        return "unparsable"
    return mol_to_graph(mol, atom_types, max_atoms=max_atoms, charges=charges)


def graph_to_mol(atoms: np.ndarray, bonds: np.ndarray, atom_types: AtomTypes) -> Chem.RWMol:
    """The unsanitized molecule of a graph: ``atoms`` ``(n,)`` and ``bonds`` ``(n, n)`` categories
    (only the upper triangle is read). Every atom gets the hydrogens its valence implies."""
    mol = Chem.RWMol()
    for i in np.asarray(atoms).tolist():
        symbol, charge = atom_types.element(int(i))
        atom = Chem.Atom(symbol)
        atom.SetFormalCharge(charge)
        mol.AddAtom(atom)
    bonds = np.asarray(bonds)
    us, vs = np.nonzero(bonds)
    for u, v, kind in zip(us.tolist(), vs.tolist(), bonds[us, vs].tolist()):
        if u < v:
            mol.AddBond(u, v, _RDKIT_BONDS[kind])
    return mol


def sanitize(mol: Chem.Mol) -> Chem.Mol | None:
    """A sanitized copy (valences checked, aromaticity perceived), or ``None`` where RDKit refuses."""
    mol = Chem.Mol(mol)
    try:
        Chem.SanitizeMol(mol)
    except (ValueError, RuntimeError):  # valence and kekulization errors derive from ValueError
        return None
    return mol


def canonical_smiles(mol: Chem.Mol) -> str:
    """RDKit's canonical SMILES of a sanitized molecule."""
    return Chem.MolToSmiles(mol)


def discover_atom_types(mols: Iterable[Chem.Mol], *, charges: Charges = "types") -> AtomTypes:
    """The atom types occurring in ``mols``, most frequent first (ties by label); with
    ``charges="refuse"``, charged atoms are left out (their molecules will be refused)."""
    counts: dict[str, int] = {}
    for mol in mols:
        for a in mol.GetAtoms():
            if charges == "refuse" and a.GetFormalCharge() != 0:
                continue
            label = atom_label(a.GetSymbol(), a.GetFormalCharge())
            counts[label] = counts.get(label, 0) + 1
    if not counts:
        raise DataError("no atoms to build the atom types from")
    return AtomTypes(tuple(sorted(counts, key=lambda k: (-counts[k], k))))
