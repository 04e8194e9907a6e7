"""The one interface every method implements, and the typed values that cross it.

A *method* bundles a forward process, a parameterization and a network. The trainer, the CLI and
the benchmarks see only :class:`Method`: ``loss(batch)``, ``nll(batch)`` and ``sample(...)``. They
never ask which method they hold.

Time convention (everywhere in discodiff): ``t`` in [0, 1], data at ``t = 0``, noise at ``t = 1``.
A discrete-time model with ``T`` steps lives on the grid ``t_i = i / T``, ``i = 0..T``.

Networks are called as ``net(x_t, t, cond)``:

- ``x_t``: the noisy state, ``(B, *event_shape)`` float for continuous data, ``(B, L)`` long for
  token data, or a structured state (:mod:`discodiff.state`, e.g. a graph's nodes and edges);
- ``t``: ``(B,)`` float in [0, 1];
- ``cond``: ``(B,)`` long class labels, or ``None`` for the unconditional model; a label of
  :data:`NULL_LABEL` (-1) selects the null class for that row.

and return a state of the same structure (logits, noise, scores: what the method's
parameterization reads). Any ``nn.Module`` or plain callable with that signature plugs into every
process; exact oracle denoisers in the tests go through exactly this path.

Methods *declare* what callers need, so that no caller tests a method's name: the data
``representation`` they consume, their samplers (:class:`SamplerInfo`: network calls per step,
default and allowed steps, determinism), their likelihood estimators (:class:`EstimatorInfo`:
exact or a bound, Monte Carlo or not), their networks, and what ``known`` means for them
(``known_semantics``). ``sample`` is implemented once, here: it checks the request against the
declarations and hands a :class:`SampleRequest` to the method's ``generate``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from .declarations import EstimatorInfo, SampleRequest, SamplerInfo
from .errors import UsageError
from .registry import Registry
from .state import State, batch_size, device_of, leaves, same_structure

Network = Callable[[State, Tensor, "Tensor | None"], State]
"""``net(x_t, t, cond) -> state``; see the module docstring for shapes."""

Representation = Literal["continuous", "tokens", "graph"]
"""The data a method consumes: float tensors, token ids, or a graph state."""

KnownSemantics = Literal["exact", "replacement", "prefix", "none"]
"""What conditioning on ``known`` values means for a method: ``exact`` (samples from the model's
conditional, e.g. masked diffusion's carried-over tokens), ``replacement`` (known values are
re-imposed on the noisy state at every step, noised to the current time: an approximation),
``prefix`` (left-to-right decoding forced at the known positions: exact for a prefix), ``none``
(not supported)."""

NULL_LABEL = -1
"""A class label of -1 (or ``cond=None``) selects the unconditional, null-class model: label
dropout during training and classifier-free guidance at sampling both use it."""


@dataclass
class Batch:
    """A training or evaluation batch.

    Attributes:
        x: data, a state: ``(B, *event_shape)`` float (continuous), ``(B, L)`` long (tokens), or a
            structured state (:mod:`discodiff.state`).
        cond: ``(B,)`` long class labels, or ``None``.
        rows: this process's slice of the global batch and the global batch size. Data-parallel
            ranks draw per-example randomness for the *global* batch and keep their rows, so that
            N processes reproduce one process exactly (see :meth:`randn`).
    """

    x: State
    cond: Tensor | None = None
    rows: tuple[int, int] | None = None  # (offset, global_size)

    def __post_init__(self) -> None:
        if self.cond is not None and self.cond.shape[0] != self.size:
            raise ValueError(f"Batch.cond has {self.cond.shape[0]} labels for {self.size} examples")

    @property
    def size(self) -> int:
        return batch_size(self.x)

    def _draw(self, fn: Callable[..., Tensor], shape: Sequence[int], **kw) -> Tensor:
        offset, total = self.rows if self.rows is not None else (0, self.size)
        out = fn((total, *shape), device=device_of(self.x), **kw)
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
        metrics: extra detached scalars worth logging (name -> value): 0-dim tensors (or floats),
            left on the device so the training step needs no host synchronization; the trainer
            reads them at logging steps.
    """

    loss: Tensor
    per_example: Tensor
    metrics: dict[str, Tensor | float] = field(default_factory=dict)


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
        x: samples, a state with ``N`` examples (``(N, *event_shape)`` for tensor data).
        trajectory: ``[(t, x_t), ...]`` from noise to data when asked for, else empty.
        nfe: number of network evaluations used (a guided evaluation counts as two).
    """

    x: State
    trajectory: list[tuple[float, State]] = field(default_factory=list)
    nfe: int = 0


METHODS: Registry[Callable[..., Method]] = Registry("method")
"""Method builders: ``build(config, data_info, net_factory) -> Method``; see :mod:`discodiff.build`."""


class Method(nn.Module, ABC):
    """A generative model with one interface: ``loss``, ``nll``, ``sample``.

    Subclasses declare the samplers and likelihood estimators they support (names in
    :attr:`samplers` and :attr:`nll_estimators`, details through :meth:`sampler_info` and
    :meth:`estimator_info`), the data :attr:`representation` they consume and what
    :attr:`known_semantics` their conditioning has, so callers can list and compare them without
    branching on the method. They implement :meth:`generate`; :meth:`sample` is the same for all.
    """

    samplers: tuple[str, ...] = ()
    nll_estimators: tuple[str, ...] = ("bound",)
    representation: ClassVar[Representation] = "continuous"
    known_semantics: ClassVar[KnownSemantics] = "replacement"
    loss_label: ClassVar[str] = "training objective"  # what loss() returns, with its unit (plot axes)
    event_shape: tuple[int, ...]

    @abstractmethod
    def loss(self, batch: Batch) -> LossOutput:
        """Training loss on a batch (uses ``batch.randn``/``batch.rand`` for its randomness)."""

    @abstractmethod
    def nll(self, batch: Batch, *, estimator: str = "bound") -> NLLOutput:
        """Per-example negative log-likelihood (an upper bound for ``"bound"``) in nats."""

    # ---- declarations --------------------------------------------------------------------------

    @property
    def default_sampler(self) -> str:
        """The sampler used when none is named (the config's ``sampler`` where there is one)."""
        config = getattr(self, "config", None)
        name = getattr(config, "sampler", None)
        return name if name in self.samplers else self.samplers[0]

    def sampler_info(self, name: str) -> SamplerInfo:
        """What sampler ``name`` costs and allows (the default: one call per step, any steps)."""
        self.check_sampler(name)
        return SamplerInfo(name, nfe_per_step=1.0, default_steps=1)

    def estimator_info(self, name: str) -> EstimatorInfo:
        """Whether estimator ``name`` is exact and whether it is a Monte Carlo estimate (the
        default: a Monte Carlo bound)."""
        self.check_estimator(name)
        return EstimatorInfo(name, exact=False, monte_carlo=True)

    def networks(self) -> dict[str, nn.Module]:
        """The networks whose calls make up the cost of a step (for timing their share)."""
        net = getattr(self, "net", None)
        return {"net": net} if isinstance(net, nn.Module) else {}

    # ---- sampling ------------------------------------------------------------------------------

    def sample(
        self,
        num_or_shape: int | Sequence[int],
        *,
        steps: int | None = None,
        sampler: str | None = None,
        cond: Tensor | None = None,
        guidance_scale: float = 1.0,
        known: State | None = None,
        known_mask: State | None = None,
        generator: torch.Generator | None = None,
        return_trajectory: bool = False,
        progress: bool = False,
    ) -> SampleOutput:
        """Draw samples.

        Args:
            num_or_shape: number of samples, or a full shape ``(N, *event_shape)``.
            steps: number of sampler steps (``None``: the sampler's default).
            sampler: sampler name, one of :attr:`samplers` (``None``: :attr:`default_sampler`).
            cond: ``(N,)`` long class labels for conditional models.
            guidance_scale: classifier-free guidance scale; 1 means no guidance.
            known: a state of the sample's shape with values to condition on (inpainting /
                infilling; see :attr:`known_semantics`).
            known_mask: a bool state of the same structure; True where ``known`` is given.
            generator: the random generator to draw from.
            return_trajectory: also return intermediate states.
            progress: show a progress bar.
        """
        shape = self.resolve_shape(num_or_shape)
        sampler = self.default_sampler if sampler is None else sampler
        info = self.sampler_info(sampler)
        steps = info.default_steps if steps is None else steps
        info.check(steps)
        request = SampleRequest(
            shape=shape,
            steps=steps,
            sampler=sampler,
            cond=cond,
            guidance_scale=guidance_scale,
            known=known,
            known_mask=known_mask,
            generator=generator,
            return_trajectory=return_trajectory,
            progress=progress,
        )
        return self.generate(request)

    def generate(self, request: SampleRequest) -> SampleOutput:
        """Draw samples for a checked request (every method implements this)."""
        raise TypeError(f"{type(self).__name__} implements neither generate(request) nor sample(...)")

    def check_sampler(self, sampler: str) -> None:
        if sampler not in self.samplers:
            raise UsageError(
                f"unknown sampler {sampler!r} for {type(self).__name__}; allowed: {', '.join(self.samplers)}"
            )

    def check_estimator(self, estimator: str) -> None:
        if estimator not in self.nll_estimators:
            raise UsageError(
                f"unknown likelihood estimator {estimator!r} for {type(self).__name__}; "
                f"allowed: {', '.join(self.nll_estimators)}"
            )

    def resolve_shape(self, num_or_shape: int | Sequence[int]) -> tuple[int, ...]:
        """``N`` -> ``(N, *event_shape)``; a full shape is checked against the event shape."""
        if isinstance(num_or_shape, int):
            if num_or_shape <= 0:
                raise UsageError(f"number of samples must be positive, got {num_or_shape}")
            return (num_or_shape, *self.event_shape)
        shape = tuple(int(s) for s in num_or_shape)
        if len(shape) != len(self.event_shape) + 1:
            raise UsageError(f"sample shape {shape} does not match the event shape {self.event_shape}")
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
            raise UsageError("guidance_scale != 1 needs class labels (cond)")
        return None if num_classes == 0 else torch.full((n,), NULL_LABEL, dtype=torch.long, device=device)
    if num_classes == 0:
        raise UsageError("this model is unconditional: cond must be None")
    if cond.shape != (n,) or cond.dtype != torch.long:
        raise UsageError(f"cond must be a long tensor of shape ({n},), got {cond.dtype} {tuple(cond.shape)}")
    return cond.to(device)


def check_known(
    known: State | None, known_mask: State | None, shape: Sequence[int]
) -> tuple[State, State] | None:
    """Validate an inpainting / infilling pair; return it or ``None`` when not given.

    For tensor states both must have the sample ``shape``; for structured states they must have
    one structure, ``shape[0]`` examples, and each mask tensor the shape of its value tensor."""
    if known is None and known_mask is None:
        return None
    if known is None or known_mask is None:
        raise UsageError("known and known_mask must be given together")
    if isinstance(known, Tensor) and isinstance(known_mask, Tensor):
        if tuple(known.shape) != tuple(shape) or tuple(known_mask.shape) != tuple(shape):
            raise UsageError(
                f"known {tuple(known.shape)} and known_mask {tuple(known_mask.shape)} must both have "
                f"the sample shape {tuple(shape)}"
            )
    elif not same_structure(known, known_mask) or batch_size(known) != shape[0]:
        raise UsageError(f"known and known_mask must be states of one structure with {shape[0]} examples")
    for value, mask in zip(leaves(known), leaves(known_mask)):
        if mask.dtype != torch.bool:
            raise UsageError(f"known_mask must be a bool tensor, got {mask.dtype}")
        if mask.shape != value.shape:
            raise UsageError(
                f"known_mask {tuple(mask.shape)} must have the shape of known {tuple(value.shape)}"
            )
    return known, known_mask
