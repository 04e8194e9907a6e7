"""QM9, MOSES and user SMILES files as train / val / test :class:`MoleculeSet` s.

- **QM9** (Ramakrishnan et al. 2014), DiGress's split: the 133,885 molecules of the original set,
  in file order, shuffled by ``pandas.DataFrame.sample(frac=1, random_state=42)``, then cut into
  100,000 train / 20,497 val / 13,388 test; the 3,054 uncharacterized molecules are dropped after
  the split. pandas' ``sample`` without weights draws ``RandomState(42).choice(n, n,
  replace=False)``, which is ``RandomState(42).permutation(n)``: :func:`qm9_permutation` computes
  exactly that without pandas (checked equal to pandas 3.1.1's; its SHA-256 is
  :data:`QM9_PERMUTATION_SHA256`). The file's ``Index`` column (QM9's 1-based ``gdb`` number) says
  where each molecule was in the original order; with the shared file (uncharacterized molecules
  already removed) the split is 97,734 / 20,042 / 13,055.
- **MOSES** (Polykovskiy et al. 2020): its own ``train.csv(.gz)``, ``test.csv(.gz)`` and
  ``test_scaffolds.csv(.gz)``. Our ``val`` split is ``test_scaffolds`` and ``test`` is ``test``
  (DiGress does the same, naming them by role). ``train_subset`` converts only a seeded random
  subset of the 1,584,663 training molecules (CPU runs); novelty is still measured against all of
  them.
- **User files**: one SMILES file for training plus optional val / test files, or one file split
  by seeded fractions.

SMILES RDKit cannot read raise :class:`DataError` naming their line numbers, or, with
``skip_invalid``, are skipped and counted (reason ``unparsable``). Molecules that cannot be graphs
(:data:`~discodiff.molecules.convert.REASONS`) are left out and counted per split.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .convert import AtomTypes, Charges, canonical_smiles, discover_atom_types, mol_to_graph, parse_smiles
from .deps import DataError
from .files import SmilesRecords, read_smiles_file
from .store import MoleculeSet

QM9_TOTAL = 133_885
"""Molecules in the original QM9 (before the uncharacterized ones are dropped)."""

QM9_SPLIT_SEED = 42
"""DiGress's ``random_state`` for the shuffle."""

QM9_SPLIT_SIZES = (100_000, 20_497, 13_388)
"""DiGress's train / val / test sizes over the original 133,885 (test = int(0.1 * n))."""

QM9_PERMUTATION_SHA256 = "61b354ce8f8c5d8acd81454aa4f7f1bed2b8c5a0aa79ce82ec03e104af4a8d91"
"""SHA-256 of the int64 bytes of ``pandas.DataFrame(range(133885)).sample(frac=1,
random_state=42).index`` (pandas 3.1.1, NumPy 2.4)."""

SPLITS = ("train", "val", "test")

INVALID_LINES_SHOWN = 10
"""How many line numbers an invalid-SMILES error lists."""


def qm9_permutation() -> np.ndarray:
    """DiGress's shuffle of QM9's 133,885 positions (see the module docstring)."""
    return np.random.RandomState(QM9_SPLIT_SEED).permutation(QM9_TOTAL)


def qm9_split_rows(records: SmilesRecords) -> dict[str, np.ndarray]:
    """Rows of a QM9 file in each split, from its 1-based ``Index`` column."""
    if records.ids is None:
        raise DataError(
            f"{records.path}: a QM9 file needs an index column (QM9's 1-based molecule number, as "
            "'Index,SMILES' or DeepChem's 'mol_id' gdb_N) before the SMILES column; DiGress's split "
            "is defined on it"
        )
    try:
        ids = np.array([int(i.removeprefix("gdb_")) for i in records.ids], dtype=np.int64)
    except ValueError:
        raise DataError(f"{records.path}: the index column must hold QM9 numbers (17 or gdb_17)") from None
    if ids.min() < 1 or ids.max() > QM9_TOTAL or len(np.unique(ids)) != len(ids):
        raise DataError(f"{records.path}: QM9 indices must be distinct numbers in 1..{QM9_TOTAL}")
    split_of = np.empty(QM9_TOTAL + 1, dtype=np.int64)
    bounds = np.cumsum((0, *QM9_SPLIT_SIZES))
    perm = qm9_permutation()
    for s in range(len(SPLITS)):
        split_of[perm[bounds[s] : bounds[s + 1]] + 1] = s
    where = split_of[ids]
    return {name: np.nonzero(where == s)[0] for s, name in enumerate(SPLITS)}


def fraction_split_rows(n: int, fractions: tuple[float, float], seed: int) -> dict[str, np.ndarray]:
    """A seeded random split of ``n`` rows into train / val / test with the given val and test
    fractions (each split keeps file order)."""
    perm = np.random.RandomState(seed).permutation(n)
    n_val, n_test = (round(f * n) for f in fractions)
    parts = {"val": perm[:n_val], "test": perm[n_val : n_val + n_test], "train": perm[n_val + n_test :]}
    return {k: np.sort(v) for k, v in parts.items()}


def parse_rows(
    records: SmilesRecords, rows: Sequence[int], *, skip_invalid: bool, desc: str | None = None
) -> tuple[list, Counter]:
    """RDKit molecules of ``rows``; unreadable SMILES raise (naming lines) or are counted.
    ``desc`` labels a progress bar (shown on a terminal)."""
    mols, bad = [], []
    for r in tqdm(np.asarray(rows).tolist(), desc=desc, disable=None if desc else True, leave=False):
        mol = parse_smiles(records.smiles[r])
        if mol is None:
            bad.append(records.lines[r])
        else:
            mols.append(mol)
    if bad and not skip_invalid:
        shown = ", ".join(map(str, bad[:INVALID_LINES_SHOWN])) + (
            ", ..." if len(bad) > INVALID_LINES_SHOWN else ""
        )
        raise DataError(
            f"{records.path}: {len(bad)} SMILES that RDKit cannot read, at line(s) {shown}; fix them "
            "or set data.skip_invalid: true to skip them"
        )
    return mols, Counter({"unparsable": len(bad)} if bad else {})


def convert(
    mols: Sequence, atom_types: AtomTypes, *, max_atoms: int, charges: Charges, refused: Counter
) -> MoleculeSet:
    """Graphs of ``mols``; those that cannot be graphs are counted in ``refused`` by reason."""
    graphs, smiles = [], []
    for mol in tqdm(mols, desc="converting to graphs", disable=None, leave=False):
        g = mol_to_graph(mol, atom_types, max_atoms=max_atoms, charges=charges)
        if isinstance(g, str):
            refused[g] += 1
            continue
        graphs.append(g)
        smiles.append(canonical_smiles(mol))
    return MoleculeSet.from_graphs(graphs, smiles, dict(refused))


def build_splits(
    parsed: dict[str, list],
    refused: dict[str, Counter],
    *,
    atom_types: AtomTypes | None,
    max_atoms: int,
    charges: Charges,
) -> tuple[dict[str, MoleculeSet], AtomTypes]:
    """Convert parsed splits; atom types default to those of the training split."""
    if atom_types is None:
        atom_types = discover_atom_types(parsed["train"], charges=charges)
    sets = {
        name: convert(mols, atom_types, max_atoms=max_atoms, charges=charges, refused=refused[name])
        for name, mols in parsed.items()
    }
    if len(sets["train"]) == 0:
        raise DataError(f"no training molecule could be converted (refused: {dict(refused['train'])})")
    return sets, atom_types


def moses_file(directory: Path, name: str) -> Path:
    """``directory/name.csv.gz`` or ``directory/name.csv``."""
    for candidate in (directory / f"{name}.csv.gz", directory / f"{name}.csv"):
        if candidate.is_file():
            return candidate
    raise DataError(f"MOSES file {name}.csv(.gz) not found in {directory}")


MOSES_FILES = {"train": "train", "val": "test_scaffolds", "test": "test"}
"""Our split -> MOSES file (DiGress also validates on test_scaffolds)."""


def subset_rows(n: int, size: int | None, seed: int) -> np.ndarray:
    """All rows, or a seeded random ``size`` of them in file order."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.RandomState(seed).choice(n, size=size, replace=False))


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (keys the conversion cache)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


__all__ = [
    "MOSES_FILES",
    "QM9_SPLIT_SIZES",
    "build_splits",
    "fraction_split_rows",
    "moses_file",
    "parse_rows",
    "qm9_permutation",
    "qm9_split_rows",
    "read_smiles_file",
    "subset_rows",
]
