"""Checkpoints: safetensors for tensors, JSON for everything else, written atomically.

A checkpoint is a directory ``checkpoints/step_NNNNNNNN/`` holding ``tensors.safetensors`` (model
weights ``model.*``, EMA weights ``ema.*``, optimizer state ``optim.*``, RNG and data-stream
states ``rng.*`` / ``stream.*``) and ``state.json`` (step, optimizer hyper-parameters, the SHA-256
of the tensor file). Nothing is ever unpickled.

Saving (:func:`save_checkpoint`) writes everything into ``.tmp-step_NNNNNNNN-<pid>/`` and the new
pointer into ``.latest.tmp-<pid>``, so that a full disk fails before anything is replaced; then
it renames the directory into place, and the pointer over ``checkpoints/latest``, the commit
point; a step directory it replaces is first moved aside (and ``latest`` pointed away from it), and
deleted only after the commit. ``latest`` therefore never names a missing directory.

Loading (:func:`load_newest`) reads the checkpoint ``latest`` names; when it is missing or damaged
(truncated, flipped bytes, bad ``state.json``, non-finite weights) it falls back to the newest
intact older one, with one warning naming both. ``latest`` must name a ``step_NNNNNNNN`` directory
of the same ``checkpoints/`` folder: anything else (``../``, an absolute path) is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from ..errors import CheckpointError
from ..utils import format_bytes
from .optim_state import optimizer_from_tensors, optimizer_to_tensors

FORMAT_VERSION = 1
STEP_NAME = re.compile(r"step_(\d{8,})")
"""Checkpoint directory names: ``step_`` and the step, zero-padded to at least 8 digits."""
TEMPORARY = (".tmp-", ".old-", ".latest.tmp")
"""Prefixes of a save's temporary files; any left when a writer starts belong to a dead one."""
HEADER_ALLOWANCE = 1 << 20
"""Bytes allowed beyond the raw tensor bytes for the safetensors header and state.json."""

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CheckpointWarning",
    "latest_checkpoint",
    "load_checkpoint",
    "load_newest",
    "optimizer_from_tensors",
    "optimizer_to_tensors",
    "save_checkpoint",
]


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was skipped, or leftovers of an interrupted save were removed."""


@dataclass
class Checkpoint:
    """What a checkpoint holds: named tensor groups and JSON state."""

    step: int
    tensors: dict[str, dict[str, Tensor]]  # group -> name -> tensor
    state: dict

    def group(self, name: str) -> dict[str, Tensor]:
        return self.tensors.get(name, {})


def step_name(step: int) -> str:
    return f"step_{step:08d}"


def step_dirs(root: Path) -> list[Path]:
    """The checkpoint directories under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if STEP_NAME.fullmatch(p.name) and p.is_dir() and not p.is_symlink()]
    return sorted(found, key=lambda p: int(p.name[5:]))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_text(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(root: Path, ckpt: Checkpoint, *, keep: int) -> Path:
    """Write ``ckpt`` under ``root`` (see the module docstring); keep the ``keep`` most recent
    checkpoints up to this step and drop any later ones (an abandoned continuation); return its
    directory. A failed write raises :class:`CheckpointError` saying what failed and how much
    space it needed, and leaves the previous checkpoints and ``latest`` untouched."""
    root.mkdir(parents=True, exist_ok=True)
    name = step_name(ckpt.step)
    final, tmp = root / name, root / f".tmp-{name}-{os.getpid()}"
    pointer_tmp = root / f".latest.tmp-{os.getpid()}"
    flat = {
        f"{group}.{key}": t.detach().cpu().contiguous().clone()
        for group, named in ckpt.tensors.items()
        for key, t in named.items()
    }
    needed = sum(t.numel() * t.element_size() for t in flat.values()) + HEADER_ALLOWANCE
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        tensor_file = tmp / "tensors.safetensors"
        save_file(flat, str(tensor_file))
        state = {"format": FORMAT_VERSION, "step": ckpt.step, "sha256": _sha256(tensor_file), **ckpt.state}
        _write_text(tmp / "state.json", json.dumps(state, indent=1))
        _fsync_dir(tmp)
        _write_text(pointer_tmp, name + "\n")
    except (OSError, SafetensorError) as err:  # safetensors reports a full disk as SafetensorError
        shutil.rmtree(tmp, ignore_errors=True)
        pointer_tmp.unlink(missing_ok=True)
        raise CheckpointError(_save_failed(root, name, err, needed)) from None
    try:
        retired = _move_aside(root, final) if final.exists() else None
        os.replace(tmp, final)
        os.replace(pointer_tmp, root / "latest")
        _fsync_dir(root)
    except OSError as err:
        raise CheckpointError(f"could not commit checkpoint {name} in {root}: {err}") from None
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
    kept = [p for p in step_dirs(root) if int(p.name[5:]) <= ckpt.step]
    later = [p for p in step_dirs(root) if int(p.name[5:]) > ckpt.step]
    for p in kept[:-keep] + later:
        shutil.rmtree(p, ignore_errors=True)
    return final


def _save_failed(root: Path, name: str, err: Exception, needed: int) -> str:
    try:
        free = f", {format_bytes(shutil.disk_usage(root).free)} free"
    except OSError:
        free = ""
    try:
        previous = read_latest(root)
    except CheckpointError:
        previous = None
    kept = f"the previous checkpoint {previous} is intact" if previous else "no earlier checkpoint exists"
    reason = getattr(err, "strerror", None) or err
    return (
        f"could not write checkpoint {name} in {root}: {reason} (it needs about "
        f"{format_bytes(needed)}{free}); nothing was replaced and {kept}. Free some space (or set "
        "train.keep_checkpoints lower) and continue with --resume"
    )


def _move_aside(root: Path, final: Path) -> Path:
    """Rename a step directory about to be rewritten out of the way; first point ``latest`` at the
    newest older checkpoint (or remove it) if it names this one, so it never names a gap."""
    pointer = root / "latest"
    if read_latest(root) == final.name:
        older = [p for p in step_dirs(root) if int(p.name[5:]) < int(final.name[5:])]
        if older:
            set_latest(root, older[-1])
        else:
            os.unlink(pointer)
            _fsync_dir(root)
    retired = root / f".old-{final.name}-{os.getpid()}"
    shutil.rmtree(retired, ignore_errors=True)
    os.replace(final, retired)
    return retired


def set_latest(root: Path, path: Path) -> None:
    """Point ``latest`` at the checkpoint directory ``path`` (atomically)."""
    tmp = root / f".latest.tmp-{os.getpid()}-set"  # not the name save_checkpoint has in use
    _write_text(tmp, path.name + "\n")
    os.replace(tmp, root / "latest")
    _fsync_dir(root)


def remove_temporary(root: Path) -> list[tuple[Path, int]]:
    """Delete what interrupted saves left under ``root`` (call only as the run's one writer);
    returns each removed path and its size in bytes."""
    removed = []
    for p in sorted(root.iterdir()) if root.is_dir() else []:
        if p.name.startswith(TEMPORARY):
            size = (
                sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size
            )
            shutil.rmtree(p) if p.is_dir() else p.unlink()
            removed.append((p, size))
    return removed


def read_latest(root: Path) -> str | None:
    """The directory name ``root/latest`` holds (``None`` without the file); it must be a
    ``step_NNNNNNNN`` name, so that it can only name a checkpoint of this run."""
    pointer = root / "latest"
    if not pointer.is_file():
        return None
    name = pointer.read_text(errors="replace").strip()
    if not STEP_NAME.fullmatch(name) or (root / name).is_symlink():
        raise CheckpointError(
            f"{pointer} holds {name[:80]!r}, which is not a checkpoint of this run: it must name a "
            f"step_NNNNNNNN directory inside {root} (not a link); fix or delete it"
        )
    return name


def latest_checkpoint(root: Path) -> Path | None:
    """The directory ``root/latest`` names, or ``None`` when there is no checkpoint."""
    name = read_latest(root)
    if name is None:
        return None
    path = root / name
    if not path.is_dir():
        raise CheckpointError(f"{root / 'latest'} names {name}, which does not exist")
    return path


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint directory, verifying its checksum; clear errors when corrupted."""
    state_file, tensor_file = path / "state.json", path / "tensors.safetensors"
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} does not exist")
    for f in (state_file, tensor_file):
        if not f.is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {f.name} is missing")
    try:
        state = json.loads(state_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"checkpoint {path} is corrupted: state.json is not valid JSON ({err})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"checkpoint {path} has format {found!r}, expected {FORMAT_VERSION}")
    if _sha256(tensor_file) != state.get("sha256"):
        raise CheckpointError(f"checkpoint {path} is corrupted: tensors.safetensors fails its SHA-256 check")
    if not isinstance(state.get("step"), int):
        raise CheckpointError(f"checkpoint {path} is corrupted: state.json has no integer 'step'")
    try:
        flat = load_file(str(tensor_file))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupted: cannot read tensors ({err})") from None
    tensors: dict[str, dict[str, Tensor]] = {}
    for key, t in flat.items():
        group, _, name = key.partition(".")
        tensors.setdefault(group, {})[name] = t
    for group in ("model", "ema"):
        for key, t in tensors.get(group, {}).items():
            if t.is_floating_point() and not torch.isfinite(t).all():
                bad = int((~torch.isfinite(t)).sum())
                raise CheckpointError(
                    f"checkpoint {path} holds non-finite weights: {group}.{key} has {bad} NaN or "
                    f"infinite value(s) of {t.numel()}"
                )
    return Checkpoint(int(state["step"]), tensors, state)


def load_newest(root: Path) -> tuple[Path, Checkpoint]:
    """The checkpoint ``latest`` names or, when that one is missing or damaged, the newest intact
    older one (one :class:`CheckpointWarning` names what was skipped and what is used). Without
    ``latest``, the newest intact step directory. Raises :class:`CheckpointError` when none is."""
    name, dirs = read_latest(root), step_dirs(root)
    if name is None and not dirs:
        raise CheckpointError(f"no checkpoint in {root} (nothing to resume or evaluate yet)")
    problems = [] if name is not None else [f"{root / 'latest'} is missing"]
    if name is not None:
        step = int(name[5:])
        candidates = [root / name] + [p for p in reversed(dirs) if int(p.name[5:]) < step]
    else:
        candidates = list(reversed(dirs))
    for path in candidates:
        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as err:
            problems.append(str(err))
            continue
        if problems:
            warnings.warn(
                f"{'; '.join(problems)}; using {path} (step {ckpt.step}), the newest intact checkpoint",
                CheckpointWarning,
                stacklevel=2,
            )
        return path, ckpt
    raise CheckpointError(f"no intact checkpoint in {root}: {'; '.join(problems)}")
