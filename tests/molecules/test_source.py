"""The molecule data source through the CLI: train -> eval --json with the molecule metrics and
the SMILES + grid outputs; property labels for guidance; a missing extra in one line."""

import json
import sys

import numpy as np
import pytest
import torch
import yaml

from discodiff.base import NULL_LABEL
from discodiff.build import build_data, load_run
from discodiff.cli import main
from discodiff.molecules.draw import INVALID_SMILES
from discodiff.runconfig import parse_config
from molecules.shared import MOSES_DIR, needs_moses

SMILES = [
    "C", "CC", "CCC", "CCO", "CCN", "CO", "CN", "C=O", "C#N", "CC=O", "CCCC", "CCCO", "CC(C)O", "OCCO",
    "NCCO", "CC#N", "C=CC", "C#CC", "CC(=O)O", "CC(N)=O", "OC=O", "NC=O", "CCOC", "COC", "CNC",
    "C1CC1", "C1CCC1", "C1CO1", "C1CN1", "c1ccccc1", "c1ccncc1", "c1ccoc1", "c1cc[nH]c1", "CC(C)C",
    "CC(C)(C)O", "FC(F)F", "CF", "OCF", "[NH3+]CC([O-])=O", "CCCCO", "CC(O)CO", "NC(=O)N",
    "O=CC=O", "CC1CC1", "OC1CC1", "N#CC#N", "CCCN", "CC(C)N",
]  # fmt: skip


def config(tmp_path, **data):
    path = tmp_path / "mols.smi"
    path.write_text("\n".join(SMILES) + "\n")
    return {
        "seed": 0,
        "data": {"name": "smiles", "path": str(path), "test_fraction": 0.2, "val_fraction": 0.1, **data},
        "method": {"name": "digress", "timesteps": 8, "cond_drop_prob": 0.2},
        "net": {
            "name": "graph_transformer",
            "width_x": 16,
            "width_e": 8,
            "width_y": 8,
            "depth": 1,
            "heads": 2,
        },
        "train": {"steps": 6, "batch_size": 16, "warmup_steps": 1, "log_every": 3, "ckpt_every": 6},
        "eval": {"batch_size": 32, "nll_examples": 8, "num_samples": 12},
    }


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DISCODIFF_CACHE", str(tmp_path / "cache"))


def test_train_then_eval_json_prints_the_molecule_metrics_and_writes_the_grid(tmp_path, capsys):
    cfg = tmp_path / "m.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path)))
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(run), "--no-progress"]) == 0
    for name in ("samples.smi", "samples.png", "samples.jsonl", "infill.smi", "infill.png"):
        assert (run / name).is_file(), name
    lines = (run / "samples.smi").read_text().splitlines()
    assert len(lines) == 12 and all(line for line in lines)
    capsys.readouterr()
    assert main(["eval", str(run), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    for key in ("validity", "validity_strict", "uniqueness", "novelty", "fcd", "bits_per_graph"):
        assert key in metrics, key
    assert 0 <= metrics["validity"] <= 1 and metrics["validity_strict"] <= metrics["validity"]
    assert metrics["bits_per_graph"] > 0
    state = json.loads((run / "data_state.json").read_text())
    assert state["atom_types"][0] == "C" and "[N+]" in state["atom_types"]
    assert state["sizes"]["test"] == round(0.2 * len(SMILES))
    assert load_run(run, device=torch.device("cpu")).data.state_dict() == state  # same encoding


def test_molecules_become_graphs_and_samples_become_smiles(tmp_path):
    data = build_data(parse_config(config(tmp_path)))
    info = data.info
    assert info.kind == "graph" and info.fields["edges"].vocab_size == 4
    assert info.fields["nodes"].vocab_size == len(data.corpus.atom_types)
    x, cond = data.split("test")
    assert cond is None and x.nodes.shape[1] == max(data.corpus.sets["train"].num_atoms)
    decoded = data.metrics.decode(x)
    assert all(decoded.valid)  # test molecules decode to themselves
    assert sorted(decoded.full_smiles) == sorted(data.corpus.sets["test"].smiles)
    m = data.sample_metrics(x)
    assert m["validity"] == 1 and m["novelty"] == 1  # test molecules are not training molecules
    assert m["fcd"] == pytest.approx(0, abs=1e-3)  # the test split against itself
    out = data.save_samples(x, tmp_path / "s")
    assert {p.suffix for p in out} == {".jsonl", ".smi", ".png"}
    assert (tmp_path / "s.smi").read_text().splitlines() == decoded.full_smiles


def test_invalid_graphs_are_written_as_invalid(tmp_path):
    data = build_data(parse_config(config(tmp_path)))
    x, _ = data.split("test")
    x.edges[0, 0, 1 : x.node_mask[0].sum()] = 3  # triple bonds from atom 0 to every other atom
    x.edges[0, 1:, 0] = x.edges[0, 0, 1:]
    data.save_samples(x, tmp_path / "s")
    assert (tmp_path / "s.smi").read_text().splitlines()[0] in {INVALID_SMILES, "C#C"}


def test_property_bins_become_class_labels(tmp_path):
    data = build_data(parse_config(config(tmp_path, condition="logp", condition_bins=3)))
    assert data.info.num_classes == 3
    _, cond = data.train_stream(0).next(16)
    assert cond is not None and cond.dtype == torch.long and set(cond.tolist()) <= {0, 1, 2}
    x, labels = data.split("test")
    m = data.sample_metrics(x, labels)
    own = m["logp_mae_test_own_bin"]
    assert m["logp_mae"] == pytest.approx(own)  # the test molecules with their own labels
    assert m["logp_mae_test_random_bin"] > own
    unlabelled = data.sample_metrics(x, torch.full_like(labels, NULL_LABEL))
    assert np.isnan(unlabelled["logp_mae"])
    bins = data.state_dict()["bins"]
    again = build_data(
        parse_config(config(tmp_path, condition="logp", condition_bins=3)), state=data.state_dict()
    )
    assert again.state_dict()["bins"] == bins


def test_a_run_restores_its_atom_types(tmp_path):
    cfg = parse_config(config(tmp_path, atom_types=["C", "N", "O", "F", "[N+]", "[O-]", "Cl"]))
    data = build_data(cfg)
    assert data.state_dict()["atom_types"][-1] == "Cl"
    again = build_data(parse_config(config(tmp_path)), state=data.state_dict())
    assert again.corpus.atom_types == data.corpus.atom_types


def test_bad_smiles_name_the_line_or_are_skipped(tmp_path, capsys):
    path = tmp_path / "bad.smi"
    path.write_text("\n".join([*SMILES[:20], "C1CC", *SMILES[20:]]) + "\n")
    cfg = config(tmp_path)
    cfg["data"]["path"] = str(path)
    cfg_path = tmp_path / "bad.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(cfg_path), "--out", str(tmp_path / "r"), "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "line(s) 21" in err and "skip_invalid" in err and "Traceback" not in err
    cfg["data"]["skip_invalid"] = True
    data = build_data(parse_config(cfg))
    refused = data.state_dict()["refused"]
    assert sum(r.get("unparsable", 0) for r in refused.values()) == 1


def test_without_the_extra_a_molecule_config_fails_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "rdkit", None)  # import rdkit now raises ImportError
    cfg = tmp_path / "m.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path)))
    assert main(["train", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install -e '.[molecules]'" in err and "RDKit" in err


@pytest.mark.slow
@needs_moses
def test_moses_loads_its_own_splits_and_scores_against_test_and_test_scaffolds(tmp_path):
    """MOSES with 300 of its training molecules: MOSES's files as train / test_scaffolds / test,
    novelty against all 1,584,663 training SMILES, the _testsf metrics (about a minute)."""
    cfg = config(tmp_path)
    cfg["data"] = {
        "name": "moses",
        "path": str(MOSES_DIR),
        "train_subset": 300,
        "eval_size": 40,
        "reference_size": 200,
    }
    data = build_data(parse_config(cfg))
    state = data.state_dict()
    assert state["sizes"] == {"train": 300, "val": 40, "test": 40}
    assert set(state["atom_types"]) <= {"C", "N", "O", "S", "F", "Cl", "Br"}
    assert data.info.fields["nodes"].shape == (27,)
    assert len(data.corpus.novelty_reference()) == 1_584_663
    x, _ = data.split("test")
    m = data.sample_metrics(x)
    assert m["validity"] == 1 and m["filters"] == 1  # MOSES molecules pass the filters that chose them
    assert m["novelty"] == 1 and 0 < m["scaf"] and m["scaf_testsf"] < m["scaf"]
    assert {"fcd", "fcd_testsf", "snn", "snn_testsf", "frag", "frag_testsf", "int_div"} <= m.keys()


def test_a_molecule_rdkit_cannot_draw_is_drawn_as_its_atoms(tmp_path):
    from rdkit import Chem

    from discodiff.molecules.draw import write_grid

    # A generated (invalid) graph from a 1-step QM9 model whose 2D layout puts bonded atoms on one
    # point: RDKit's drawing raised "Cannot normalize a zero length vector" and lost the whole grid.
    smiles = "F1234#[N+]567=[C-]189%10#C21%11%12%13#[C-]#8=52%14#[O-]=915=C=%11=6=23(=C#4#%10=7=5%12)C#%14%13"
    bad = Chem.MolFromSmiles(smiles, sanitize=False)
    bad.UpdatePropertyCache(strict=False)
    path = write_grid([Chem.MolFromSmiles("CCO"), bad], tmp_path / "grid.png", ["ok", "invalid"])
    assert path.stat().st_size > 0
    assert bad.GetNumBonds() > 0  # the caller's molecule keeps its bonds
