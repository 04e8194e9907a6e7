"""Loading a trained model in Python, and inference bundles.

:func:`load` takes a run directory (the EMA weights of its newest intact checkpoint) or an
inference bundle written by :func:`export` (``discodiff export RUN_DIR OUT_DIR``)::

    OUT_DIR/
      model.safetensors   the method's weights (EMA unless exported with ema=False)
      config.json         the run's resolved config, the step, the weights' kind, version, commit
      data.json           what the method needs of its data: DataInfo, and the data's state (the
                          vocabulary of a text run, the mean and std of standardized arrays)

A bundle needs neither the training data nor the checkpoints; nothing in it is pickled.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import types
import typing
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .base import Method
from .data import DataInfo
from .errors import CheckpointError, UsageError

BUNDLE_FORMAT = "discodiff-bundle"
BUNDLE_VERSION = 1
MODEL_FILE, CONFIG_FILE, DATA_FILE = "model.safetensors", "config.json", "data.json"


def _info_to_json(info: DataInfo) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(info)))


def _value_from_json(tp, value):
    """Rebuild a value of type ``tp`` from its JSON form (tuples, nested dataclasses)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if value is None:
        return None
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(**{k: _value_from_json(hints[k], v) for k, v in value.items()})
    if origin is tuple:
        inner = args[0] if args else None
        return tuple(_value_from_json(inner, v) for v in value) if inner is not None else tuple(value)
    if origin is dict and len(args) == 2:
        return {k: _value_from_json(args[1], v) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            if arg is not type(None):
                return _value_from_json(arg, value)
    return value


def info_from_json(data: dict) -> DataInfo:
    """The :class:`DataInfo` saved by :func:`export`."""
    return _value_from_json(DataInfo, data)


def export(run_dir: str | Path, out_dir: str | Path, *, ema: bool = True, force: bool = False) -> Path:
    """Write the inference bundle of ``run_dir`` (see the module docstring) into ``out_dir``."""
    from .build import load_run
    from .config import to_dict
    from .provenance import git_commit

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        raise UsageError(f"{out_dir} exists and is not empty; choose another OUT_DIR (or --force)")
    run = load_run(run_dir, device=torch.device("cpu"), weights="ema" if ema else "model")
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # clones: safetensors refuses tensors that share memory (tied weights)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in run.method.state_dict().items()}
    save_file(tensors, str(tmp / MODEL_FILE), metadata={"format": BUNDLE_FORMAT})
    config = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "step": run.step,
        "weights": run.weights,
        "commit": git_commit(),
        "run": to_dict(run.config),
    }
    (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=1))
    data = {"info": _info_to_json(run.data.info), "state": run.data.state_dict()}
    (tmp / DATA_FILE).write_text(json.dumps(data, indent=1))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


def is_bundle(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file() and (path / MODEL_FILE).is_file()


def _load_bundle(path: Path, device: torch.device, ema: bool) -> Method:
    from .build import build_method_from_info
    from .runconfig import parse_config

    try:
        config = json.loads((path / CONFIG_FILE).read_text())
        data = json.loads((path / DATA_FILE).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} is not a readable discodiff bundle: {err}") from None
    if config.get("format") != BUNDLE_FORMAT or config.get("version") != BUNDLE_VERSION:
        raise CheckpointError(
            f"{path}/{CONFIG_FILE} is not a discodiff bundle of version {BUNDLE_VERSION} "
            f"(format {config.get('format')!r}, version {config.get('version')!r})"
        )
    if not ema and config["weights"] == "ema":
        raise UsageError(f"{path} holds EMA weights only; export the run with --raw for the raw weights")
    info = info_from_json(data["info"])
    method = build_method_from_info(parse_config(config["run"]), info)
    try:
        method.load_state_dict(load_file(str(path / MODEL_FILE)))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CheckpointError(f"{path}/{MODEL_FILE} does not fit the bundle's model: {err}") from None
    method.data_info, method.data_state = info, data["state"]
    return method.to(device).eval()


def load(run_dir: str | Path, device: str | torch.device | None = None, ema: bool = True) -> Method:
    """A trained method, ready to ``sample`` and ``nll``, in eval mode.

    Args:
        run_dir: a run directory (``discodiff train --out``) or a bundle (``discodiff export``).
        device: where to put it (``None``: CUDA when present, else CPU).
        ema: the exponential moving average of the weights (what evaluation uses); ``False``
            for the raw weights of the newest checkpoint.

    The method also carries ``data_info`` (:class:`~discodiff.data.DataInfo`) and ``data_state``
    (the data's saved state, e.g. ``{"chars": ...}``, a text run's vocabulary).
    """
    from .build import load_run
    from .utils import resolve_device

    path = Path(run_dir)
    device = resolve_device("auto" if device is None else str(device))
    if is_bundle(path):
        return _load_bundle(path, device, ema)
    run = load_run(path, device=device, weights="ema" if ema else "model")
    run.method.data_info, run.method.data_state = run.data.info, run.data.state_dict()
    return run.method
