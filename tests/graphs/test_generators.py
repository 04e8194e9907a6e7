"""The SPECTRE recipes: planar-64-200 and SBM-200 with fixed seeds, and SPECTRE's split."""

import networkx as nx
import numpy as np
import torch

from discodiff.graphs.generators import planar_graphs, sbm_graphs, spectre_split


def test_planar_graphs_are_connected_planar_triangulations_and_seeded():
    graphs = planar_graphs(10, seed=3)
    for g in graphs:
        nxg = g.to_networkx()
        assert g.num_nodes == 64 and nx.is_connected(nxg) and nx.check_planarity(nxg)[0]
        assert 2 * 64 - 3 <= g.num_edges <= 3 * 64 - 6  # a triangulation of a point set
    again = planar_graphs(10, seed=3)
    assert all((a.edges == b.edges).all() for a, b in zip(graphs, again))
    assert planar_graphs(1, seed=4)[0].edges.tolist() != graphs[0].edges.tolist()


def test_sbm_graphs_follow_the_recipe():
    graphs = sbm_graphs(40, seed=0)
    sizes = [g.num_nodes for g in graphs]
    assert 40 <= min(sizes) and max(sizes) <= 200
    # edge density: within communities 0.3 and across 0.005 gives about 0.3 * sum C(s, 2) edges
    assert all(g.num_edges > 0 for g in graphs)
    assert [g.num_nodes for g in sbm_graphs(40, seed=0)] == sizes


def test_spectre_split_is_torch_random_split_with_seed_1234():
    split = spectre_split(200)
    ref = torch.utils.data.random_split(
        range(200), [128, 32, 40], generator=torch.Generator().manual_seed(1234)
    )
    for name, subset in zip(("train", "val", "test"), ref):
        assert split[name].tolist() == list(subset.indices)
    assert len(np.unique(np.concatenate(list(split.values())))) == 200
