"""The graph transformer and its structural features: brute-force cycle counts, exact
permutation equivariance, exactly symmetric edge outputs, blindness to padding."""

import networkx as nx
import numpy as np
import pytest
import torch

from discodiff.graphs.state import GraphState, mirror_upper
from discodiff.nets.graph_features import components, cycle_counts, laplacian_features, masked_adjacency
from discodiff.nets.graph_transformer import GraphNetSpec, GraphTransformer, GraphTransformerConfig


def padded(g: nx.Graph, n_max: int):
    n = g.number_of_nodes()
    a = torch.zeros(1, n_max, n_max, dtype=torch.float64)
    a[0, :n, :n] = torch.tensor(nx.to_numpy_array(g))
    mask = torch.zeros(1, n_max, dtype=torch.bool)
    mask[0, :n] = True
    return masked_adjacency(a, mask), mask


def test_cycle_counts_equal_enumeration():
    rng = np.random.default_rng(0)
    for seed in range(40):
        g = nx.gnp_random_graph(int(rng.integers(3, 11)), rng.random() * 0.8 + 0.1, seed=seed)
        a, _ = padded(g, 12)
        per_node, totals = cycle_counts(a)
        ref_node, ref_total = np.zeros((12, 3)), np.zeros(4)
        for cycle in nx.simple_cycles(g, length_bound=6):
            if len(cycle) <= 5:
                ref_node[cycle, len(cycle) - 3] += 1
            ref_total[len(cycle) - 3] += 1
        assert np.allclose(per_node[0].numpy(), ref_node) and np.allclose(totals[0].numpy(), ref_total)


def test_components_and_eigenvalues_match_networkx():
    for seed in range(10):
        g = nx.gnp_random_graph(10, 0.15, seed=seed)
        a, mask = padded(g, 13)
        count, outside = components(a, mask)
        assert int(count) == nx.number_connected_components(g)
        largest = max(len(c) for c in nx.connected_components(g))
        small = [v for c in nx.connected_components(g) if len(c) < largest for v in c]
        assert sorted(outside[0].nonzero().flatten().tolist()) == sorted(small)
        vals, vecs = laplacian_features(a, mask, k=3, m=2)
        spectrum = np.sort(np.linalg.eigvalsh(nx.laplacian_matrix(g).toarray()))
        nonzero = spectrum[spectrum > 1e-5][:3]
        assert np.allclose(vals[0, : len(nonzero)].numpy(), nonzero)
        assert (vecs[0, 10:] == 0).all()


SPEC = GraphNetSpec(
    event_shape=(9,), out_channels=3, node_in=4, edge_in=4, node_out=3, edge_absent=(0, 3), num_classes=2
)


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    B, n = 3, 9
    mask = torch.zeros(B, n, dtype=torch.bool)
    mask[0], mask[1, :6], mask[2, :1] = True, True, True
    pair = mask[:, :, None] & mask[:, None, :]
    nodes = torch.randint(0, 4, (B, n), generator=g) * mask
    edges = mirror_upper(torch.randint(0, 4, (B, n, n), generator=g)) * pair
    return GraphState(nodes, edges, mask), torch.rand(B, generator=g), torch.tensor([0, 1, -1])


def permuted(x: GraphState, perm: torch.Tensor) -> GraphState:
    b = torch.arange(x.num_graphs)[:, None]
    return GraphState(
        x.nodes[b, perm], x.edges[b[:, :, None], perm[:, :, None], perm[:, None, :]], x.node_mask
    )


@pytest.mark.parametrize(
    "config",
    [
        GraphTransformerConfig(features="none", depth=2),
        GraphTransformerConfig(features="cycles", depth=2),
        GraphTransformerConfig(features="all", depth=2, eigenvectors=0),
    ],
    ids=["none", "cycles", "all-but-eigenvectors"],
)
def test_outputs_are_permutation_equivariant_symmetric_and_blind_to_padding(config):
    torch.manual_seed(0)
    net = GraphTransformer(config, SPEC).double()
    x, t, cond = batch()
    out = net(x, t, cond)
    assert torch.equal(out.edges, out.edges.transpose(1, 2))  # exactly, not up to rounding
    assert (out.edges.diagonal(dim1=1, dim2=2) == 0).all()
    perm = torch.arange(9).repeat(3, 1)
    perm[0], perm[1, :6] = torch.randperm(9), torch.randperm(6)  # real nodes first stays true
    out_p = net(permuted(x, perm), t, cond)
    expected = permuted(out, perm)
    assert torch.allclose(out_p.nodes, expected.nodes, atol=1e-12)
    assert torch.allclose(out_p.edges, expected.edges, atol=1e-12)
    pair = x.node_mask[:, :, None] & x.node_mask[:, None, :]
    noisy = GraphState(x.nodes.masked_fill(~x.node_mask, 2), x.edges.masked_fill(~pair, 1), x.node_mask)
    out_n = net(noisy, t, cond)
    assert torch.equal(out_n.nodes * x.node_mask[..., None], out.nodes * x.node_mask[..., None])
    assert torch.equal(out_n.edges * pair[..., None], out.edges * pair[..., None])


def test_eigenvector_features_are_equivariant_on_a_graph_without_symmetry():
    g = nx.gnp_random_graph(9, 0.45, seed=11)
    assert sum(1 for _ in nx.algorithms.isomorphism.GraphMatcher(g, g).isomorphisms_iter()) == 1
    edges = torch.tensor(nx.to_numpy_array(g), dtype=torch.long)[None]
    x = GraphState(torch.zeros(1, 9, dtype=torch.long), edges, torch.ones(1, 9, dtype=torch.bool))
    torch.manual_seed(0)
    net = GraphTransformer(GraphTransformerConfig(depth=2, eigenvectors=2), SPEC).double()
    t = torch.tensor([0.3])
    perm = torch.randperm(9)[None]
    out, out_p = net(x, t), net(permuted(x, perm), t)
    assert torch.allclose(out_p.edges, permuted(out, perm).edges, atol=1e-10)


def test_gradients_stay_finite_on_symmetric_and_tiny_graphs():
    """A complete graph has identical nodes (variance 0 in the pooled std); 1- and 2-node graphs
    have no or a single pair."""
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[0], mask[1, :1], mask[2, :2] = True, True, True
    edges = torch.zeros(3, 4, 4, dtype=torch.long)
    edges[0] = 1 - torch.eye(4, dtype=torch.long)
    edges[2, 0, 1] = edges[2, 1, 0] = 1
    spec = GraphNetSpec(event_shape=(4,), out_channels=2, node_in=1, edge_in=2, node_out=1)
    torch.manual_seed(0)
    net = GraphTransformer(GraphTransformerConfig(depth=2), spec)
    out = net(GraphState(torch.zeros(3, 4, dtype=torch.long), edges, mask), torch.rand(3))
    (out.edges.sum() + out.nodes.sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
