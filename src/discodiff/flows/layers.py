r"""Invertible layers of a discrete flow (Tran et al. 2019, Sec. 2.1-2.2) on one-hot states.

Every layer maps data-side states ``x`` to latent-side states ``z`` and back, both ``(B, L, K)``
floats with one-hot values (gradients through :mod:`.modular`'s straight-through estimator):
``to_latent`` is the direction of the likelihood, :math:`p(x) = p_{base}(f(x))` (a bijection of a
finite set has no Jacobian term), ``to_data`` the direction of sampling.

**Location-scale transform** (Tran et al. 2019, Eq. 4; :class:`LocationScale`), per position,
with :math:`\mu` and a unit :math:`\sigma` (``gcd(σ, K) = 1``) chosen by a network:

.. math::
    z = (x - \mu)\,\sigma^{-1} \bmod K \quad(\text{to latent}),\qquad
    x = \mu + \sigma z \bmod K \quad(\text{to data}).

- :class:`CouplingLayer` (bipartite, Sec. 2.2; RealNVP's coupling, Dinh et al. 2017): a fixed
  mask splits the positions; :math:`\mu, \sigma` of the transformed positions are functions of the
  others, which pass through unchanged. One network call in both directions.
- :class:`AutoregressiveLayer` (Sec. 2.1): a causal network gives :math:`\mu_d, \sigma_d` from the
  states before position d, on the latent side (``conditioning: latent``, Tran et al.'s
  discrete autoregressive flow: to data in one call, to latent serial, L calls) or on the data
  side (``conditioning: data``, the MAF-style orientation: to latent in one call, to data serial).
- :class:`Permutation`: reorders positions between layers (edward2's ``Reverse``, or a fixed
  random permutation).

Networks are called as ``net(inp, t, cond)`` with ``inp`` ``(B, L, K + 1)`` floats: the one-hot
state, with the extra channel marking a position the network must not see (a transformed
position of a coupling layer; the start position of a causal network). ``t`` is 0: a flow has no
time. Gradients flow through ``inp`` into earlier layers, as in the paper.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .modular import Modulus, mod_add, mod_sub, straight_through

Net = Callable[..., Tensor]


class LocationScale(nn.Module):
    r"""Network output -> :math:`(\mu, \sigma)` one-hots, and the transform both ways.

    Args:
        K: vocabulary size (the modulus).
        temperature: :math:`\tau` of the straight-through softmax.
        scale: learn :math:`\sigma` (``K`` more outputs, restricted to units); ``False``:
            location only (:math:`\sigma = 1`, always invertible).
    """

    def __init__(self, K: int, temperature: float, *, scale: bool) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.modulus = Modulus(K)
        self.K = K
        self.temperature = temperature
        self.scale = scale and self.modulus.num_units > 1

    @property
    def out_channels(self) -> int:
        return 2 * self.K if self.scale else self.K

    def params(self, out: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(B, L, out_channels)`` raw outputs -> straight-through :math:`\\mu` and unit :math:`\\sigma`."""
        out = out.float()
        # NaN would pick an arbitrary (even non-unit) id. Checked where autograd is off (sampling,
        # likelihood); in training the straight-through value itself is NaN (one-hot + soft - soft),
        # so the loss is, and the trainer's finiteness check stops without a host sync per step
        if not torch.is_grad_enabled() and not bool(torch.isfinite(out).all()):
            raise FloatingPointError("the discrete flow's network returned NaN or inf")
        if not self.scale:
            return straight_through(out, self.temperature), None
        loc, scale = out.split(self.K, dim=-1)  # backward: one cat (two slices: two zero-filled copies)
        loc = straight_through(loc, self.temperature)
        return loc, straight_through(self.modulus.restrict_to_units(scale), self.temperature)

    def to_latent(self, x: Tensor, loc: Tensor, scale: Tensor | None) -> Tensor:
        r""":math:`z = (x - \mu)\sigma^{-1}`."""
        z = mod_sub(x, loc)
        return z if scale is None else self.modulus.mul(z, self.modulus.invert(scale))

    def to_data(self, z: Tensor, loc: Tensor, scale: Tensor | None) -> Tensor:
        r""":math:`x = \mu + \sigma z`."""
        return mod_add(z if scale is None else self.modulus.mul(z, scale), loc)


class FlowLayer(nn.Module, ABC):
    """A bijection of one-hot states ``(B, L, K)``; see the module docstring."""

    @abstractmethod
    def to_latent(self, x: Tensor, cond: Tensor | None) -> Tensor:
        """Data side -> latent side."""

    @abstractmethod
    def to_data(self, z: Tensor, cond: Tensor | None) -> Tensor:
        """Latent side -> data side."""

    @abstractmethod
    def calls(self, direction: str, length: int) -> int:
        """Network calls of one pass ``to_latent`` or ``to_data`` over ``length`` positions."""


def _net_input(x: Tensor, hidden: Tensor) -> Tensor:
    """``(B, L, K)`` one-hots -> ``(B, L, K + 1)``: the extra channel set (and the state zeroed)
    where ``hidden`` ``(L,)`` or ``(B, L)`` is True."""
    padded = F.pad(x, (0, 1))
    marker = padded.new_zeros(padded.shape[-1])
    marker[-1] = 1.0
    return torch.where(hidden[..., None], marker, padded)


def _call(net: Net, inp: Tensor, cond: Tensor | None, **kw) -> Tensor:
    t = torch.zeros(inp.shape[0], device=inp.device)
    return net(inp, t, cond, **kw).float()


class CouplingLayer(FlowLayer):
    """Bipartite layer: positions with ``mask`` True are transformed given the others.

    Args:
        net: ``net((B, L, K + 1), t, cond) -> (B, L, out_channels)``, bidirectional.
        transform: the location-scale head.
        mask: ``(L,)`` bool, True where the layer transforms.
    """

    def __init__(self, net: Net, transform: LocationScale, mask: Tensor) -> None:
        super().__init__()
        if mask.dtype != torch.bool or mask.dim() != 1 or bool(mask.all()) or not bool(mask.any()):
            raise ValueError("a coupling mask must be a 1-d bool tensor with both True and False entries")
        self.net = net
        self.transform = transform
        self.register_buffer("mask", mask, persistent=False)

    def _params(self, given: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor | None]:
        return self.transform.params(_call(self.net, _net_input(given, self.mask), cond))

    def to_latent(self, x: Tensor, cond: Tensor | None) -> Tensor:
        z = self.transform.to_latent(x, *self._params(x, cond))
        return torch.where(self.mask[:, None], z, x)

    def to_data(self, z: Tensor, cond: Tensor | None) -> Tensor:
        x = self.transform.to_data(z, *self._params(z, cond))  # the untransformed part of z is x's
        return torch.where(self.mask[:, None], x, z)

    def calls(self, direction: str, length: int) -> int:
        return 1


class AutoregressiveLayer(FlowLayer):
    r"""Position d is transformed with :math:`\mu_d, \sigma_d` of the states before d.

    Args:
        net: a causal ``net((B, L, K + 1), t, cond) -> (B, L, out_channels)`` (position d sees
            inputs 0..d); its input is the conditioning side shifted right behind a start marker.
        transform: the location-scale head.
        conditioning: ``"latent"`` (Tran et al.: :math:`\mu_d(z_{<d})`) or ``"data"``
            (:math:`\mu_d(x_{<d})`).
    """

    def __init__(self, net: Net, transform: LocationScale, conditioning: str = "latent") -> None:
        super().__init__()
        if conditioning not in ("latent", "data"):
            raise ValueError(f"conditioning must be 'latent' or 'data', got {conditioning!r}")
        self.net = net
        self.transform = transform
        self.conditioning = conditioning

    def _parallel(self, side: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor | None]:
        r""":math:`\mu, \sigma` at every position from the whole conditioning side (one call)."""
        shifted = F.pad(side, (0, 0, 1, 0))[:, :-1]  # (B, L, K): position d holds side[d - 1]
        start = torch.zeros(side.shape[1], dtype=torch.bool, device=side.device)
        start[0] = True
        return self.transform.params(_call(self.net, _net_input(shifted, start), cond))

    def _serial(self, given: Tensor, cond: Tensor | None, step: Callable) -> Tensor:
        r"""Build the conditioning side position by position: ``new_d = step(given_d, μ_d, σ_d)``
        with :math:`\mu_d, \sigma_d` from ``new_{<d}``. Without gradients, a network with a KV
        cache is fed one position per call; otherwise the prefix is recomputed (O(L^2) positions)."""
        L = given.shape[1]
        cache = None
        if not torch.is_grad_enabled() and hasattr(self.net, "init_cache"):
            cache = self.net.init_cache(L)
        start = _net_input(given[:, :1], torch.ones(1, dtype=torch.bool, device=given.device))
        inputs, out = [start], []
        for d in range(L):
            if cache is not None:
                raw = _call(self.net, inputs[-1], cond, cache=cache)[:, -1:]
            else:
                raw = _call(self.net, torch.cat(inputs, dim=1), cond)[:, -1:]
            loc, scale = self.transform.params(raw)
            new = step(given[:, d : d + 1], loc, scale)
            out.append(new)
            inputs.append(F.pad(new, (0, 1)))
        return torch.cat(out, dim=1)

    def to_latent(self, x: Tensor, cond: Tensor | None) -> Tensor:
        if self.conditioning == "data":
            return self.transform.to_latent(x, *self._parallel(x, cond))
        return self._serial(x, cond, self.transform.to_latent)

    def to_data(self, z: Tensor, cond: Tensor | None) -> Tensor:
        if self.conditioning == "latent":
            return self.transform.to_data(z, *self._parallel(z, cond))
        return self._serial(z, cond, self.transform.to_data)

    def calls(self, direction: str, length: int) -> int:
        parallel = "to_data" if self.conditioning == "latent" else "to_latent"
        return 1 if direction == parallel else length


class Permutation(FlowLayer):
    """Reorders positions: ``z[:, i] = x[:, perm[i]]``.

    Args:
        perm: ``(L,)`` long, a permutation of ``0..L-1``.
    """

    def __init__(self, perm: Tensor) -> None:
        super().__init__()
        if not torch.equal(torch.sort(perm).values, torch.arange(len(perm))):
            raise ValueError("perm must be a permutation of 0..L-1")
        self.register_buffer("perm", perm, persistent=False)
        self.register_buffer("inverse", torch.argsort(perm), persistent=False)

    def to_latent(self, x: Tensor, cond: Tensor | None) -> Tensor:
        return x[:, self.perm]

    def to_data(self, z: Tensor, cond: Tensor | None) -> Tensor:
        return z[:, self.inverse]

    def calls(self, direction: str, length: int) -> int:
        return 0
