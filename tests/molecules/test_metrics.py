"""Molecule metrics against hand-computed values: validity (DiGress's and strict), uniqueness,
novelty, FCD, MOSES's filters / SNN / fragment and scaffold similarity, property bins."""

import math

import numpy as np
import pytest
import torch

from discodiff.metrics.frechet import gaussian_frechet_distance as frechet_distance
from discodiff.molecules.convert import AtomTypes, Chem
from discodiff.molecules.files import read_smiles_column
from discodiff.molecules.metrics import FCD, basic_metrics, decode_graphs
from discodiff.molecules.moses_metrics import (
    cosine_similarity,
    fragment_counts,
    internal_diversity,
    morgan_fingerprints,
    passes_filters,
    scaffold_counts,
    snn,
    tanimoto_max_and_mean,
)
from discodiff.molecules.properties import fit_bins, property_mae, property_values, reference_maes
from molecules.shared import MOSES_DIR, needs_moses

TYPES = AtomTypes(("C", "O", "F"))
C, O, F = 0, 1, 2


def graph_batch(graphs, n=6):
    """(nodes, edges, mask) of graphs given as (atoms, [(u, v, bond), ...])."""
    nodes = torch.zeros(len(graphs), n, dtype=torch.long)
    edges = torch.zeros(len(graphs), n, n, dtype=torch.long)
    mask = torch.zeros(len(graphs), n, dtype=torch.bool)
    for i, (atoms, bonds) in enumerate(graphs):
        nodes[i, : len(atoms)] = torch.tensor(atoms, dtype=torch.long) if atoms else 0
        mask[i, : len(atoms)] = True
        for u, v, b in bonds:
            edges[i, u, v] = edges[i, v, u] = b
    return nodes, edges, mask


def test_validity_uniqueness_novelty_by_hand():
    ethanol = ([C, C, O], [(0, 1, 1), (1, 2, 1)])
    disconnected = ([C, O], [])  # methane + water: sanitizes, two fragments
    pentavalent = ([C, F, F, F, F, F], [(0, k, 1) for k in range(1, 6)])
    empty = ([], [])
    decoded = decode_graphs(*graph_batch([ethanol, ethanol, disconnected, pentavalent, empty]), TYPES)
    assert decoded.valid == [True, True, True, False, False]
    assert decoded.connected == [True, True, False, False, False]
    assert decoded.smiles[:2] == ["CCO", "CCO"] and decoded.smiles[2] in {"C", "O"}
    assert decoded.full_smiles[2] in {"C.O", "O.C"}
    m = basic_metrics(decoded, {"CCO"})
    assert m["validity"] == 3 / 5  # DiGress keeps the largest fragment: the disconnected one counts
    assert m["validity_strict"] == 2 / 5
    assert m["uniqueness"] == 2 / 3  # {CCO, C} among three valid
    assert m["novelty"] == 1 / 2  # C is new, CCO is in the training set


def test_padding_outside_the_mask_is_ignored():
    nodes, edges, mask = graph_batch([([C, C, O], [(0, 1, 1), (1, 2, 1)])])
    nodes[0, 4], edges[0, 2, 4], edges[0, 4, 2] = F, 1, 1  # junk on a padded node
    assert decode_graphs(nodes, edges, mask, TYPES).smiles == ["CCO"]


def test_metrics_of_nothing_are_nan():
    m = basic_metrics(decode_graphs(*graph_batch([([], [])]), TYPES), set())
    assert m["validity"] == 0 and math.isnan(m["uniqueness"]) and math.isnan(m["novelty"])


def test_frechet_distance_equals_the_matrix_square_root_formula():
    from fcd_torch.utils import calculate_frechet_distance

    rng = np.random.default_rng(0)
    for dim, rank in [(6, 6), (30, 30), (30, 10)]:  # rank 10: singular covariances, as with few molecules
        a, b = rng.normal(size=(dim, rank)), rng.normal(size=(dim, rank))
        s1, s2 = a @ a.T / rank, b @ b.T / rank
        mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
        want = calculate_frechet_distance(mu1, s1, mu2, s2)
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-6, abs=1e-6)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-6)


def test_fcd_is_zero_for_one_set_and_positive_between_different_sets():
    fcd = FCD()
    alcohols = [("C" * k) + "O" for k in range(1, 13)] + [("C" * k) + "N" for k in range(1, 13)]
    aromatics = ["c1ccccc1" + "C" * k for k in range(12)] + ["c1ccncc1" + "C" * k for k in range(12)]
    ref = fcd.stats(alcohols)
    assert abs(fcd.distance(ref, fcd.stats(alcohols))) < 1e-3
    assert fcd.distance(ref, fcd.stats(aromatics)) > 1.0
    assert fcd.stats(["C"]) is None and math.isnan(fcd.distance(ref, None))


def mols(smiles):
    return [Chem.MolFromSmiles(s) for s in smiles]


def on_bits(smiles):
    return set(np.nonzero(morgan_fingerprints(mols([smiles]))[0])[0].tolist())


def test_snn_and_internal_diversity_by_hand():
    a, b, c = "CCO", "c1ccccc1", "CCCO"
    t_ac = len(on_bits(a) & on_bits(c)) / len(on_bits(a) | on_bits(c))
    t_bc = len(on_bits(b) & on_bits(c)) / len(on_bits(b) | on_bits(c))
    fa, fb, fc = (morgan_fingerprints(mols([s])) for s in (a, b, c))
    assert snn(fa, np.concatenate([fa, fb])) == 1.0
    assert snn(np.concatenate([fb, fc]), np.concatenate([fa, fc])) == pytest.approx((max(0, t_bc) + 1) / 2)
    assert snn(fc, np.concatenate([fa, fb])) == pytest.approx(max(t_ac, t_bc))
    assert internal_diversity(np.concatenate([fa, fa])) == pytest.approx(0.0)
    t_ab = len(on_bits(a) & on_bits(b)) / len(on_bits(a) | on_bits(b))
    assert internal_diversity(np.concatenate([fa, fb])) == pytest.approx(1 - (2 + 2 * t_ab) / 4)
    zeros = np.zeros((1, 1024), dtype=np.uint8)
    assert tanimoto_max_and_mean(zeros, zeros)[0][0] == 1.0  # MOSES: empty vs empty is 1


def test_fragments_scaffolds_and_cosine_by_hand():
    frags = fragment_counts(mols(["CCOC(=O)c1ccccc1NC(=O)C"]))
    # BRICS cuts the ethyl-O (L4-L3), O-C(=O) (L3-L6... via ester), C(=O)-ring (L6-L16),
    # ring-N (L16-L5) and N-C(=O) (L5-L1) bonds
    assert frags == {
        "[4*]CC": 1,
        "[3*]O[3*]": 1,
        "[1*]C([6*])=O": 1,
        "[16*]c1ccccc1[16*]": 1,
        "[5*]N[5*]": 1,
        "[1*]C(C)=O": 1,
    }
    scaffolds = scaffold_counts(mols(["Cc1ccc(CC2CCCC2)cc1", "c1ccc(CC2CCCC2)cc1", "Cc1ccccc1", "CCO"]))
    assert scaffolds == {"c1ccc(CC2CCCC2)cc1": 2}  # one-ring and ring-free scaffolds are left out
    assert cosine_similarity({"a": 2, "b": 1}, {"a": 1, "c": 1}) == pytest.approx(2 / math.sqrt(10))
    assert cosine_similarity({"a": 1}, {"a": 3}) == pytest.approx(1.0)
    assert math.isnan(cosine_similarity({}, {"a": 1}))


@pytest.mark.parametrize(
    ("smiles", "passes"),
    [
        ("c1ccccc1", True),
        ("CC(=O)Oc1ccccc1C(=O)O", True),
        ("C1CCCCCC1", True),
        ("C1CCCCCCC1", False),  # an 8-membered ring
        ("C[N+](C)(C)C", False),  # a charge
        ("CI", False),  # iodine is not allowed
        ("C=CC#N", False),  # MCF1
        ("C1OC1", False),  # MCF5, epoxide
        ("S=C1SC(=Cc2ccccc2)C(=O)N1", False),  # PAINS ene_rhod
    ],
)
def test_moses_filters_by_hand(smiles, passes):
    assert passes_filters(Chem.MolFromSmiles(smiles)) is passes


@needs_moses
def test_moses_test_molecules_pass_the_filters_they_were_selected_by():
    sample = read_smiles_column(MOSES_DIR / "test.csv.gz")[:40]
    assert all(passes_filters(m) for m in mols(sample))


def test_property_bins_and_mae():
    values = np.arange(100, dtype=np.float64)
    bins = fit_bins("logp", values, 4)
    assert bins.edges == (24.75, 49.5, 74.25)
    assert bins.label(np.array([0.0, 24.75, 50.0, 99.0])).tolist() == [0, 1, 2, 3]
    assert bins.targets == (12.0, 37.0, 62.0, 87.0)  # medians of 0..24, 25..49, ...
    assert property_mae(bins, np.array([12.0, 40.0]), np.array([0, 1])) == pytest.approx(1.5)
    ref = reference_maes(bins, values)
    assert ref["own_bin"] == pytest.approx(156 / 25)  # sum |v - 12| over 0..24, over 25 values
    assert ref["random_bin"] > ref["own_bin"]
    assert property_values("logp", mols(["CCO"]))[0] == pytest.approx(Chem.Crippen.MolLogP(mols(["CCO"])[0]))
    assert 0 < property_values("qed", mols(["CC(=O)Oc1ccccc1C(=O)O"]))[0] < 1
    with pytest.raises(ValueError, match="too concentrated"):
        fit_bins("qed", np.zeros(10), 3)
