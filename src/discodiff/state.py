"""States: what a batch, a sample or a known part holds.

A *state* is either one tensor with the examples along dimension 0 (points, images, token
sequences) or a dataclass of such tensors registered with :func:`register_state` (a graph: node
categories, edge categories and a node mask). Registered dataclasses are torch pytree nodes, so
``torch.utils._pytree`` maps over their tensors; the helpers below are all the trainer, the
evaluator, the data streams and the CLI use, and they never look inside a state.

Why a registered dataclass and not ``tensordict``: the fields of a state are few and fixed per
data kind, a dataclass gives them names and types that a method reads as ``x.edges``, and the
pytree registration costs a dozen lines of torch's own API instead of another dependency whose
releases follow torch's.
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
import torch.utils._pytree as pytree
from torch import Tensor

from .errors import DataError

State = Any
"""A ``Tensor`` or a :func:`register_state` dataclass of tensors (examples along dimension 0)."""

S = TypeVar("S")


def register_state(cls: type[S]) -> type[S]:
    """Class decorator: make a dataclass of tensor fields a state (a torch pytree node).

    Every field must be a tensor with the examples along dimension 0 (``None`` is not allowed:
    helpers slice and concatenate every field)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"register_state needs a dataclass, got {cls!r}")
    names = [f.name for f in dataclasses.fields(cls)]

    def flatten(obj):
        return [getattr(obj, n) for n in names], names

    def unflatten(values, context):
        return cls(**dict(zip(context, values)))

    pytree.register_pytree_node(cls, flatten, unflatten)
    return cls


def leaves(state: State) -> list[Tensor]:
    """The tensors of a state, in field order."""
    return pytree.tree_leaves(state)


def map_state(fn: Callable[..., Tensor], state: State, *others: State) -> State:
    """Apply ``fn`` to each tensor (and the matching tensors of ``others``), keeping the structure."""
    return pytree.tree_map(fn, state, *others)


def batch_size(state: State) -> int:
    """Number of examples (the common length of dimension 0)."""
    sizes = {int(t.shape[0]) for t in leaves(state)}
    if len(sizes) != 1:
        raise ValueError(f"a state's tensors disagree on the number of examples: {sorted(sizes)}")
    return sizes.pop()


def shape_of(state: State) -> tuple[int, ...]:
    """The sample shape to ask ``Method.sample`` for: a tensor's full shape, or ``(N,)`` for a
    structured state."""
    return tuple(state.shape) if isinstance(state, Tensor) else (batch_size(state),)


def device_of(state: State) -> torch.device:
    return leaves(state)[0].device


def index(state: State, idx: Tensor | slice | int) -> State:
    """Rows ``idx`` of every tensor (an int keeps the batch dimension)."""
    if isinstance(idx, int):
        idx = slice(idx, idx + 1)
    return map_state(lambda t: t[idx], state)


def to_device(state: State, device: torch.device | str, *, non_blocking: bool = False) -> State:
    return map_state(lambda t: t.to(device, non_blocking=non_blocking), state)


def cat(states: Sequence[State]) -> State:
    """Concatenate states of one structure along the examples."""
    if not states:
        raise ValueError("cat needs at least one state")
    flat = [pytree.tree_flatten(s) for s in states]
    spec = flat[0][1]
    if any(f[1] != spec for f in flat[1:]):
        raise ValueError("cat needs states of one structure")
    columns = zip(*(f[0] for f in flat))
    return pytree.tree_unflatten([torch.cat(list(c)) for c in columns], spec)


def same_structure(a: State, b: State) -> bool:
    return pytree.tree_structure(a) == pytree.tree_structure(b)


def check_finite(state: State, what: str) -> None:
    """Refuse NaN or infinite values in any floating field, naming where they are."""
    for t in leaves(state):
        if t.is_floating_point() and not torch.isfinite(t).all():
            bad = (~torch.isfinite(t.reshape(len(t), -1))).any(dim=1).nonzero().flatten()
            raise DataError(
                f"{what} contains NaN or infinite values in {len(bad)} example(s), "
                f"first at index {int(bad[0])}"
            )


_DEFERRED = contextvars.ContextVar("discodiff_checks_deferred", default=False)


@contextmanager
def deferred_checks() -> Iterator[None]:
    """Inside this context, value checks that would read a tensor back from the device (one host
    synchronization each) are skipped: the caller checks elsewhere.

    The trainer enters it for its training step: it checks every batch on the host before the
    batch moves to the device (:func:`check_ids`, where reading values costs no synchronization)
    and reads whether the loss and gradient were finite at logging steps. Skipped inside: the
    id-range checks of tokens and the finiteness check of logits. Shape and dtype checks, which
    read no values, always run.
    """
    token = _DEFERRED.set(True)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


def checks_deferred() -> bool:
    """Whether the caller is inside :func:`deferred_checks`."""
    return _DEFERRED.get()


def host_uniform() -> float:
    """One U[0, 1) draw from torch's CPU generator: a host value on every device (no
    synchronization), the same in every micro-batch and rank of a step (the trainer restores the
    CPU generator between micro-batches, and every rank seeds it alike), saved with the run."""
    return float(torch.rand(()))


def check_id_range(x: Tensor, num_ids: int, what: str) -> None:
    """Refuse ids outside ``[0, num_ids)`` in the integer tensor ``x`` (a ``ValueError`` naming
    the range found); one host synchronization, skipped inside :func:`deferred_checks`."""
    if not _DEFERRED.get() and (found := _ids_outside(x, num_ids)):
        raise ValueError(f"{what} has ids in {found}; allowed: 0 .. {num_ids - 1}")


def _ids_outside(x: Tensor, num_ids: int) -> str | None:
    """``"[low, high]"`` of ``x`` if an id lies outside ``[0, num_ids)``, else ``None`` (one read)."""
    if x.numel() == 0:
        return None
    low, high = torch.stack(torch.aminmax(x)).tolist()
    return f"[{low}, {high}]" if low < 0 or high >= num_ids else None


def check_ids(state: State, info: Any, what: str) -> None:
    """Refuse category ids outside the data's vocabulary in any ``"tokens"`` field of ``state``
    (``info`` a :class:`~discodiff.data.base.DataInfo`), as a ``DataError`` naming ``what``.
    Meant for host tensors (the trainer's batch before it moves to the device)."""
    if isinstance(state, Tensor):
        limits = [(state, info.vocab_size)] if info.kind == "tokens" else []
    else:
        limits = [
            (getattr(state, name), field.vocab_size)
            for name, field in info.fields.items()
            if field.kind == "tokens" and isinstance(getattr(state, name, None), Tensor)
        ]
    for tensor, num_ids in limits:
        if num_ids is not None and (found := _ids_outside(tensor, num_ids)):
            raise DataError(f"{what} has category ids in {found}; allowed: 0 .. {num_ids - 1}")
