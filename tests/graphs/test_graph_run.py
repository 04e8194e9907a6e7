"""A graph run from the command line: train -> eval --json (MMDs and the bound) -> sample, with the
run directory's JSONL samples, PNG grid and subgraph infilling; and a bad graph file's error."""

import json

import networkx as nx
import pytest

from discodiff.cli import main
from discodiff.graphs.io import from_networkx, write_jsonl
from runs import write_config

from . import TINY_NET


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("graphs")
    graphs = [from_networkx(nx.connected_watts_strogatz_graph(6 + i % 5, 2, 0.3, seed=i)) for i in range(25)]
    path = write_jsonl(graphs, tmp / "graphs.jsonl")
    cfg = {
        "data": {"name": "graphs", "path": str(path), "mmd": "emd"},
        "method": {"name": "digress", "timesteps": 6},
        "net": TINY_NET,
        "train": {"steps": 3, "batch_size": 8, "warmup_steps": 1, "log_every": 1, "ckpt_every": 3},
        "eval": {"batch_size": 8, "nll_examples": 0, "num_samples": 6},
    }
    assert main(["train", write_config(tmp / "g.yaml", cfg), "--out", str(tmp / "run"), "--no-progress"]) == 0
    return tmp / "run"


def test_run_directory_holds_graph_outputs(run_dir):
    for name in (
        "samples.jsonl",
        "samples.png",
        "infill.jsonl",
        "infill.png",
        "trajectory.png",
        "metrics.json",
    ):
        assert (run_dir / name).is_file(), name
    assert len((run_dir / "samples.jsonl").read_text().splitlines()) == 6
    split = json.loads((run_dir / "data_state.json").read_text())["split"]
    assert [len(split[k]) for k in ("train", "val", "test")] == [20, 0, 5]


def test_eval_json_prints_the_mmds_and_the_bound(run_dir, capsys):
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--json", "eval.num_samples=4"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    keys = {"mmd_degree", "mmd_clustering", "mmd_orbit", "mmd_spectral", "bits_per_graph", "bits_per_entry"}
    assert keys <= metrics.keys()
    assert metrics["bits_per_graph"] > metrics["bits_per_entry"] > 0


def test_sample_command_writes_graphs(run_dir, tmp_path):
    assert main(["sample", str(run_dir), "--num", "3", "--steps", "2", "--out", str(tmp_path / "s")]) == 0
    assert len((tmp_path / "s.jsonl").read_text().splitlines()) == 3 and (tmp_path / "s.png").is_file()


def test_bad_graph_file_is_one_line_naming_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"num_nodes": 3, "edges": [[0, 1]]}\n{"num_nodes": 3, "edges": [[2, 2]]}\n')
    cfg = {"data": {"name": "graphs", "path": str(bad)}, "method": "digress", "net": "graph_transformer"}
    assert main(["train", write_config(tmp_path / "b.yaml", cfg), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl, line 2: self-loop [2, 2]" in err and "Traceback" not in err
