"""Loaders: DiGress's QM9 split, SMILES files with invalid lines, the compact molecule store."""

import hashlib
import importlib.util

import numpy as np
import pytest

from discodiff.molecules.cache import Cache
from discodiff.molecules.convert import AtomTypes, smiles_to_graph
from discodiff.molecules.datasets import (
    QM9_PERMUTATION_SHA256,
    QM9_SPLIT_SIZES,
    QM9_TOTAL,
    fraction_split_rows,
    parse_rows,
    qm9_permutation,
    qm9_split_rows,
    subset_rows,
)
from discodiff.molecules.deps import DataError
from discodiff.molecules.files import read_smiles_file
from discodiff.molecules.store import MoleculeSet
from molecules.shared import QM9_FILE, needs_qm9

TYPES = AtomTypes(("C", "N", "O", "F", "[N+]", "[O-]"))


def test_qm9_permutation_is_the_recorded_pandas_shuffle():
    perm = qm9_permutation()
    assert sorted(perm.tolist()) == list(range(QM9_TOTAL))
    assert hashlib.sha256(perm.astype(np.int64).tobytes()).hexdigest() == QM9_PERMUTATION_SHA256
    assert perm[:4].tolist() == [3115, 117879, 23433, 61955]


@pytest.mark.skipif(importlib.util.find_spec("pandas") is None, reason="pandas not installed")
def test_qm9_permutation_equals_pandas_sample():
    import pandas as pd

    frame = pd.DataFrame({"i": np.arange(QM9_TOTAL)})
    assert (frame.sample(frac=1, random_state=42).index.to_numpy() == qm9_permutation()).all()


@needs_qm9
def test_qm9_split_of_the_shared_file():
    rows = qm9_split_rows(read_smiles_file(QM9_FILE))
    sizes = {k: len(v) for k, v in rows.items()}
    assert sizes == {"train": 97_734, "val": 20_042, "test": 13_055}  # 3,054 uncharacterized dropped
    assert sum(QM9_SPLIT_SIZES) == QM9_TOTAL
    everything = np.concatenate(list(rows.values()))
    assert len(np.unique(everything)) == len(everything) == 130_831


def test_qm9_file_without_an_index_is_refused(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text("SMILES\nC\nCC\n")
    with pytest.raises(DataError, match="index column"):
        qm9_split_rows(read_smiles_file(path))


def test_invalid_smiles_are_named_by_line_or_skipped_and_counted(tmp_path):
    path = tmp_path / "mols.smi"
    path.write_text("CCO ethanol\n\nC1CC\nc1ccccc1\nnot_a_molecule\n")
    records = read_smiles_file(path)
    assert records.smiles == ["CCO", "C1CC", "c1ccccc1", "not_a_molecule"] and records.lines == [1, 3, 4, 5]
    with pytest.raises(
        DataError, match=r"2 SMILES that RDKit cannot read, at line\(s\) 3, 5; .*skip_invalid"
    ):
        parse_rows(records, range(len(records)), skip_invalid=False)
    mols, refused = parse_rows(records, range(len(records)), skip_invalid=True)
    assert len(mols) == 2 and refused == {"unparsable": 2}


def test_csv_files_read_the_smiles_column(tmp_path):
    path = tmp_path / "mols.csv"
    path.write_text("id,SMILES,score\n7,CCO,1.0\n9,CCN,2.0\n")
    records = read_smiles_file(path)
    assert records.smiles == ["CCO", "CCN"] and records.ids == ["7", "9"] and records.lines == [2, 3]
    (tmp_path / "bad.csv").write_text("SMILES,x\nCCO\n")
    with pytest.raises(DataError, match="line 2: 1 fields"):
        read_smiles_file(tmp_path / "bad.csv")
    (tmp_path / "empty.smi").write_text("\n\n")
    with pytest.raises(DataError, match="no molecules"):
        read_smiles_file(tmp_path / "empty.smi")


def test_splits_and_subsets_are_seeded_partitions():
    parts = fraction_split_rows(100, (0.1, 0.2), seed=3)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [70, 10, 20]
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(100))
    assert (fraction_split_rows(100, (0.1, 0.2), seed=3)["val"] == parts["val"]).all()
    sub = subset_rows(1000, 50, seed=1)
    assert len(np.unique(sub)) == 50 and (np.diff(sub) > 0).all()
    assert len(subset_rows(10, None, seed=1)) == 10


def test_store_densifies_exactly_what_it_holds_and_caches(tmp_path):
    smiles = ["CCO", "c1ccccc1", "[NH3+]CC([O-])=O", "C#N"]
    graphs = [smiles_to_graph(s, TYPES) for s in smiles]
    store = MoleculeSet.from_graphs(graphs, smiles, {"atom_type": 2})
    nodes, edges, mask = store.dense(np.array([3, 0, 1]), max_atoms=7)
    assert nodes.shape == (3, 7) and edges.shape == (3, 7, 7) and mask.dtype.is_floating_point is False
    for row, i in enumerate([3, 0, 1]):
        n = graphs[i].num_atoms
        assert mask[row].tolist() == [True] * n + [False] * (7 - n)
        assert nodes[row, :n].tolist() == graphs[i].atoms.tolist() and (nodes[row, n:] == 0).all()
        assert (edges[row, :n, :n].numpy() == graphs[i].bonds).all() and (edges[row, n:] == 0).all()
    sub = store.subset(np.array([2, 1]))
    assert sub.smiles == [smiles[2], smiles[1]]
    assert (sub.dense(np.arange(2), 7)[1] == store.dense(np.array([2, 1]), 7)[1]).all()
    cache = Cache("k", root=tmp_path)
    cache.save_arrays("train", store.arrays())
    cache.save_json("train", {"smiles": store.smiles, "refused": store.refused})
    meta = cache.load_json("train")
    again = MoleculeSet.from_arrays(cache.load_arrays("train"), meta["smiles"], meta["refused"])
    assert again.smiles == smiles and again.refused == {"atom_type": 2}
    assert all((a == b).all() for a, b in zip(again.dense(np.arange(4), 7), store.dense(np.arange(4), 7)))
    with pytest.raises(ValueError, match="more than max_atoms"):
        store.dense(np.array([1]), max_atoms=5)
