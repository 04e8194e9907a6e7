"""Config -> objects, in one place: data set, network, method; and loading a finished run.

Importing this module registers every built-in component.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from . import data as _data  # noqa: F401  (registers data sets)
from . import gaussian as _gaussian  # noqa: F401  (registers methods)
from . import nets as _nets  # noqa: F401  (registers networks)
from .base import METHODS, Method
from .config import to_dict
from .data import DATASETS, DataSource
from .errors import ConfigError, DataError, UserError
from .nets import NETS, NetSpec
from .runconfig import RunConfig, parse_config
from .train.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint

CONFIG_FILE = "config.yaml"
DATA_STATE_FILE = "data_state.json"


def build_data(config: RunConfig, state: dict | None = None) -> DataSource:
    """The data set of ``config``; a user error (bad file, bad values) names the data set. Any
    other exception is a bug and passes unchanged."""
    try:
        return DATASETS.get(config.data.name)(config.data.config, state=state)
    except UserError as err:
        raise type(err)(f"data ({config.data.name}): {err}") from None
    except FileNotFoundError as err:
        raise DataError(f"data ({config.data.name}): {err}") from None


class _NetError(ConfigError):
    """A network's user error, already named (the method's builder passes it on)."""


def build_method(config: RunConfig, data: DataSource) -> Method:
    """The method for ``data``, with its network built from ``config.net``; user errors name the
    network or the method."""
    net_builder = NETS.get(config.net.name)

    def net_factory(spec: NetSpec) -> torch.nn.Module:
        try:
            return net_builder(config.net.config, spec)
        except UserError as err:
            raise _NetError(f"net ({config.net.name}): {err}") from None

    try:
        return METHODS.get(config.method.name)(config.method.config, data.info, net_factory)
    except _NetError as err:
        raise ConfigError(str(err)) from None
    except UserError as err:
        raise type(err)(f"method ({config.method.name}): {err}") from None


def build_run(config: RunConfig, *, data_state: dict | None = None) -> tuple[DataSource, Method]:
    data = build_data(config, data_state)
    method = build_method(config, data)
    for estimator in config.eval.estimators:
        if estimator not in method.nll_estimators:
            raise ConfigError(
                f"eval.estimators: {estimator!r} is not supported by method {config.method.name!r}; "
                f"allowed: {', '.join(method.nll_estimators)}"
            )
    if config.eval.sampler is not None and config.eval.sampler not in method.samplers:
        raise ConfigError(
            f"eval.sampler: {config.eval.sampler!r} is not a sampler of method {config.method.name!r}; "
            f"allowed: {', '.join(method.samplers)}"
        )
    return data, method


def save_run_files(run_dir: Path, config: RunConfig, data: DataSource) -> None:
    """Write the resolved config and the data set's state (e.g. a vocabulary) into the run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    (run_dir / DATA_STATE_FILE).write_text(json.dumps(data.state_dict()))


def read_data_state(run_dir: Path) -> dict | None:
    path = run_dir / DATA_STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


@dataclass
class LoadedRun:
    config: RunConfig
    data: DataSource
    method: Method
    step: int


def load_run(run_dir: str | Path, *, device: torch.device, weights: str = "ema") -> LoadedRun:
    """Rebuild a run from its directory with the latest checkpoint's EMA (or raw) weights."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / CONFIG_FILE
    if not cfg_path.is_file():
        raise ConfigError(f"{run_dir} is not a run directory: {CONFIG_FILE} is missing")
    config = parse_config(yaml.safe_load(cfg_path.read_text()))
    data, method = build_run(config, data_state=read_data_state(run_dir))
    data.use_directory(run_dir)
    path = latest_checkpoint(run_dir / "checkpoints")
    if path is None:
        raise CheckpointError(f"{run_dir} has no checkpoint yet")
    ckpt = load_checkpoint(path)
    group = "ema" if weights == "ema" and ckpt.group("ema") else "model"
    state = {k: v for k, v in ckpt.group(group).items() if not k.startswith("__")}
    try:
        method.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path} does not fit the run's model: {err}") from None
    method.to(device).eval()
    return LoadedRun(config, data, method, ckpt.step)
