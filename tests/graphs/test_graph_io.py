"""The JSONL graph format: round trips, and one clear error per kind of bad file."""

import json
from pathlib import Path

import numpy as np
import pytest

from discodiff.errors import DataError
from discodiff.graphs.io import Graph, node_count_histogram, read_jsonl, write_jsonl

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "graphs"


def write_lines(path, lines):
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n" for ln in lines))
    return path


def test_round_trip_keeps_edges_and_labels(tmp_path):
    graphs = [
        Graph(4, [[2, 1], [0, 1], [3, 2]]),
        Graph(3, [[0, 2]], node_labels=[1, 0, 2], edge_labels=[3]),
    ]
    back = read_jsonl(write_jsonl(graphs[:1], tmp_path / "a.jsonl"))
    assert back[0].num_nodes == 4 and back[0].edges.tolist() == [[0, 1], [1, 2], [2, 3]]
    labelled = read_jsonl(write_jsonl(graphs[1:], tmp_path / "b.jsonl"))[0]
    assert labelled.node_labels.tolist() == [1, 0, 2] and labelled.edge_labels.tolist() == [3]
    assert (labelled.adjacency() == labelled.adjacency().T).all()


def test_edge_labels_follow_their_edges_when_sorted():
    g = Graph(3, [[2, 1], [0, 1]], edge_labels=[5, 7])
    assert g.edges.tolist() == [[0, 1], [1, 2]] and g.edge_labels.tolist() == [7, 5]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"num_nodes": 3, "edges": [[0, 1], [1, 1]]}, "self-loop [1, 1]"),
        ({"num_nodes": 3, "edges": [[0, 3]]}, "outside 0 .. 2"),
        ({"num_nodes": 3, "edges": [[0, -1]]}, "outside 0 .. 2"),
        ({"num_nodes": 3, "edges": [[0, 1], [1, 0]]}, "duplicate edge [0, 1]"),
        ({"num_nodes": 0, "edges": []}, "num_nodes must be >= 1"),
        ({"edges": [[0, 1]]}, "'num_nodes' is missing"),
        ({"num_nodes": 2, "edges": [[0, 1, 2]]}, "[u, v] integer pairs"),
        ({"num_nodes": 2, "edges": [[0, 1]], "node_labels": [0]}, "one per node"),
        ({"num_nodes": 2, "edges": [[0, 1]], "edge_labels": [0, 1]}, "one per edge"),
        ({"num_nodes": 2, "edges": [], "colour": 1}, "unknown key(s) colour"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_graph_names_file_and_line(tmp_path, line, message):
    path = write_lines(tmp_path / "bad.jsonl", [{"num_nodes": 2, "edges": [[0, 1]]}, line])
    with pytest.raises(DataError) as err:
        read_jsonl(path)
    text = str(err.value)
    assert "bad.jsonl, line 2" in text and message in text, text


def test_empty_file_and_mixed_labels_are_refused(tmp_path):
    with pytest.raises(DataError, match="empty"):
        read_jsonl(write_lines(tmp_path / "empty.jsonl", ["", "  "]))
    mixed = [{"num_nodes": 2, "edges": [[0, 1]]}, {"num_nodes": 1, "edges": [], "node_labels": [0]}]
    with pytest.raises(DataError, match="line 2: node_labels/edge_labels must be on every line"):
        read_jsonl(write_lines(tmp_path / "mixed.jsonl", mixed))
    with pytest.raises(DataError, match="not found"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_node_count_histogram():
    hist = node_count_histogram([Graph(2), Graph(2), Graph(4)], n_max=5)
    assert np.allclose(hist, [0, 0, 2 / 3, 0, 1 / 3, 0])


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared graph data not present")
def test_shared_benchmark_files_parse():
    community = read_jsonl(SHARED / "community_small.jsonl")
    ego = read_jsonl(SHARED / "ego_small.jsonl")
    assert len(community) == 100 and {g.num_nodes for g in community} <= set(range(12, 21))
    assert len(ego) == 200 and {g.num_nodes for g in ego} <= set(range(4, 18))
