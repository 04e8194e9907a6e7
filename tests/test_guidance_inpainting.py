"""Classifier-free guidance and inpainting on images, for every Gaussian sampler: guidance at scale 1
is the conditional model, the null class is the unconditional model, label dropout drops the
configured fraction, and known pixels come back unchanged."""

from __future__ import annotations

import pytest
import torch

from discodiff.base import NULL_LABEL, Batch
from discodiff.config import from_dict
from discodiff.data.images import DigitsConfig, build_digits
from discodiff.gaussian import GAUSSIAN_SAMPLERS, GaussianConfig, GaussianDiffusion, VPProcess
from discodiff.nets import NetSpec
from discodiff.nets.unet import UNet, UNetConfig
from discodiff.schedules import SCHEDULES

SAMPLERS = GAUSSIAN_SAMPLERS.names()
STEPS = 8
N = 6


def random_unet(num_classes: int, seed: int = 0) -> UNet:
    """A tiny U-Net whose zero-initialized layers get random weights, so that its output depends
    on x, t and the label as a trained network's would."""
    torch.manual_seed(seed)
    config = UNetConfig(channels=8, channel_mult=(1, 2), num_res_blocks=1, groups=4, num_heads=2)
    net = UNet(NetSpec((1, 8, 8), 1, num_classes=num_classes), config)
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d) and not module.weight.any():
            torch.nn.init.normal_(module.weight, std=0.1)
    return net


def make_method(net, num_classes: int, **options) -> GaussianDiffusion:
    config = from_dict(
        GaussianConfig, {"timesteps": 40, "ode_rtol": 1e-4, "ode_atol": 1e-4, **options}, "method"
    )
    return GaussianDiffusion(
        net, config, event_shape=(1, 8, 8), levels=17, value_range=1.0, num_classes=num_classes
    )


def draw(method: GaussianDiffusion, sampler: str, seed: int = 0, **options) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return method.sample(N, steps=STEPS, sampler=sampler, generator=g, **options).x


class ClassGaussians:
    r"""Exact eps for images of class c drawn from N(m_c, s^2 I), the null class from N(m_null, s^2 I):
    :math:`E[\epsilon|x_t] = \sigma(x_t - \alpha m)/(\alpha^2 s^2 + \sigma^2)` (for a method
    without input scaling). A smooth, contracting probability flow, so that every sampler (the
    adaptive ODE solver included) is well conditioned and equal fields give equal samples; a random
    U-Net's flow amplifies float rounding too much for such comparisons."""

    def __init__(self, std: float = 0.3) -> None:
        g = torch.Generator().manual_seed(1)
        self.process, self.std = VPProcess(SCHEDULES.get("linear")()), std
        self.means = torch.rand(11, 1, 8, 8, generator=g, dtype=torch.float64) - 0.5  # row 10: null

    def __call__(self, x, t, cond=None):
        alpha, sigma = (c[:, None, None, None] for c in self.process.alpha_sigma(t.double()))
        idx = torch.full((len(x),), 10) if cond is None else torch.where(cond == NULL_LABEL, 10, cond)
        m = self.means[idx]
        return (sigma * (x.double() - alpha * m) / (alpha**2 * self.std**2 + sigma**2)).to(x.dtype)


@pytest.fixture(scope="module")
def conditional():
    return make_method(ClassGaussians(), 10, input_scaling=False)


def unconditional_method(net) -> GaussianDiffusion:
    """An unconditional method over ``net``, otherwise configured as ``conditional``."""
    return make_method(net, 0, input_scaling=False)


LABELS = torch.tensor([0, 3, 3, 7, 9, 1])


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_guidance_scale_one_is_the_conditional_model(conditional, sampler):
    """Scale 1 + 1e-6 runs the guided path (conditional and null evaluations in one batch,
    eps_u + w (eps_c - eps_u)); it matches the conditional model, i.e. the same network with the
    labels fixed inside an unconditional method."""
    net = conditional.net
    plain = draw(unconditional_method(lambda x, t, cond: net(x, t, LABELS)), sampler)
    assert torch.equal(draw(conditional, sampler, cond=LABELS), plain)
    guided = draw(conditional, sampler, cond=LABELS, guidance_scale=1 + 1e-6)
    assert torch.allclose(guided, plain, atol=1e-4)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_null_class_is_the_unconditional_model(conditional, sampler):
    """All labels -1: eps_u + w (eps_u - eps_u) = eps_u for any scale; also scale 0 with real labels."""
    net = conditional.net
    unconditional = draw(unconditional_method(lambda x, t, cond: net(x, t, None)), sampler)
    null = torch.full((N,), NULL_LABEL)
    assert torch.equal(draw(conditional, sampler), unconditional)  # cond=None: the null class
    assert torch.allclose(draw(conditional, sampler, cond=null, guidance_scale=3.0), unconditional, atol=1e-4)
    assert torch.allclose(
        draw(conditional, sampler, cond=LABELS, guidance_scale=0.0), unconditional, atol=1e-4
    )
    assert not torch.allclose(
        draw(conditional, sampler, cond=LABELS, guidance_scale=3.0), unconditional, atol=1e-2
    )


def test_guided_denoiser_is_the_linear_combination(conditional):
    """eps_w = eps_u + w (eps_c - eps_u), checked against separate network calls."""
    denoiser = conditional.denoiser
    g = torch.Generator().manual_seed(3)
    x = torch.randn(N, 1, 8, 8, generator=g)
    t = torch.rand(N, generator=g, dtype=torch.float64) * 0.9 + 0.05
    eps_c = denoiser(x, t, LABELS).eps
    eps_u = denoiser(x, t, torch.full((N,), NULL_LABEL)).eps
    for w in (0.0, 0.5, 2.0, 4.0):
        assert torch.allclose(
            denoiser(x, t, LABELS, guidance_scale=w).eps, eps_u + w * (eps_c - eps_u), atol=1e-5
        )


def test_label_dropout_rate():
    """cond_drop_prob = 0.3 hands the null label to the network for 30 % of the training rows."""
    seen = []
    net = random_unet(10)

    def recording(x, t, cond):
        seen.append(cond.clone())
        return net(x, t, cond)

    method = make_method(recording, 10, cond_drop_prob=0.3)  # a U-Net, as in training
    x, cond = build_digits(DigitsConfig(labels=True)).split("test")
    torch.manual_seed(0)
    for _ in range(5):
        method.loss(Batch(x, cond))
    labels = torch.cat(seen)
    dropped = labels == NULL_LABEL
    assert abs(float(dropped.float().mean()) - 0.3) < 0.03  # 1,820 rows: 3 standard errors ~ 0.032
    assert torch.equal(labels[~dropped], cond.repeat(5)[~dropped])


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_inpainting_keeps_known_pixels(sampler):
    x, _ = build_digits(DigitsConfig()).split("test")
    known = x[:N]
    mask = torch.zeros_like(known, dtype=torch.bool)
    mask[..., :4] = True  # left half known
    mask[0] = True  # one image fully known
    method = make_method(random_unet(10), 10, ode_rtol=1e-2, ode_atol=1e-2)  # only known pixels matter
    for options in ({}, {"cond": LABELS, "guidance_scale": 2.0}):
        out = draw(method, sampler, known=known, known_mask=mask, **options)
        assert torch.equal(out[mask], known[mask])
        assert not torch.equal(out[~mask], known[~mask])
    with pytest.raises(ValueError, match="bool"):
        draw(method, sampler, known=known, known_mask=mask.float())
