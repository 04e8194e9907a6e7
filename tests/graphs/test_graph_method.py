"""The graph process and methods: symmetric edge noise with padding excluded, the forward marginal,
the node-count prior, input checks, sampling shapes, and the data source's outputs."""

import json

import networkx as nx
import numpy as np
import pytest
import torch

from discodiff.base import Batch
from discodiff.build import build_run
from discodiff.categorical.mixing import MarginalTransition
from discodiff.errors import UsageError
from discodiff.graphs.data import GraphData
from discodiff.graphs.io import Graph, from_networkx
from discodiff.graphs.process import GraphProcess
from discodiff.graphs.state import GraphState, from_dense, to_dense
from discodiff.runconfig import parse_config
from discodiff.schedules import CosineSchedule
from discodiff.state import index

from . import TINY_NET


def small_graphs(count: int, seed: int) -> list[Graph]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        g = nx.gnp_random_graph(int(rng.integers(3, 8)), 0.4, seed=int(rng.integers(1 << 30)))
        out.append(from_networkx(g))
    return out


def labelled(graphs: list[Graph], seed: int) -> list[Graph]:
    rng = np.random.default_rng(seed)
    return [
        Graph(g.num_nodes, g.edges, rng.integers(0, 3, g.num_nodes), rng.integers(0, 2, g.num_edges))
        for g in graphs
    ]


def test_dense_round_trip_keeps_labels():
    graphs = labelled(small_graphs(6, 0), 1)
    state = to_dense(graphs, 9)
    assert torch.equal(state.edges, state.edges.transpose(1, 2)) and state.edges.max() <= 2
    back = from_dense(state, labelled_nodes=True, labelled_edges=True)
    for a, b in zip(graphs, back):
        assert a.num_nodes == b.num_nodes and (a.edges == b.edges).all()
        assert (a.node_labels == b.node_labels).all() and (a.edge_labels == b.edge_labels).all()


def test_edge_noise_is_symmetric_skips_padding_and_follows_the_forward_marginal():
    schedule = CosineSchedule()
    marginal = torch.tensor([0.7, 0.2, 0.1])
    process = GraphProcess(None, MarginalTransition(schedule, marginal))
    x0 = GraphState(
        torch.zeros(4000, 5, dtype=torch.long),
        torch.zeros(4000, 5, 5, dtype=torch.long),
        torch.arange(5)[None].expand(4000, 5) < 4,
    )
    x0.edges[:, 0, 1] = x0.edges[:, 1, 0] = 2
    t = 0.6
    x_t = process.sample_marginal(x0, t, process.uniforms(x0.node_mask, torch.Generator().manual_seed(0)))
    assert torch.equal(x_t.edges, x_t.edges.transpose(1, 2))
    assert (x_t.edges[:, 4] == 0).all() and (x_t.edges.diagonal(dim1=1, dim2=2) == 0).all()
    freq = torch.bincount(x_t.edges[:, 0, 1], minlength=3).double() / 4000
    expected = process.edge.log_marginal(torch.tensor([[2]]), t, dtype=torch.float64)[0, 0].exp()
    assert torch.allclose(freq, expected, atol=4 * (0.25 / 4000) ** 0.5)


def data_and_method(method: dict, **data_kw):
    data = GraphData(
        {"train": labelled(small_graphs(30, 2), 3), "test": labelled(small_graphs(8, 4), 5)}, **data_kw
    )
    cfg = parse_config(
        {
            "data": {"name": "graphs", "path": "unused.jsonl"},
            "method": method,
            "net": TINY_NET,
        }
    )
    from discodiff.build import build_method

    torch.manual_seed(0)
    return data, build_method(cfg, data)


def test_data_info_describes_the_fields_marginals_and_node_counts():
    data, _ = data_and_method({"name": "digress", "timesteps": 5}, node_count_pseudocount=0.5)
    info = data.info
    assert info.kind == "graph" and info.unit == "bits_per_entry" and info.example_unit == "bits_per_graph"
    assert info.fields["nodes"].vocab_size == 3 and info.fields["edges"].vocab_size == 3
    assert info.fields["edges"].symmetric and sum(info.fields["edges"].marginal) == pytest.approx(1)
    counts = np.bincount([g.num_nodes for g in data.graphs["train"]], minlength=len(info.node_counts))
    smoothed = counts + 0.5 * (np.arange(len(counts)) >= 3)
    assert np.allclose(info.node_counts, smoothed / smoothed.sum())


@pytest.mark.parametrize("name", ["digress", "graph_mdlm"])
def test_methods_train_score_and_sample_through_the_interface(name):
    extra = (
        {"timesteps": 5, "loss": "hybrid"}
        if name == "digress"
        else {"sample_steps": 5, "nll_time_samples": 3}
    )
    data, method = data_and_method({"name": name, **extra})
    x, _ = data.split("test")
    batch = Batch(x)
    out = method.loss(batch)
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.per_example.shape == (8,)
    nll = method.nll(batch)
    assert torch.isfinite(nll.nll).all() and (nll.nll > 0).all()
    nodes = x.node_mask.sum(1).double()
    assert torch.equal(nll.num_dims, nodes * (nodes - 1) / 2 + nodes)
    assert torch.allclose(
        nll.terms["node_count"], -torch.log(torch.tensor(data.info.node_counts))[nodes.long()].double()
    )
    gen = torch.Generator().manual_seed(0)
    samples = method.sample(6, generator=gen, return_trajectory=True)
    assert samples.x.num_graphs == 6 and len(samples.trajectory) >= 2
    assert torch.equal(samples.x.edges, samples.x.edges.transpose(1, 2))
    assert (samples.x.nodes < 3).all() and (samples.x.edges < 3).all()
    fixed = method.sample((4, 5), steps=2, generator=gen)
    assert (fixed.x.node_mask.sum(1) == 5).all()
    with pytest.raises(UsageError, match=r"num_nodes must be in 1 \.\. 7"):
        method.sample((4, 8))
    metrics = data.sample_metrics(samples.x)
    assert {"mmd_degree", "mmd_clustering", "mmd_orbit", "mmd_spectral", "mmd_ratio", "novelty"} <= set(
        metrics
    )


def test_bad_graph_batches_are_refused():
    data, method = data_and_method({"name": "digress", "timesteps": 5})
    x, _ = data.split("test")
    x = GraphState(x.nodes.long(), x.edges.long(), x.node_mask)
    bad_edges = x.edges.clone()
    bad_edges[0, 0, 1], bad_edges[0, 1, 0] = 1, 2
    with pytest.raises(UsageError, match="symmetric"):
        method.loss(Batch(GraphState(x.nodes, bad_edges, x.node_mask)))
    with pytest.raises(UsageError, match=r"category ids 0 \.\. 2"):
        method.loss(Batch(GraphState(x.nodes + 5, x.edges, x.node_mask)))
    with pytest.raises(UsageError, match="first k >= 1 nodes"):
        method.loss(Batch(GraphState(x.nodes, x.edges, x.node_mask.flip(1))))


def test_outputs_split_record_and_infilling(tmp_path):
    data, method = data_and_method({"name": "graph_mdlm", "sample_steps": 4})
    out = method.sample(5, generator=torch.Generator().manual_seed(1)).x
    paths = data.save_samples(out, tmp_path / "samples")
    assert [p.suffix for p in paths] == [".jsonl", ".png"]
    lines = (tmp_path / "samples.jsonl").read_text().splitlines()
    assert len(lines) == 5 and "node_labels" in json.loads(lines[0])
    known, mask = data.infilling_example(3)
    done = method.sample((3,), known=known, known_mask=mask, generator=torch.Generator().manual_seed(2)).x
    assert torch.equal(done.nodes[mask.nodes], known.nodes[mask.nodes])
    assert torch.equal(done.edges[mask.edges], known.edges[mask.edges])
    assert torch.equal(done.node_mask, known.node_mask)
    assert [p.suffix for p in data.save_infilling(known, mask, done, tmp_path / "infill")] == [
        ".jsonl",
        ".png",
    ]


def test_generated_benchmarks_record_their_split(tmp_path):
    cfg = parse_config(
        {
            "data": {"name": "graphs", "source": "planar", "num_graphs": 20, "validity": "planar"},
            "method": {"name": "digress", "timesteps": 5},
            "net": {"name": "graph_transformer", "depth": 1},
        }
    )
    data, _ = build_run(cfg)
    split = data.state_dict()["split"]
    assert [len(split[k]) for k in ("train", "val", "test")] == [13, 3, 4]
    again, _ = build_run(
        cfg, data_state={"split": {"train": split["test"], "val": [], "test": split["train"]}}
    )
    assert again.graphs["train"][0].num_nodes == 64 and len(again.graphs["train"]) == 4
    metrics = data.graph_metrics(data.graphs["test"])
    assert metrics["vun"] == 1.0 and metrics["mmd_degree"] < 0.05  # test graphs: valid, unique, new
    first = index(data.split("test")[0], slice(0, 1))
    assert first.node_mask.sum() == 64


def test_classifier_free_guidance_combines_conditional_and_null_outputs():
    process = GraphProcess(
        MarginalTransition(CosineSchedule(), torch.tensor([0.5, 0.5])),
        MarginalTransition(CosineSchedule(), torch.tensor([0.6, 0.4])),
    )

    def net(x_t, t, cond):  # logits that depend on the label only (-1: the null label)
        c = cond.double()[:, None, None]
        nodes = torch.cat([c, -c], -1).expand(-1, 3, -1) * torch.ones(1, 3, 1)
        edges = torch.cat([c, 2 * c], -1)[:, None].expand(-1, 3, 3, -1)
        return GraphState(nodes, edges, x_t.node_mask)

    from discodiff.graphs.digress import DiGress, DiGressConfig

    method = DiGress(net, process, (0, 0, 0, 1.0), config=DiGressConfig(timesteps=4), num_classes=2)
    x = GraphState(
        torch.zeros(2, 3, dtype=torch.long),
        torch.zeros(2, 3, 3, dtype=torch.long),
        torch.ones(2, 3, dtype=torch.bool),
    )
    cond = torch.tensor([1, 0])
    guided = method.denoise(x, torch.full((2,), 0.5), cond, guidance_scale=3.0)
    lc = net(x, None, cond).nodes.log_softmax(-1)
    lu = net(x, None, torch.full_like(cond, -1)).nodes.log_softmax(-1)
    assert torch.allclose(guided.nodes, (lu + 3.0 * (lc - lu)).log_softmax(-1))
    with pytest.raises(UsageError, match="needs class labels"):
        method.sample(2, guidance_scale=2.0)
    out = method.sample(2, cond=cond, guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    assert out.nfe == 2 * 4
