"""States (a tensor or a registered dataclass of tensors), their helpers, and what every method
declares through the one interface."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import Tensor

from discodiff.base import Batch, Method, SampleRequest, check_known
from discodiff.data.base import TensorStream
from discodiff.errors import DataError, UsageError, UserError
from discodiff.state import (
    batch_size,
    cat,
    check_finite,
    index,
    leaves,
    map_state,
    register_state,
    shape_of,
    to_device,
)

CONFIGS = Path(__file__).parents[1] / "configs"


@register_state
@dataclass
class Pair:
    nodes: Tensor
    edges: Tensor


def pair(n: int, offset: int = 0) -> Pair:
    nodes = torch.arange(offset, offset + n * 3).view(n, 3)
    return Pair(nodes, torch.arange(offset, offset + n * 9).float().view(n, 3, 3))


def test_helpers_treat_a_dataclass_like_a_tensor() -> None:
    s = pair(5)
    assert batch_size(s) == 5 and shape_of(s) == (5,) and shape_of(s.nodes) == (5, 3)
    rows = index(s, torch.tensor([4, 0]))
    assert isinstance(rows, Pair)
    assert torch.equal(rows.nodes, s.nodes[[4, 0]]) and torch.equal(rows.edges, s.edges[[4, 0]])
    assert batch_size(index(s, 2)) == 1
    both = cat([s, pair(2, offset=100)])
    assert batch_size(both) == 7 and torch.equal(both.nodes[5:], pair(2, offset=100).nodes)
    assert len(leaves(s)) == 2 and to_device(s, "cpu").edges.device.type == "cpu"
    doubled = map_state(lambda a, b: a + b, s, s)
    assert torch.equal(doubled.edges, 2 * s.edges)


def test_helpers_on_a_plain_tensor() -> None:
    x = torch.randn(4, 2)
    assert batch_size(x) == 4 and torch.equal(index(x, slice(1, 3)), x[1:3])
    assert torch.equal(cat([x, x]), torch.cat([x, x]))


def test_mismatched_states_are_refused() -> None:
    with pytest.raises(ValueError, match="disagree on the number of examples"):
        batch_size(Pair(torch.zeros(2, 3), torch.zeros(3, 3, 3)))
    with pytest.raises(ValueError, match="one structure"):
        cat([pair(2), torch.zeros(2, 3)])


def test_check_finite_names_the_example_in_any_field() -> None:
    s = pair(4)
    s.edges[2, 1, 1] = float("nan")
    with pytest.raises(DataError, match="1 example\\(s\\), first at index 2"):
        check_finite(s, "the batch")
    check_finite(pair(4), "the batch")  # integer fields and finite floats pass


def test_streams_and_batches_hold_structured_states() -> None:
    stream = TensorStream(pair(6), None, seed=0)
    first, _ = stream.next(4)
    second, _ = stream.next(4)  # wraps into the next epoch
    assert isinstance(first, Pair) and batch_size(second) == 4
    seen = torch.cat([first.nodes[:, 0], second.nodes[:2, 0]])
    assert sorted(seen.tolist()) == list(range(0, 18, 3))  # one epoch: every row once
    batch = Batch(first, cond=torch.zeros(4, dtype=torch.long))
    assert batch.size == 4 and batch.rand(2).shape == (4, 2)


def test_check_known_for_structured_states() -> None:
    s = pair(2)
    mask = map_state(lambda t: torch.ones_like(t, dtype=torch.bool), s)
    assert check_known(s, mask, (2,)) is not None
    with pytest.raises(UsageError, match="3 examples"):
        check_known(s, mask, (3,))
    bad = Pair(mask.nodes, mask.edges.float())
    with pytest.raises(UsageError, match="bool"):
        check_known(s, bad, (2,))


def _every_method() -> list[tuple[str, Method]]:
    from discodiff.build import build_run
    from discodiff.runconfig import load_config

    out = []
    for path in sorted(CONFIGS.rglob("*.yaml")):
        if "mnist" in path.parts or "bench" in path.parts:
            continue  # MNIST needs files from ../shared; bench suites are not run configs
        try:
            config = load_config(path)
        except (UserError, ImportError):  # a config of an optional extra that is not installed
            continue
        if config.method.name in {name for name, _ in out}:
            continue
        try:
            _, method = build_run(config)
        except UserError:  # data files absent on this machine
            continue
        out.append((config.method.name, method))
    return out


def test_every_method_declares_its_samplers_estimators_and_networks() -> None:
    methods = _every_method()
    assert len(methods) >= 10
    for name, method in methods:
        assert method.representation in ("continuous", "tokens", "graph"), name
        assert method.known_semantics in ("exact", "replacement", "prefix", "none"), name
        assert method.default_sampler in method.samplers, name
        for sampler in method.samplers:
            info = method.sampler_info(sampler)
            assert info.name == sampler and info.min_steps >= 1, (name, sampler)
            assert info.nfe_per_step is None or info.nfe_per_step >= 1, (name, sampler)
            info.check(info.default_steps)  # the default is allowed
            if info.max_steps is not None:
                with pytest.raises(UsageError, match="steps"):
                    info.check(info.max_steps + 1)
        for estimator in method.nll_estimators:
            assert method.estimator_info(estimator).name == estimator
        assert method.networks(), name
        with pytest.raises(UsageError, match="unknown sampler"):
            method.sampler_info("no-such-sampler")


def test_sample_hands_generate_a_checked_request() -> None:
    from discodiff.build import build_run
    from discodiff.runconfig import parse_config
    from runs import tiny

    _, method = build_run(parse_config(tiny()))
    seen: list[SampleRequest] = []
    original = method.generate

    def spy(request: SampleRequest):
        seen.append(request)
        return original(request)

    method.generate = spy
    out = method.sample(3, generator=torch.Generator().manual_seed(0))
    assert out.x.shape == (3, 2)
    request = seen[0]
    assert request.shape == (3, 2) and request.num == 3
    assert request.sampler == method.default_sampler
    assert request.steps == method.sampler_info(request.sampler).default_steps
    with pytest.raises(UsageError, match=r"steps \(21\) cannot exceed the model's timesteps \(20\)"):
        method.sample(3, steps=21)
    assert len(seen) == 1  # refused before generate
