"""A molecule data set loaded: its splits as graphs, atom types, property labels, and the
references its metrics compare against (all cached on disk, :mod:`.cache`).

Which molecules become graphs: every training molecule (MOSES: ``train_subset`` of them), and at
most ``eval_size`` of each evaluation split (a seeded subset; the likelihood reads these). The
references of the sample metrics are read from the files themselves: the test split's SMILES
(``reference_size`` of them, seeded) for FCD and MOSES's metrics (MOSES: also test_scaffolds, the
``_testsf`` metrics), and for novelty the canonical SMILES of the training graphs (MOSES: all
1,584,663 training SMILES as written in its file, as MOSES itself compares; they are RDKit
canonical SMILES: 19,998 of a random 20,000 are unchanged by RDKit 2026.9's canonicalization).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import datasets as ds
from .cache import Cache, cache_key
from .configs import MoleculeConfig, MosesConfig, SmilesConfig
from .convert import AtomTypes, canonical_smiles, parse_smiles
from .deps import DataError
from .files import SmilesRecords, read_smiles_file
from .properties import PropertyBins, fit_bins, property_values
from .store import MoleculeSet

EVAL_SUBSET_SEED = 0
"""Seed of the evaluation-split and reference subsets."""


@dataclass
class Corpus:
    """A loaded molecule data set (module docstring)."""

    kind: str
    config: MoleculeConfig
    records: dict[str, tuple[SmilesRecords, np.ndarray]]
    sets: dict[str, MoleculeSet]
    atom_types: AtomTypes
    max_atoms: int
    cache: Cache
    bins: PropertyBins | None = None
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (N,) property bins
    property_values: dict[str, np.ndarray] = field(default_factory=dict)  # split -> (N,) values

    def state_dict(self) -> dict:
        """What a restored run needs to encode the same way (and what was left out)."""
        return {
            "atom_types": list(self.atom_types.labels),
            "max_atoms": self.max_atoms,
            "bins": None if self.bins is None else self.bins.to_dict(),
            "sizes": {k: len(v) for k, v in self.sets.items()},
            "refused": {k: v.refused for k, v in self.sets.items()},
        }

    def novelty_reference(self) -> set[str]:
        """Canonical SMILES the generated molecules are novel against (module docstring)."""
        if self.kind == "moses":
            records, _ = self.records["train"]
            return set(records.smiles)
        return set(self.sets["train"].smiles)

    def reference_smiles(self, split: str) -> list[str]:
        """Canonical SMILES of (a seeded ``reference_size`` subset of) a split's file rows."""
        cached = self.cache.load_json(f"reference_{split}")
        if cached is not None:
            return cached
        records, rows = self.records[split]
        rows = rows[ds.subset_rows(len(rows), self.config.reference_size, EVAL_SUBSET_SEED)]
        mols = (parse_smiles(records.smiles[r]) for r in rows.tolist())
        out = [canonical_smiles(m) for m in mols if m is not None]
        self.cache.save_json(f"reference_{split}", out)
        return out


def split_records(kind: str, config: MoleculeConfig) -> dict[str, tuple[SmilesRecords, np.ndarray]]:
    """Each split's file and the rows of it that belong to the split."""
    if kind == "qm9":
        records = read_smiles_file(config.path)
        return {name: (records, rows) for name, rows in ds.qm9_split_rows(records).items()}
    if kind == "moses":
        directory = Path(config.path)
        if not directory.is_dir():
            raise DataError(f"data.path for MOSES must be the directory of its CSV files, got {directory}")
        out = {}
        for split, name in ds.MOSES_FILES.items():
            records = read_smiles_file(ds.moses_file(directory, name))
            out[split] = (records, np.arange(len(records)))
        return out
    assert isinstance(config, SmilesConfig)
    main = read_smiles_file(config.path)
    rows = ds.fraction_split_rows(len(main), config.fractions, config.split_seed)
    out = {"train": (main, rows["train"])}
    for split, path in (("val", config.val_path), ("test", config.test_path)):
        if path:
            records = read_smiles_file(path)
            out[split] = (records, np.arange(len(records)))
        else:
            out[split] = (main, rows[split])
    return out


def graph_rows(kind: str, config: MoleculeConfig, split: str, rows: np.ndarray) -> np.ndarray:
    """The rows of a split converted to graphs (module docstring)."""
    if split == "train":
        size = config.train_subset if isinstance(config, MosesConfig) else None
        seed = config.subset_seed if isinstance(config, MosesConfig) else 0
        return rows[ds.subset_rows(len(rows), size, seed)]
    return rows[ds.subset_rows(len(rows), config.eval_size, EVAL_SUBSET_SEED)]


def load_corpus(kind: str, config: MoleculeConfig, state: dict | None = None) -> Corpus:
    """Load (or read from the cache) a molecule data set; ``state`` is an earlier
    :meth:`Corpus.state_dict` whose atom types, size limit and bins are reused."""
    state = state or {}
    records = split_records(kind, config)
    atom_types = state.get("atom_types") or config.atom_types
    max_atoms = state.get("max_atoms") or config.max_atoms
    options = {k: v for k, v in vars(config).items() if k not in ("cache", "condition", "condition_bins")}
    files = sorted({str(r.path) for r, _ in records.values()})
    key = cache_key(
        {
            "kind": kind,
            "files": [ds.file_digest(Path(f)) for f in files],
            "options": {**options, "atom_types": atom_types, "max_atoms": max_atoms, "path": None},
        }
    )
    cache = Cache(key, enabled=config.cache)
    meta = cache.load_json("meta")
    if meta is None:
        sets, types, max_atoms = _convert(kind, config, records, atom_types, max_atoms)
        for name, mols in sets.items():
            cache.save_arrays(name, mols.arrays())
            cache.save_json(name, {"smiles": mols.smiles, "refused": mols.refused})
        cache.save_json("meta", {"atom_types": list(types.labels), "max_atoms": max_atoms})
    else:
        types, max_atoms = AtomTypes(tuple(meta["atom_types"])), meta["max_atoms"]
        sets = {}
        for name in ds.SPLITS:
            side = cache.load_json(name)
            sets[name] = MoleculeSet.from_arrays(cache.load_arrays(name), side["smiles"], side["refused"])
    corpus = Corpus(kind, config, records, sets, types, max_atoms, cache)
    if config.condition != "none":
        _label(corpus, state.get("bins"))
    return corpus


def _convert(kind, config, records, atom_types, max_atoms) -> tuple[dict[str, MoleculeSet], AtomTypes, int]:
    parsed, refused = {}, {}
    for split in ds.SPLITS:
        recs, rows = records[split]
        rows = graph_rows(kind, config, split, rows)
        parsed[split], refused[split] = ds.parse_rows(
            recs, rows, skip_invalid=config.skip_invalid, desc=f"{kind} {split}: reading SMILES"
        )
    if max_atoms is None:
        max_atoms = max(m.GetNumAtoms() for m in parsed["train"])
    types = None if atom_types is None else AtomTypes(tuple(atom_types))
    try:
        sets, types = ds.build_splits(
            parsed, refused, atom_types=types, max_atoms=max_atoms, charges=config.charges
        )
    except ValueError as err:
        raise DataError(f"data.atom_types: {err}") from None
    return sets, types, max_atoms


def _label(corpus: Corpus, bins_state: dict | None) -> None:
    """Property values of every split (cached), their bins and each molecule's label."""
    name = corpus.config.condition
    values = {}
    for split, mols in corpus.sets.items():
        cached = corpus.cache.load_arrays(f"{name}_{split}")
        if cached is None:
            parsed = [parse_smiles(s) for s in tqdm(mols.smiles, desc=f"{name} ({split})", disable=None)]
            cached = {"values": property_values(name, parsed)}
            corpus.cache.save_arrays(f"{name}_{split}", cached)
        values[split] = cached["values"]
    if bins_state is not None:
        corpus.bins = PropertyBins.from_dict(bins_state)
    else:
        try:
            corpus.bins = fit_bins(name, values["train"], corpus.config.condition_bins)
        except ValueError as err:
            raise DataError(f"data.condition_bins: {err}") from None
    corpus.labels = {split: corpus.bins.label(v) for split, v in values.items()}
    corpus.property_values = values
