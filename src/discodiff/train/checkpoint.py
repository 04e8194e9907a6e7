"""Checkpoints: safetensors for tensors, JSON for everything else, written atomically.

A checkpoint is a directory ``checkpoints/step_NNNNNNNN/`` holding ``tensors.safetensors`` (model
weights ``model.*``, EMA weights ``ema.*``, optimizer state ``optim.*``, RNG and data-stream
states ``rng.*`` / ``stream.*``) and ``state.json`` (step, optimizer hyper-parameters, the SHA-256
of the tensor file). It is written into a temporary directory and renamed into place; the file
``checkpoints/latest`` then names it (replaced atomically). Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from ..errors import CheckpointError

FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """What a checkpoint holds: named tensor groups and JSON state."""

    step: int
    tensors: dict[str, dict[str, Tensor]]  # group -> name -> tensor
    state: dict

    def group(self, name: str) -> dict[str, Tensor]:
        return self.tensors.get(name, {})


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


def save_checkpoint(root: Path, ckpt: Checkpoint, *, keep: int) -> Path:
    """Write ``ckpt`` under ``root`` atomically; keep the ``keep`` most recent; return its dir."""
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{ckpt.step:08d}"
    final = root / name
    tmp = root / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    flat = {
        f"{group}.{key}": t.detach().cpu().contiguous().clone()
        for group, named in ckpt.tensors.items()
        for key, t in named.items()
    }
    tensor_file = tmp / "tensors.safetensors"
    save_file(flat, str(tensor_file))
    state = {"format": FORMAT_VERSION, "step": ckpt.step, "sha256": _sha256(tensor_file), **ckpt.state}
    with open(tmp / "state.json", "w") as f:
        json.dump(state, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    latest_tmp = root / ".latest.tmp"
    latest_tmp.write_text(name + "\n")
    os.replace(latest_tmp, root / "latest")
    _fsync_dir(root)
    old = sorted(p for p in root.glob("step_*") if p.is_dir())
    for p in old[:-keep]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    """The directory ``root/latest`` names, or ``None`` when there is no checkpoint."""
    pointer = root / "latest"
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    if not path.is_dir():
        raise CheckpointError(f"{pointer} names {path.name}, which does not exist")
    return path


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint directory, verifying its checksum; clear errors when corrupted."""
    state_file, tensor_file = path / "state.json", path / "tensors.safetensors"
    for f in (state_file, tensor_file):
        if not f.is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {f.name} is missing")
    try:
        state = json.loads(state_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"checkpoint {path} is corrupted: state.json is not valid JSON ({err})"
        ) from None
    if state.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format {state.get('format')!r}, expected {FORMAT_VERSION}"
        )
    if _sha256(tensor_file) != state.get("sha256"):
        raise CheckpointError(f"checkpoint {path} is corrupted: tensors.safetensors fails its SHA-256 check")
    try:
        flat = load_file(str(tensor_file))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"checkpoint {path} is corrupted: cannot read tensors ({err})") from None
    tensors: dict[str, dict[str, Tensor]] = {}
    for key, t in flat.items():
        group, _, name = key.partition(".")
        tensors.setdefault(group, {})[name] = t
    return Checkpoint(int(state["step"]), tensors, state)


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    """Split an optimizer's state dict into tensors (for safetensors) and JSON."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, Tensor):
                tensors[f"{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict) -> None:
    """Inverse of :func:`optimizer_to_tensors`."""
    state: dict[int, dict] = {}
    for key, t in tensors.items():
        idx, _, k = key.partition(".")
        state.setdefault(int(idx), {})[k] = t
    for key, v in meta["scalars"].items():
        idx, _, k = key.partition(".")
        state.setdefault(int(idx), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
