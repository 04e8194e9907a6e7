"""Standardized array data: likelihoods and W2 in the file's own units."""

import math

import numpy as np
import pytest
import torch

from discodiff.build import build_run
from discodiff.evaluate import likelihood
from discodiff.runconfig import EvalConfig, parse_config


def _run(path):
    cfg = {
        "data": {"name": "array", "path": str(path)},
        "method": {"name": "gaussian", "timesteps": 20},
        "net": {"name": "mlp", "hidden": 16, "depth": 1},
    }
    torch.manual_seed(0)  # the same network for both files
    return build_run(parse_config(cfg))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("arrays")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3)) * [1.0, 3.0, 0.2] + [5.0, -1.0, 0.0]
    np.save(tmp / "x.npy", x)
    np.save(tmp / "x10.npy", 10 * x)
    return tmp / "x.npy", tmp / "x10.npy"


def test_scaling_the_data_by_10_adds_log2_10_bits_per_dim(files):
    """The model sees identical standardized data; the reported density is the file's, so it
    drops by 10 per dimension: bits/dim + log2(10), nats + D log(10), for the bound and the
    PF-ODE alike. Mutation: drop ``unit_log_jacobian`` from ``evaluate.likelihood``."""
    cfg = EvalConfig(nll_examples=40, batch_size=40, estimators=["bound", "ode"])
    (data1, m1), (data10, m10) = _run(files[0]), _run(files[1])
    a, b = likelihood(m1, data1, cfg), likelihood(m10, data10, cfg)
    for suffix in ("", "_ode"):
        assert b[f"bits_per_dim{suffix}"] - a[f"bits_per_dim{suffix}"] == pytest.approx(
            math.log2(10), abs=1e-5
        )
        assert b[f"nll_nats{suffix}"] - a[f"nll_nats{suffix}"] == pytest.approx(3 * math.log(10), abs=1e-4)
    # in the file's units: standardized-unit NLL + sum_j log std_j
    assert data1.unit_log_jacobian() == pytest.approx(float(np.log(data1.std.numpy()).sum()))


def test_w2_is_in_the_files_units(files):
    """The same model samples, mapped back to each file's units: W2 scales by 10. Mutation: W2 on the
    standardized samples."""
    (data1, m1), (data10, m10) = _run(files[0]), _run(files[1])
    s1 = m1.sample(200, steps=5, sampler="ddim", generator=torch.Generator().manual_seed(1)).x
    s10 = m10.sample(200, steps=5, sampler="ddim", generator=torch.Generator().manual_seed(1)).x
    torch.testing.assert_close(s1, s10)
    w1, w10 = data1.sample_metrics(s1)["w2"], data10.sample_metrics(s10)["w2"]
    assert w10 == pytest.approx(10 * w1, rel=1e-5)
    raw = data1.to_data_units(data1.split("test")[0])
    assert raw.std(0).numpy() == pytest.approx([1.0, 3.0, 0.2], rel=0.25)  # the file's scale, not 1
