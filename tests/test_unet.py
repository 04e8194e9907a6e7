"""The image U-Net: shapes, zero-initialized output, class conditioning and its null class, errors."""

from __future__ import annotations

import pytest
import torch

from discodiff.config import ConfigError, from_dict
from discodiff.nets import NETS, NetSpec
from discodiff.nets.unet import UNet, UNetConfig

SMALL = {"channels": 16, "channel_mult": [1, 2], "num_res_blocks": 1, "groups": 4, "num_heads": 2}


def build(shape, out_channels=1, num_classes=0, **options) -> UNet:
    config = from_dict(UNetConfig, {**SMALL, **options}, "net")
    return NETS.get("unet")(config, NetSpec(shape, out_channels, num_classes=num_classes))


def randomize_output(net: UNet, seed: int = 0) -> UNet:
    """Every residual branch and the output start at zero (an untrained U-Net is a fixed linear
    map that ignores t and labels); give those layers weights, as training would."""
    g = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d) and not module.weight.any():
            for p in module.parameters():
                p.data = torch.randn(p.shape, generator=g) * 0.1
    return net


@pytest.mark.parametrize(
    ("shape", "options"),
    [
        ((1, 8, 8), {}),
        ((1, 8, 8), {"channel_mult": [1, 2, 2], "attention_resolutions": [4]}),
        ((1, 28, 28), {"attention_resolutions": [14]}),
        ((3, 16, 12), {"channel_mult": [1, 1, 2], "attention_resolutions": [8, 4]}),
    ],
)
def test_shapes_and_zero_init_output(shape, options):
    net = build(shape, out_channels=2, **options)
    x = torch.randn(3, *shape)
    out = net(x, torch.rand(3))
    assert out.shape == (3, 2, *shape[1:])
    assert torch.equal(out, torch.zeros_like(out))  # zero-initialized output convolution
    out.sum().backward()  # the zero output layer still receives gradients
    assert net.out[-1].weight.grad.abs().sum() > 0


def test_time_and_input_change_the_output():
    net = randomize_output(build((1, 8, 8)))
    x = torch.randn(2, 1, 8, 8)
    t = torch.tensor([0.1, 0.1])
    base = net(x, t)
    assert not torch.allclose(base, net(x, torch.tensor([0.9, 0.9])))
    assert not torch.allclose(base, net(x + 0.5, t))
    # examples do not interact (GroupNorm, not BatchNorm); convolution kernels may differ by batch
    # size in the last float32 bits, which a BatchNorm's O(1) coupling would far exceed
    assert torch.allclose(net(x[:1], t[:1]), base[:1], atol=1e-4)


def test_class_conditioning_and_null_class():
    net = randomize_output(build((1, 8, 8), num_classes=10))
    x = torch.randn(4, 1, 8, 8).repeat(2, 1, 1, 1)
    t = torch.full((8,), 0.3)
    out = net(x, t, torch.tensor([0, 1, 2, 3, 4, 5, 6, 7]))
    assert not torch.allclose(out[:4], out[4:])  # labels change the output
    null = net(x[:4], t[:4], torch.full((4,), -1))
    assert torch.equal(null, net(x[:4], t[:4], None))  # cond=None is the null class
    assert not torch.allclose(null, out[:4])
    with pytest.raises(ValueError, match="out of range"):
        net(x[:4], t[:4], torch.tensor([0, 1, 10, 3]))


def test_unconditional_net_ignores_labels():
    net = randomize_output(build((1, 8, 8)))
    x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    assert torch.equal(net(x, t, torch.tensor([1, 2])), net(x, t, None))


def test_clear_errors():
    with pytest.raises(ValueError, match="divisible by 8"):
        build((1, 28, 28), channel_mult=[1, 2, 2, 2])
    with pytest.raises(ValueError, match="match no level"):
        build((1, 8, 8), attention_resolutions=[7])
    with pytest.raises(ValueError, match=r"event shape \(C, H, W\)"):
        build((64,))
    with pytest.raises(ValueError, match="tokens"):
        NETS.get("unet")(from_dict(UNetConfig, SMALL), NetSpec((1, 8, 8), 1, input_vocab=17))
    with pytest.raises(ConfigError, match="divisible by groups"):
        from_dict(UNetConfig, {"channels": 12, "groups": 8}, "net")
    with pytest.raises(ConfigError, match="channel_mult"):
        from_dict(UNetConfig, {"channel_mult": []}, "net")
    net = build((1, 8, 8))
    with pytest.raises(ValueError, match=r"expects float input \(B, 1, 8, 8\)"):
        net(torch.randn(2, 1, 7, 7), torch.rand(2))
