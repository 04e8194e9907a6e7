"""Loss terms against independent closed forms."""

import math

import pytest
import torch

from discodiff.base import Batch
from discodiff.gaussian import GaussianConfig, GaussianDiffusion
from discodiff.gaussian.losses import (
    diffusion_step_kl,
    normal_kl,
    prior_kl,
    reconstruction_nll,
    reverse_log_variance,
)
from discodiff.gaussian.process import VEProcess, VPProcess
from discodiff.schedules import GeometricStdSchedule, LinearSchedule


@pytest.mark.parametrize("proc", [VPProcess(LinearSchedule()), VEProcess(GeometricStdSchedule())])
def test_step_kl_is_snr_difference_times_x0_error(proc):
    """With the posterior ("small") variance, KL = 1/2 (SNR_s - SNR_t) ||x0 - x0_hat||^2
    (Kingma et al. 2021, Eq. 13)."""
    gen = torch.Generator().manual_seed(0)
    s = torch.tensor([0.2, 0.5], dtype=torch.float64)
    t = torch.tensor([0.25, 0.9], dtype=torch.float64)
    x0, x0_hat, x_t = (torch.randn(2, 3, generator=gen, dtype=torch.float64) for _ in range(3))
    log_var = reverse_log_variance(proc, s, t, None, "small")
    kl = diffusion_step_kl(proc, x0, x_t, x0_hat, s, t, log_var)
    snr = lambda u: torch.exp(proc.schedule.log_snr(u))  # noqa: E731
    expect = 0.5 * (snr(s) - snr(t)) * ((x0 - x0_hat) ** 2).sum(1)
    torch.testing.assert_close(kl, expect, rtol=1e-7, atol=1e-10)


def test_normal_kl_and_likelihoods_match_torch():
    gen = torch.Generator().manual_seed(1)
    m1, m2, l1, l2 = (torch.randn(10, generator=gen, dtype=torch.float64) for _ in range(4))
    p, q = (
        torch.distributions.Normal(m1, torch.exp(0.5 * l1)),
        torch.distributions.Normal(m2, torch.exp(0.5 * l2)),
    )
    torch.testing.assert_close(normal_kl(m1, l1, m2, l2), torch.distributions.kl_divergence(p, q))
    x = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    mean = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    log_std = torch.tensor([-1.0, 0.0, 0.5, 1.0], dtype=torch.float64)
    expect = -torch.distributions.Normal(mean, torch.exp(log_std)[:, None]).log_prob(x).sum(1)
    torch.testing.assert_close(reconstruction_nll(x, mean, log_std, None), expect)


def test_prior_kl_matches_torch():
    proc = VPProcess(LinearSchedule())
    x0 = torch.randn(5, 2, dtype=torch.float64)
    a, s = proc.alpha_sigma(torch.ones(1, dtype=torch.float64))
    q = torch.distributions.Normal(a * x0, s)
    expect = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(prior_kl(proc, x0, 1.0), expect)


def test_loss_weightings_are_the_named_mses():
    """simple loss with weighting x0 / v equals the MSE on x0 / v for the same noise."""
    torch.manual_seed(0)
    net = torch.nn.Linear(2, 2)
    wrapped = lambda x, t, c=None: net(x)  # noqa: E731
    x = torch.randn(64, 2)
    losses = {}
    for weighting in ("eps", "x0", "v"):
        model = GaussianDiffusion(
            wrapped, GaussianConfig(prediction="eps", weighting=weighting), event_shape=(2,)
        )
        torch.manual_seed(1)
        losses[weighting] = model.loss(Batch(x)).loss
    torch.manual_seed(1)
    u = torch.rand(64, dtype=torch.float64)
    t = (torch.clamp(torch.floor(u * 1000), max=999) + 1) / 1000
    eps = torch.randn(64, 2)
    alpha, sigma = (c[:, None].float() for c in model.process.alpha_sigma(t))
    x_t = alpha * x + sigma * eps
    eps_hat = net(x_t)
    x0_hat = (x_t - sigma * eps_hat) / alpha
    v, v_hat = alpha * eps - sigma * x, alpha * eps_hat - sigma * x0_hat
    torch.testing.assert_close(losses["eps"], ((eps - eps_hat) ** 2).mean(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(losses["x0"], ((x - x0_hat) ** 2).mean(), rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(losses["v"], ((v - v_hat) ** 2).mean(), rtol=1e-3, atol=1e-6)


def test_eps_prediction_refused_where_alpha_vanishes():
    from discodiff.schedules import CosineSchedule

    with pytest.raises(ValueError, match="prediction 'v'"):
        GaussianDiffusion(None, GaussianConfig(schedule=CosineSchedule(), timesteps=0), event_shape=(2,))
    GaussianDiffusion(
        None, GaussianConfig(schedule=CosineSchedule(), timesteps=0, prediction="v"), event_shape=(2,)
    )


def test_losses_and_gradients_finite():
    from discodiff.nets import NetSpec
    from discodiff.nets.mlp import MLPConfig, TimeMLP

    for loss in ("simple", "vlb", "hybrid"):
        learn = loss != "simple"
        net = TimeMLP(NetSpec((2,), 4 if learn else 2), MLPConfig(hidden=32, depth=1))
        model = GaussianDiffusion(net, GaussianConfig(loss=loss, learn_variance=learn), event_shape=(2,))
        out = model.loss(Batch(torch.randn(256, 2)))
        out.loss.backward()
        assert math.isfinite(float(out.loss.detach()))
        assert all(torch.isfinite(p.grad).all() for p in net.parameters())
        net.zero_grad()


def test_discretized_decoder_gradients_finite_at_the_end_bins():
    """The end bins extend to -inf / +inf: the decoder's value and gradient stay finite there
    (log_ndtr's backward at an infinite argument would be 0 * inf = NaN even where masked)."""
    from discodiff.gaussian.losses import discretized_gaussian_log_likelihood

    x = torch.tensor([-1.0, 1.0, 0.0, -1.0, 1.0], dtype=torch.float64)
    mean = torch.tensor([0.3, -0.2, 0.1, 5.0, -5.0], dtype=torch.float64, requires_grad=True)
    log_std = torch.full((5,), -1.0, dtype=torch.float64, requires_grad=True)
    ll = discretized_gaussian_log_likelihood(x, mean, log_std, 17)
    ll.sum().backward()
    assert torch.isfinite(ll).all()
    assert torch.isfinite(mean.grad).all() and torch.isfinite(log_std.grad).all()


def test_training_decoder_is_finite_where_the_loss_does_not_use_it(monkeypatch):
    """The discretized decoder underflows (value -inf, NaN gradient through torch.where) at large t,
    where the loss does not use it: ``loss`` evaluates it on every row (no boolean indexing, which
    would synchronize) at the first step's std, which ``log_normal_interval`` keeps finite with
    finite gradients hundreds of stds away. Mutation: evaluate it at each row's own t."""
    import discodiff.gaussian.method as gm
    from discodiff.nets import NetSpec
    from discodiff.nets.mlp import MLPConfig, TimeMLP

    T = 1000  # sigma/alpha at t_1 about 0.01: the network's x0 at large t is hundreds of stds away
    net = TimeMLP(NetSpec((2,), 4), MLPConfig(hidden=16, depth=1))
    model = GaussianDiffusion(
        net, GaussianConfig(loss="hybrid", learn_variance=True, timesteps=T), event_shape=(2,), levels=17
    )
    t1 = torch.full((1,), 1.0 / T, dtype=torch.float64)
    first_log_std = float(model._decoder_log_std(t1).max())
    seen = []

    def recording(x0, x0_hat, log_std, levels):
        seen.append(x0.shape[0])
        assert float(log_std.max()) <= first_log_std + 1e-9, "decoder evaluated at a later step"
        return reconstruction_nll(x0, x0_hat, log_std, levels)

    monkeypatch.setattr(gm, "reconstruction_nll", recording)
    torch.manual_seed(0)
    x0 = torch.randint(0, 17, (256, 2)) / 8.0 - 1.0
    model.loss(Batch(x0)).loss.backward()
    assert seen == [256]
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


def test_stratified_discrete_time_bound_is_unbiased():
    """k stratified steps per example estimate the T - 1 step KLs' sum without bias: on 4,000
    copies of one point, with a fixed imperfect denoiser, the mean of the k = 3 estimate matches
    the mean of the full sum within 4 standard errors (the two share nothing but the model), and
    k = T - 1 is the full sum itself, draw for draw. Mutations: drop the (T - 1)/k weight, or use
    j / k without the offset (both biased by far more than 4 standard errors)."""
    from discodiff.gaussian.losses import discrete_time_bound
    from discodiff.gaussian.precond import Denoised

    proc, T, n = VPProcess(LinearSchedule()), 20, 4000
    x0 = torch.tensor([[0.7, -0.4]], dtype=torch.float64).expand(n, 2)

    def denoise(x_t, t):  # shrinks toward 0: wrong by an amount that depends on t
        return Denoised(x0=0.5 * x_t, eps=torch.zeros_like(x_t))

    def bound(samples: int, seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return discrete_time_bound(proc, x0, T, denoise, Batch(x0), "small", samples)

    full, estimate = bound(0, 1), bound(3, 2)
    stderr = math.sqrt(float(full.var()) / n + float(estimate.var()) / n)
    assert abs(float(estimate.mean() - full.mean())) < 4 * stderr
    assert float(estimate.std()) > 0  # a Monte Carlo estimate, not the sum
    torch.testing.assert_close(bound(T - 1, 3), bound(0, 3), rtol=0, atol=0)
