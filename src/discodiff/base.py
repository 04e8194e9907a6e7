"""The one interface every method implements, and the typed values that cross it.

A *method* bundles a forward process, a parameterization and a network. The trainer, the CLI and
the benchmarks see only :class:`Method`: ``loss(batch)``, ``nll(batch)`` and ``sample(...)``. They
never ask which method they hold.

Time convention (everywhere in discodiff): ``t`` in [0, 1], data at ``t = 0``, noise at ``t = 1``.
A discrete-time model with ``T`` steps lives on the grid ``t_i = i / T``, ``i = 0..T``.

Networks are called as ``net(x_t, t, cond)``:

- ``x_t``: the noisy state, ``(B, *event_shape)`` float for continuous data or ``(B, L)`` long for
  token data;
- ``t``: ``(B,)`` float in [0, 1];
- ``cond``: ``(B,)`` long class labels, or ``None`` for the unconditional model; a label of
  :data:`NULL_LABEL` (-1) selects the null class for that row.

Any ``nn.Module`` or plain callable with that signature plugs into every process; exact oracle
denoisers in the tests go through exactly this path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .registry import Registry

Network = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]
"""``net(x_t, t, cond) -> Tensor``; see the module docstring for shapes."""

NULL_LABEL = -1
"""A class label of -1 (or ``cond=None``) selects the unconditional, null-class model: label
dropout during training and classifier-free guidance at sampling both use it."""


@dataclass
class Batch:
    """A training or evaluation batch.

    Attributes:
        x: data, ``(B, *event_shape)`` float (continuous) or ``(B, L)`` long (tokens).
        cond: ``(B,)`` long class labels, or ``None``.
        rows: this process's slice of the global batch and the global batch size. Data-parallel
            ranks draw per-example randomness for the *global* batch and keep their rows, so that
            N processes reproduce one process exactly (see :meth:`randn`).
    """

    x: Tensor
    cond: Tensor | None = None
    rows: tuple[int, int] | None = None  # (offset, global_size)

    def __post_init__(self) -> None:
        if self.cond is not None and self.cond.shape[0] != self.x.shape[0]:
            raise ValueError(f"Batch.cond has {self.cond.shape[0]} labels for {self.x.shape[0]} examples")

    @property
    def size(self) -> int:
        return self.x.shape[0]

    def _draw(self, fn: Callable[..., Tensor], shape: Sequence[int], **kw) -> Tensor:
        offset, total = self.rows if self.rows is not None else (0, self.size)
        out = fn((total, *shape), device=self.x.device, **kw)
        return out[offset : offset + self.size]

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """Standard normal noise ``(B, *shape)`` drawn from torch's global generator."""
        return self._draw(torch.randn, shape, dtype=dtype)

    def rand(self, *shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """Uniform [0, 1) noise ``(B, *shape)`` drawn from torch's global generator."""
        return self._draw(torch.rand, shape, dtype=dtype)


@dataclass
class LossOutput:
    """What :meth:`Method.loss` returns.

    Attributes:
        loss: scalar to minimize (a mean over the batch).
        per_example: ``(B,)`` detached per-example loss values.
        metrics: extra detached scalars worth logging (name -> value).
    """

    loss: Tensor
    per_example: Tensor
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class NLLOutput:
    """What :meth:`Method.nll` returns.

    Attributes:
        nll: ``(B,)`` negative log-likelihood (or its upper bound) in nats per example.
        num_dims: ``(B,)`` number of dimensions (pixels, characters, coordinates) it covers; bits
            per dimension are ``nll / num_dims / ln 2``.
        terms: named ``(B,)`` components in nats (prior, diffusion, reconstruction, ...).
    """

    nll: Tensor
    num_dims: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class SampleOutput:
    """What :meth:`Method.sample` returns.

    Attributes:
        x: samples ``(N, *event_shape)``.
        trajectory: ``[(t, x_t), ...]`` from noise to data when asked for, else empty.
        nfe: number of network evaluations used (a guided evaluation counts as two).
    """

    x: Tensor
    trajectory: list[tuple[float, Tensor]] = field(default_factory=list)
    nfe: int = 0


METHODS: Registry[Callable[..., Method]] = Registry("method")
"""Method builders: ``build(config, data_info, net_factory) -> Method``; see :mod:`discodiff.build`."""


class Method(nn.Module, ABC):
    """A generative model with one interface: ``loss``, ``nll``, ``sample``.

    Subclasses declare the samplers and likelihood estimators they support, so callers can list
    them without branching on the method.
    """

    samplers: tuple[str, ...] = ()
    nll_estimators: tuple[str, ...] = ("bound",)
    event_shape: tuple[int, ...]

    @abstractmethod
    def loss(self, batch: Batch) -> LossOutput:
        """Training loss on a batch (uses ``batch.randn``/``batch.rand`` for its randomness)."""

    @abstractmethod
    def nll(self, batch: Batch, *, estimator: str = "bound") -> NLLOutput:
        """Per-example negative log-likelihood (an upper bound for ``"bound"``) in nats."""

    @abstractmethod
    def sample(
        self,
        num_or_shape: int | Sequence[int],
        *,
        steps: int | None = None,
        sampler: str | None = None,
        cond: Tensor | None = None,
        guidance_scale: float = 1.0,
        known: Tensor | None = None,
        known_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
        return_trajectory: bool = False,
        progress: bool = False,
    ) -> SampleOutput:
        """Draw samples.

        Args:
            num_or_shape: number of samples, or a full shape ``(N, *event_shape)``.
            steps: number of sampler steps (``None``: the method's default).
            sampler: sampler name, one of :attr:`samplers` (``None``: the default).
            cond: ``(N,)`` long class labels for conditional models.
            guidance_scale: classifier-free guidance scale; 1 means no guidance.
            known: ``(N, *event_shape)`` values to condition on (inpainting / infilling).
            known_mask: bool, same shape as ``known``; True where ``known`` is given.
            generator: the random generator to draw from.
            return_trajectory: also return intermediate states.
            progress: show a progress bar.
        """

    def check_sampler(self, sampler: str) -> None:
        if sampler not in self.samplers:
            raise ValueError(
                f"unknown sampler {sampler!r} for {type(self).__name__}; allowed: {', '.join(self.samplers)}"
            )

    def check_estimator(self, estimator: str) -> None:
        if estimator not in self.nll_estimators:
            raise ValueError(
                f"unknown likelihood estimator {estimator!r} for {type(self).__name__}; "
                f"allowed: {', '.join(self.nll_estimators)}"
            )

    def resolve_shape(self, num_or_shape: int | Sequence[int]) -> tuple[int, ...]:
        """``N`` -> ``(N, *event_shape)``; a full shape is checked against the event shape."""
        if isinstance(num_or_shape, int):
            if num_or_shape <= 0:
                raise ValueError(f"number of samples must be positive, got {num_or_shape}")
            return (num_or_shape, *self.event_shape)
        shape = tuple(int(s) for s in num_or_shape)
        if len(shape) != len(self.event_shape) + 1:
            raise ValueError(f"sample shape {shape} does not match the event shape {self.event_shape}")
        return shape

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")


def drop_labels(batch: Batch, drop_prob: float) -> Tensor | None:
    """Training labels for classifier-free guidance: each replaced by :data:`NULL_LABEL` with
    probability ``drop_prob`` (uniforms from ``batch.rand``, so data-parallel ranks agree)."""
    if batch.cond is None or drop_prob == 0:
        return batch.cond
    drop = batch.rand() < drop_prob
    return torch.where(drop, torch.full_like(batch.cond, NULL_LABEL), batch.cond)


def sample_labels(
    cond: Tensor | None,
    n: int,
    num_classes: int,
    device: torch.device,
    *,
    guidance_scale: float | None = None,
) -> Tensor | None:
    """Labels for ``n`` samples: ``cond`` checked and moved to ``device``, or the null label for a
    conditional model given none. With ``guidance_scale`` given, guidance (!= 1) without labels is
    refused."""
    if cond is None:
        if guidance_scale is not None and guidance_scale != 1.0:
            raise ValueError("guidance_scale != 1 needs class labels (cond)")
        return None if num_classes == 0 else torch.full((n,), NULL_LABEL, dtype=torch.long, device=device)
    if num_classes == 0:
        raise ValueError("this model is unconditional: cond must be None")
    if cond.shape != (n,) or cond.dtype != torch.long:
        raise ValueError(f"cond must be a long tensor of shape ({n},), got {cond.dtype} {tuple(cond.shape)}")
    return cond.to(device)


def check_known(
    known: Tensor | None, known_mask: Tensor | None, shape: Sequence[int]
) -> tuple[Tensor, Tensor] | None:
    """Validate an inpainting / infilling pair; return it or ``None`` when not given."""
    if known is None and known_mask is None:
        return None
    if known is None or known_mask is None:
        raise ValueError("known and known_mask must be given together")
    if tuple(known.shape) != tuple(shape) or tuple(known_mask.shape) != tuple(shape):
        raise ValueError(
            f"known {tuple(known.shape)} and known_mask {tuple(known_mask.shape)} must both have "
            f"the sample shape {tuple(shape)}"
        )
    if known_mask.dtype != torch.bool:
        raise ValueError(f"known_mask must be a bool tensor, got {known_mask.dtype}")
    return known, known_mask
