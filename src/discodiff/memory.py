"""Memory estimates made before allocating, so that absurd sizes (``net.hidden: 1000000000``,
``train.batch_size: 100000000000``, ``data.seq_len: 100000``) stop with one clear error instead of
dying in the allocator, or swapping for hours.

Two checks, each a lower bound of what a training step needs (so they refuse only what cannot fit):

- :func:`check_network_size`: the network is first built on PyTorch's ``meta`` device (shapes
  only, nothing allocated) and its parameters counted; weights (x 4 when training: gradients and
  AdamW's two moments, x 5 with an EMA copy) beyond the available memory are refused.
- :func:`check_training_memory`: a forward pass of ``method.loss`` on one training example records
  the bytes of every tensor autograd saves for the backward pass
  (``torch.autograd.graph.saved_tensors_hooks``; parameters and buffers excluded, and under bf16
  autocast an allowance for the weights' bf16 copies). All of it is alive at the end of a
  training step's forward pass, times the batch, beside the weights, the previous step's gradients
  and AdamW's moments. The probe stops as soon as its count exceeds the memory left per example,
  so it never allocates more than that. (What the forward pass saves but does not grow with the
  batch, such as RoPE tables, is counted per example; it is small beside the activations, so only
  a step within about 1% of the limit could be refused wrongly.)

Available memory: CUDA's free device memory, or on Linux ``MemAvailable`` of ``/proc/meminfo``
capped by a cgroup limit, plus the free memory glibc keeps in this process's heap; elsewhere no
check is made.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .allocator import free_heap_bytes
from .errors import ConfigError
from .state import device_of, to_device
from .utils import format_bytes


def available_memory(device: torch.device) -> tuple[int, str] | None:
    """Bytes free for a new allocation on ``device`` and where the figure comes from, or ``None``."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free, f"free on {device}"
    if device.type != "cpu":
        return None
    try:
        meminfo = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    kb = next(
        (int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemAvailable:")), None
    )
    if kb is None:
        return None
    available, where = kb * 1024, "MemAvailable"
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max" and int(limit) - used < available:
            available, where = max(int(limit) - used, 0), "left under the cgroup limit memory.max"
    except (OSError, ValueError):
        pass
    # plus what glibc keeps free in this process's heap (discodiff.allocator keeps freed memory)
    return available + free_heap_bytes(), f"available ({where}, plus this process's free heap)"


def parameter_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def check_network_size(build: Callable[[], nn.Module], what: str, options: object, *, copies: int) -> None:
    """Refuse a network whose ``copies`` x weights exceed the available CPU memory, counting
    its parameters on the ``meta`` device first; a builder that cannot run there is not checked
    (its errors come from the real build)."""
    try:
        with torch.device("meta"), torch.random.fork_rng(devices=[]):
            net = build()
    except Exception:
        return
    need = parameter_bytes(net) * copies
    avail = available_memory(torch.device("cpu"))
    if avail is None or need <= avail[0]:
        return
    count = sum(p.numel() for p in net.parameters())
    sizes = {k: v for k, v in vars(options).items() if isinstance(v, int) and not isinstance(v, bool)}
    largest = f" with {max(sizes, key=sizes.get)}={max(sizes.values())}" if sizes else ""
    held = "weights, gradients and optimizer state" if copies > 1 else "weights"
    raise ConfigError(
        f"{what}{largest} has {count:.3g} parameters, which need at least {format_bytes(need)} "
        f"({held}), more than the {format_bytes(avail[0])} of memory {avail[1]}; make the network smaller"
    )


class _ProbeFull(Exception):
    """The probe's saved tensors already prove the batch cannot fit."""


def _saved_bytes(method, batch, limit: float, precision: str) -> tuple[float, bool] | None:
    """Bytes autograd saves in ``method.loss(batch)`` (see the module docstring) and whether the
    count passed ``limit``; ``None`` when the loss fails for another reason (training reports it)."""
    skip = {t.untyped_storage().data_ptr() for t in [*method.parameters(), *method.buffers()]}
    seen: set[int] = set()
    total = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in skip and ptr not in seen:
            seen.add(ptr)
            total[0] += storage.nbytes()
            if total[0] > limit:
                raise _ProbeFull
        return t

    device = device_of(batch.x)
    buffers = {name: b.detach().clone() for name, b in method.named_buffers()}
    was_training = method.training
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.enable_grad():
            method.train()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                    method.loss(batch)
    except _ProbeFull:
        return total[0], True
    except (RuntimeError, MemoryError) as err:
        if total[0] > limit or "alloc" in str(err).lower() or isinstance(err, MemoryError):
            return max(total[0], limit), True
        return None
    except Exception:
        return None
    finally:
        method.train(was_training)
        with torch.no_grad():
            for name, b in method.named_buffers():
                if name in buffers:
                    b.copy_(buffers[name])
    return total[0], False


def check_training_memory(
    method, data, cfg, device: torch.device, *, world_size: int = 1, seed: int = 0
) -> None:
    """Refuse a training step that cannot fit in memory (see the module docstring): ``method`` is
    built on ``device``; ``cfg`` is the :class:`~discodiff.runconfig.TrainConfig`."""
    from .base import Batch

    avail = available_memory(device)
    if avail is None:
        return
    available, where = avail
    weights = sum(p.numel() * p.element_size() for p in method.parameters() if p.requires_grad)
    state = weights * (3 + (cfg.ema_decay > 0))  # gradients, AdamW's two moments, EMA
    batch = math.ceil(cfg.batch_size / world_size)
    casts = weights // 2 if cfg.precision == "bf16" else 0  # the weights' bf16 copies under autocast
    budget = max(available - state, 0)
    x, cond = data.train_stream(seed).next(1)
    probe = Batch(to_device(x, device), None if cond is None else cond.to(device), rows=(0, 1))
    counted = _saved_bytes(method, probe, casts + budget / batch, cfg.precision)
    if counted is None:
        return
    saved, full = counted
    if not full:
        return
    per_example = max(saved - casts, 0)
    need = state + batch * per_example
    fits = int(budget // per_example)
    hint = f"at most about {fits} examples per step fit"
    if data.info.kind == "tokens" and len(data.info.event_shape) == 1 and fits < batch:
        length = data.info.event_shape[0]
        hint += f", or sequences of about {int(length * budget / (batch * per_example))} positions at this "
        hint += f"batch size (data.seq_len is {length})"
    extra = " and EMA" if cfg.ema_decay > 0 else ""
    raise ConfigError(
        f"train.batch_size={cfg.batch_size}: one training step needs at least {format_bytes(need)} of "
        f"memory ({format_bytes(state)} for gradients, AdamW moments{extra}, plus at least "
        f"{format_bytes(per_example)} of activations per example), more than the {format_bytes(available)} "
        f"{where}; {hint}. Lower train.batch_size, the example size or the network"
    )
