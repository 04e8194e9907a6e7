r"""A small U-Net for images: ``net(x_t, t, cond)`` with ``x_t`` (B, C, H, W) -> (B, out, H, W).

The architecture of DDPM (Ho et al. 2020, App. B) as refined by Dhariwal & Nichol 2021 (Sec. 3),
scaled down to train on 8x8 and 28x28 images on a CPU:

- a 3x3 input convolution, then one *level* per entry of ``channel_mult``, each with
  ``num_res_blocks`` residual blocks at ``channels * mult`` channels, and a stride-2 downsampling
  between levels; a middle block (residual, attention, residual); the mirror-image decoder with
  skip connections from every encoder stage, nearest-neighbour upsampling; GroupNorm, SiLU and a
  zero-initialized 3x3 output convolution;
- residual blocks (GroupNorm, SiLU, 3x3 conv) conditioned on the time (and class) embedding by an
  adaptive scale and shift of the second GroupNorm (``use_scale_shift_norm``, Dhariwal & Nichol
  2021, Sec. 3), with zero-initialized last convolutions so that every block starts as the
  identity;
- multi-head self-attention at the resolutions listed in ``attention_resolutions``;
- the time embedding is :func:`~discodiff.nets.base.timestep_embedding` followed by a two-layer
  MLP; a class-conditional network adds a :class:`~discodiff.nets.base.LabelEmbedding` (with its
  null class, label -1) to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import ConfigError
from .base import NETS, LabelEmbedding, NetSpec, timestep_embedding


@dataclass
class UNetConfig:
    """``net: {name: unet, channels: 32, channel_mult: [1, 2, 2], attention_resolutions: [7]}``."""

    channels: int = 32  # channels at the first level; level i has channels * channel_mult[i]
    channel_mult: tuple[int, ...] = (1, 2, 2)  # one entry per resolution level
    num_res_blocks: int = 2  # residual blocks per level in the encoder (decoder: one more)
    attention_resolutions: tuple[int, ...] = ()  # spatial sizes (height) with self-attention
    num_heads: int = 4  # attention heads (each level's channels must be divisible by it)
    groups: int = 8  # GroupNorm groups (every level's channels must be divisible by it)
    dropout: float = 0.0  # dropout inside the residual blocks
    middle_attention: bool = True  # self-attention in the middle block

    def __post_init__(self) -> None:
        if self.channels < 1 or self.num_res_blocks < 1 or self.num_heads < 1 or self.groups < 1:
            raise ValueError("unet needs channels, num_res_blocks, num_heads and groups all >= 1")
        if not self.channel_mult or any(m < 1 for m in self.channel_mult):
            raise ValueError(
                f"channel_mult must be a non-empty list of integers >= 1, got {self.channel_mult}"
            )
        for m in self.channel_mult:
            width = self.channels * m
            if width % self.groups or width % self.num_heads:
                raise ValueError(
                    f"unet level width channels*mult = {width} must be divisible by groups "
                    f"({self.groups}) and num_heads ({self.num_heads})"
                )
        if any(r < 1 for r in self.attention_resolutions):
            raise ValueError(
                f"attention_resolutions must be positive sizes, got {self.attention_resolutions}"
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


def _zero(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters (so the residual branch it ends starts at 0)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    r"""``skip(h) + conv(drop(act(GN(conv(act(GN(h)))) (1 + scale) + shift)))`` with (scale, shift)
    a linear map of the embedding; ``skip`` is a 1x1 convolution when the widths differ."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, *, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1) each
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions, residual, zero-initialized output."""

    def __init__(self, channels: int, *, heads: int, groups: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, 3, self.heads, C // self.heads, H * W)
        q, k, v = qkv.transpose(-1, -2).unbind(dim=1)  # (B, heads, HW, C/heads) each
        h = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, C/heads)
        h = h.transpose(-1, -2).reshape(B, C, H, W)
        return x + self.proj(h)


class Downsample(nn.Module):
    """Stride-2 3x3 convolution: (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 convolution: (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Stage(nn.Sequential):
    """A residual block optionally followed by attention (or a resampling layer), all given ``emb``."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        for layer in self:
            x = layer(x, emb)
        return x


class UNet(nn.Module):
    """``net(x_t, t, cond)``: (B, C, H, W) float -> (B, spec.out_channels, H, W); see the module doc."""

    def __init__(self, spec: NetSpec, config: UNetConfig) -> None:
        super().__init__()
        c_in, height, width = _check_spec(spec, config)
        ch, groups, heads = config.channels, config.groups, config.num_heads
        emb_dim = 4 * ch
        self.time_dim = ch
        self.time = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label = LabelEmbedding(spec.num_classes, emb_dim) if spec.num_classes > 0 else None

        def res(a: int, b: int) -> ResBlock:
            return ResBlock(a, b, emb_dim, groups=groups, dropout=config.dropout)

        def stage(a: int, b: int, size: int) -> Stage:
            attn = size in config.attention_resolutions
            return Stage(res(a, b), *([SelfAttention(b, heads=heads, groups=groups)] if attn else []))

        self.inp = nn.Conv2d(c_in, ch, 3, padding=1)
        self.down = nn.ModuleList()
        skips, cur, size = [ch], ch, height
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.num_res_blocks):
                self.down.append(stage(cur, ch * mult, size))
                cur = ch * mult
                skips.append(cur)
            if level + 1 < len(config.channel_mult):
                self.down.append(Stage(Downsample(cur)))
                skips.append(cur)
                size //= 2
        middle = [
            res(cur, cur),
            *([SelfAttention(cur, heads=heads, groups=groups)] if config.middle_attention else []),
        ]
        self.middle = Stage(*middle, res(cur, cur))
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            for i in range(config.num_res_blocks + 1):
                self.up.append(stage(cur + skips.pop(), ch * mult, size))
                cur = ch * mult
                if level > 0 and i == config.num_res_blocks:
                    self.up[-1].append(Upsample(cur))
                    size *= 2
        self.out = nn.Sequential(
            nn.GroupNorm(groups, cur), nn.SiLU(), _zero(nn.Conv2d(cur, spec.out_channels, 3, padding=1))
        )
        self.event_shape = (c_in, height, width)

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Tensor:
        if tuple(x.shape[1:]) != self.event_shape or not x.is_floating_point():
            raise ValueError(
                f"unet expects float input (B, {', '.join(map(str, self.event_shape))}), "
                f"got {x.dtype} {tuple(x.shape)}"
            )
        emb = self.time(timestep_embedding(t, self.time_dim).to(x.dtype))
        if self.label is not None:
            emb = emb + self.label(cond, x.shape[0], x.device)
        h = self.inp(x)
        hs = [h]
        for stage in self.down:
            h = stage(h, emb)
            hs.append(h)
        h = self.middle(h, emb)
        for stage in self.up:
            h = stage(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)


def _check_spec(spec: NetSpec, config: UNetConfig) -> tuple[int, int, int]:
    """(C, H, W) of the input, after checking that the U-Net can take it."""
    if spec.input_vocab is not None or len(spec.event_shape) != 3:
        raise ConfigError(
            f"net 'unet' takes continuous images (event shape (C, H, W)); got event shape {spec.event_shape}"
            + (" of tokens" if spec.input_vocab is not None else "")
        )
    c_in, height, width = spec.event_shape
    factor = 2 ** (len(config.channel_mult) - 1)
    if height % factor or width % factor:
        raise ConfigError(
            f"net 'unet': image size {height}x{width} must be divisible by {factor} "
            f"(2^(len(channel_mult) - 1) for channel_mult={list(config.channel_mult)}); "
            "use fewer levels or pad the images"
        )
    sizes = {height // 2**i for i in range(len(config.channel_mult))}
    unused = sorted(set(config.attention_resolutions) - sizes)
    if unused:
        raise ConfigError(
            f"net 'unet': attention_resolutions {unused} match no level; the levels of a {height}x{width} "
            f"image with channel_mult={list(config.channel_mult)} have heights {sorted(sizes, reverse=True)}"
        )
    return c_in, height, width


@NETS.register("unet", config=UNetConfig)
def build_unet(config: UNetConfig, spec: NetSpec) -> UNet:
    return UNet(spec, config)
