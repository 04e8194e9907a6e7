"""SMILES <-> kekulized heavy-atom graphs: hand cases, refusals with reasons, QM9 round trip."""

import numpy as np
import pytest

from discodiff.molecules.convert import (
    BOND_TYPES,
    AtomTypes,
    atom_label,
    canonical_smiles,
    graph_to_mol,
    parse_label,
    parse_smiles,
    sanitize,
    smiles_to_graph,
)
from discodiff.molecules.files import read_smiles_column
from discodiff.molecules.roundtrip import round_trip, round_trip_one
from molecules.shared import QM9_FILE, needs_qm9

TYPES = AtomTypes(("C", "N", "O", "F", "[N+]", "[O-]", "[C-]", "[N-]"))


def back(graph) -> str:
    return canonical_smiles(sanitize(graph_to_mol(graph.atoms, graph.bonds, TYPES)))


def test_atom_labels_round_trip():
    for symbol, charge in [("C", 0), ("N", 1), ("O", -1), ("Cl", 0), ("N", 2), ("S", -2)]:
        assert parse_label(atom_label(symbol, charge)) == (symbol, charge)
    assert atom_label("N", 1) == "[N+]" and atom_label("O", -1) == "[O-]"
    with pytest.raises(ValueError, match="not an atom type"):
        parse_label("Xx")
    with pytest.raises(ValueError, match="repeat"):
        AtomTypes(("C", "C"))


def test_benzene_is_kekulized_into_three_single_and_three_double_bonds():
    g = smiles_to_graph("c1ccccc1", TYPES)
    upper = g.bonds[np.triu_indices(6, k=1)]
    assert sorted(upper[upper > 0].tolist()) == [1, 1, 1, 2, 2, 2]
    assert BOND_TYPES[1:] == ("single", "double", "triple")
    assert (g.bonds == g.bonds.T).all() and (np.diag(g.bonds) == 0).all()
    assert back(g) == "c1ccccc1"


def test_hydrogens_come_back_from_valence_and_charge():
    for smiles in ["[NH3+]CCC([O-])=O", "c1cc[nH]c1", "[C-]#[N+]C", "N#CC(=O)[O-]", "OC1=CC=CN1", "C#N"]:
        g = smiles_to_graph(smiles, TYPES)
        assert not isinstance(g, str), (smiles, g)
        assert back(g) == canonical_smiles(parse_smiles(smiles))


@pytest.mark.parametrize(
    ("smiles", "kwargs", "reason"),
    [
        ("not a smiles", {}, "unparsable"),
        ("", {}, "unparsable"),
        ("CCCl", {}, "atom_type"),
        ("[13CH4]", {}, "isotope"),
        ("[CH3]", {}, "hydrogens"),  # a radical: its hydrogens are not what valence implies
        ("CCCCCCCCCC", {"max_atoms": 9}, "too_many_atoms"),
        ("[NH3+]CC([O-])=O", {"charges": "refuse"}, "formal_charge"),
    ],
)
def test_refusals_name_their_reason(smiles, kwargs, reason):
    assert smiles_to_graph(smiles, TYPES, **kwargs) == reason


def test_graph_atoms_follow_the_atom_types():
    g = smiles_to_graph("C[NH3+]", TYPES)
    assert [TYPES.labels[i] for i in g.atoms] == ["C", "[N+]"]


def test_round_trip_of_a_qm9_slice_is_exact():
    if not QM9_FILE.is_file():
        pytest.skip("shared QM9 file absent")
    smiles = read_smiles_column(QM9_FILE)[::400]  # 328 molecules spread over the file
    report = round_trip(smiles, TYPES, max_atoms=9)
    assert report.exact == report.total, report.to_dict()
    refused = round_trip(smiles, AtomTypes(("C", "N", "O", "F")), charges="refuse")
    assert set(refused.reasons) <= {"formal_charge"}


def test_pentavalent_nitro_is_read_charge_separated():
    # RDKit's sanitization writes N(=O)=O as [N+](=O)[O-]: exact with charged types, refused without
    assert round_trip_one("CN(=O)=O", TYPES, max_atoms=None, charges="types") == "exact"
    neutral = AtomTypes(("C", "N", "O"))
    assert round_trip_one("CN(=O)=O", neutral, max_atoms=None, charges="types") == "atom_type"
    assert round_trip_one("CN(=O)=O", neutral, max_atoms=None, charges="refuse") == "formal_charge"


@pytest.mark.slow
@needs_qm9
def test_whole_qm9_round_trips_exactly():
    """All 130,831 molecules come back with charges as atom types; with charges refused, exactly
    the 580 charged ones are refused (about 3 minutes)."""
    smiles = read_smiles_column(QM9_FILE)
    report = round_trip(smiles, TYPES, max_atoms=9)
    assert (report.total, report.exact) == (130_831, 130_831)
    refused = round_trip(smiles, AtomTypes(("C", "N", "O", "F")), max_atoms=9, charges="refuse")
    assert refused.reasons == {"formal_charge": 580}
