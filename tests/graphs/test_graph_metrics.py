"""Graph metrics against brute force and hand-computed values: orbit counts, descriptors, EMD,
MMD, V.U.N. and the planar / SBM validity checks."""

import itertools
import math

import networkx as nx
import numpy as np
import ot
import pytest

from discodiff.graphs.generators import planar_graphs, sbm_graphs
from discodiff.metrics import graph_mmd as gm
from discodiff.metrics.graph_orbits import orbit_counts, orbit_counts_brute_force
from discodiff.metrics.graph_validity import is_planar_valid, is_sbm_valid, vun


def random_adjacency(rng, n, p):
    a = np.triu((rng.random((n, n)) < p).astype(np.int64), 1)
    return a + a.T


def test_orbit_counts_equal_brute_force_enumeration():
    rng = np.random.default_rng(0)
    for _ in range(25):
        a = random_adjacency(rng, int(rng.integers(1, 11)), rng.random())
        assert (orbit_counts(a) == orbit_counts_brute_force(a)).all()


def test_orbit_counts_of_small_graphlets_by_hand():
    paw = nx.to_numpy_array(nx.Graph([(0, 1), (1, 2), (0, 2), (2, 3)]), dtype=np.int64)
    counts = orbit_counts(paw)
    # node 3 is the pendant (orbit 9), nodes 0, 1 the degree-2 triangle nodes (10), node 2 the hub (11)
    assert counts[3, 9] == 1 and counts[0, 10] == counts[1, 10] == 1 and counts[2, 11] == 1
    assert counts[:, 12:].sum() == 0 and counts[2, 3] == 1 and counts[3, 1] == 2
    k4 = np.ones((4, 4), dtype=np.int64) - np.eye(4, dtype=np.int64)
    assert (orbit_counts(k4)[:, 14] == 1).all() and (orbit_counts(k4)[:, 3] == 3).all()


def test_orbit_counts_match_orca_when_available():
    orbit_count = pytest.importorskip("orbit_count")  # GPL: a test-only cross-check, never a dependency
    for seed in range(5):
        g = nx.gnp_random_graph(18, 0.3, seed=seed)
        ref = np.asarray(orbit_count.node_orbit_counts(g, graphlet_size=4))
        assert (ref == orbit_counts(nx.to_numpy_array(g, dtype=np.int64))).all()


def test_descriptors_match_networkx():
    rng = np.random.default_rng(1)
    for _ in range(5):
        a = random_adjacency(rng, 15, 0.3)
        g = nx.from_numpy_array(a)
        assert gm.degree_histogram(a).tolist() == nx.degree_histogram(g)
        assert np.allclose(gm.clustering_coefficients(a), [nx.clustering(g)[v] for v in range(15)])
        lap = nx.normalized_laplacian_matrix(g).toarray()
        assert np.allclose(gm.normalized_laplacian_eigenvalues(a), np.linalg.eigvalsh(lap))


def test_one_dimensional_emd_equals_the_transport_problem():
    rng = np.random.default_rng(2)
    for scale in (1.0, 100.0):
        x, y = rng.random((4, 12)), rng.random((3, 12))
        kernel = gm.Kernel("emd", 1.0, scale=scale)
        px, py = gm.prepare(x, kernel), gm.prepare(y, kernel)
        ground = np.abs(np.arange(12)[:, None] - np.arange(12)[None]) / scale
        ref = np.array([[ot.emd2(a, b, ground) for b in py] for a in px])
        assert np.allclose(gm.pairwise_distances(px, py, kernel), ref, atol=1e-9)


def brute_force_mmd(xs, ys, kernel_fn):
    def mean(a, b):
        return np.mean([kernel_fn(u, v) for u, v in itertools.product(a, b)])

    return mean(xs, xs) + mean(ys, ys) - 2 * mean(xs, ys)


@pytest.mark.parametrize("protocol", ["emd", "tv"])
def test_mmd_is_zero_for_identical_sets_and_equals_brute_force(protocol):
    rng = np.random.default_rng(3)
    set_a = [random_adjacency(rng, int(rng.integers(5, 12)), 0.4) for _ in range(6)]
    set_b = [random_adjacency(rng, int(rng.integers(5, 12)), 0.2) for _ in range(4)]
    da, db = gm.descriptors(set_a), gm.descriptors(set_b)
    same = gm.graph_mmds(da, gm.descriptors(set_a), protocol)
    assert all(abs(v) < 1e-12 for v in same.values())
    out = gm.graph_mmds(da, db, protocol)
    for stat, kernel in gm.PROTOCOLS[protocol].items():

        def k(u, v, kernel=kernel):
            u, v = np.pad(u, (0, max(0, len(v) - len(u)))), np.pad(v, (0, max(0, len(u) - len(v))))
            if kernel.normalize:
                u, v = u / u.sum(), v / v.sum()
            if kernel.distance == "emd":
                d = np.abs(np.cumsum(u) - np.cumsum(v)).sum() / kernel.scale
            elif kernel.distance == "tv":
                d = 0.5 * np.abs(u - v).sum()
            else:
                d = np.linalg.norm(u - v)
            return math.exp(-(d**2) / (2 * kernel.sigma**2))

        ref = brute_force_mmd(list(da[stat]), list(db[stat]), k)
        assert out[f"mmd_{stat}"] == pytest.approx(ref, rel=1e-9, abs=1e-12)
        assert out[f"mmd_{stat}"] > 0


def test_mmd_of_a_path_against_a_triangle_by_hand():
    path = nx.to_numpy_array(nx.path_graph(3), dtype=np.int64)
    tri = nx.to_numpy_array(nx.complete_graph(3), dtype=np.int64)
    emd = gm.graph_mmds(gm.descriptors([path]), gm.descriptors([tri]), "emd")
    tv = gm.graph_mmds(gm.descriptors([path]), gm.descriptors([tri]), "tv")
    # degree pmfs [0, 2/3, 1/3] and [0, 0, 1]: EMD = TV = 2/3
    assert emd["mmd_degree"] == pytest.approx(2 - 2 * math.exp(-((2 / 3) ** 2) / 2))
    assert tv["mmd_degree"] == pytest.approx(2 - 2 * math.exp(-((2 / 3) ** 2) / 2))
    # clustering: all mass in bin 0 vs bin 99 -> EMD 99/100, TV 1, sigma 0.1
    assert emd["mmd_clustering"] == pytest.approx(2 - 2 * math.exp(-(0.99**2) / 0.02))
    assert tv["mmd_clustering"] == pytest.approx(2 - 2 * math.exp(-1 / 0.02))
    # mean orbit counts [4/3, 2/3, 1/3, 0, ...] and [2, 0, 0, 1, ...]: squared L2 = 2, TV = 4/3
    assert emd["mmd_orbit"] == pytest.approx(2 - 2 * math.exp(-2 / (2 * 30.0**2)))
    assert tv["mmd_orbit"] == pytest.approx(2 - 2 * math.exp(-((4 / 3) ** 2) / (2 * 30.0**2)))
    # normalized-Laplacian spectra {0, 1, 2} and {0, 1.5, 1.5}: TV 2/3; EMD 100/3 bins apart (sigma 1)
    assert tv["mmd_spectral"] == pytest.approx(2 - 2 * math.exp(-((2 / 3) ** 2) / 2))
    assert emd["mmd_spectral"] == pytest.approx(2 - 2 * math.exp(-((100 / 3) ** 2) / 2))


def test_ratios_divide_by_the_train_mmd():
    ratios = gm.mmd_ratios({"mmd_degree": 0.2, "mmd_orbit": 0.3}, {"mmd_degree": 0.1, "mmd_orbit": 0.0})
    assert ratios == {"mmd_degree_ratio": pytest.approx(2.0), "mmd_ratio": pytest.approx(2.0)}


def test_vun_counts_isomorphic_copies_as_duplicates_and_training_graphs_as_old():
    train = [nx.cycle_graph(5), nx.path_graph(5)]
    relabel = dict(zip(range(5), [3, 0, 4, 1, 2]))
    generated = [
        nx.relabel_nodes(nx.cycle_graph(5), relabel),  # a training graph: not novel
        nx.star_graph(4),  # new and valid
        nx.relabel_nodes(nx.star_graph(4), {0: 4, 4: 0}),  # the same star again: not unique
        nx.complete_graph(5),  # new but not planar
    ]
    out = vun(generated, train, is_planar_valid)
    assert out == {"uniqueness": 0.75, "novelty": 0.75, "validity": 0.75, "vun": 0.25}


def test_planar_validity_needs_connected_and_planar():
    assert is_planar_valid(nx.grid_2d_graph(4, 4))
    assert not is_planar_valid(nx.complete_graph(5))  # K5
    assert not is_planar_valid(nx.disjoint_union(nx.path_graph(3), nx.path_graph(3)))
    assert all(is_planar_valid(g.to_networkx()) for g in planar_graphs(5, seed=1))


def test_sbm_validity_accepts_sbm_graphs_and_refuses_others():
    sbm = [g.to_networkx() for g in sbm_graphs(8, seed=5)]
    assert np.mean([is_sbm_valid(g) for g in sbm]) >= 0.75  # 91% of 200 fresh SBM graphs pass
    assert not any(is_sbm_valid(g.to_networkx()) for g in planar_graphs(3, seed=0))
    assert not any(is_sbm_valid(nx.gnp_random_graph(90, 0.1, seed=s)) for s in range(3))
