"""Config -> objects, in one place: data set, network, method; and loading a finished run.

Importing this module registers every built-in component.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from . import data as _data  # noqa: F401  (registers data sets)
from . import gaussian as _gaussian  # noqa: F401  (registers methods)
from . import nets as _nets  # noqa: F401  (registers networks)
from .base import METHODS, Method
from .config import load_yaml, to_dict
from .data import DATASETS, DataInfo, DataSource
from .errors import CheckpointError, ConfigError, DataError, UserError
from .memory import check_network_size
from .nets import NETS, NetSpec
from .runconfig import RunConfig, parse_config
from .train.checkpoint import load_newest

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


TRAINING_COPIES = 4
"""Copies of the weights training holds: weights, gradients and AdamW's two moments (EMA: one more)."""


def build_method(config: RunConfig, data: DataSource, *, training: bool = False) -> Method:
    """The method for ``data``, with its network built from ``config.net``."""
    return build_method_from_info(config, data.info, training=training)


def build_method_from_info(
    config: RunConfig,
    info: DataInfo,
    *,
    net_factory: Callable[[NetSpec], torch.nn.Module] | None = None,
    training: bool = False,
) -> Method:
    """The method for data described by ``info`` (all a method needs of its data), with its
    network built from ``config.net`` (or by ``net_factory``) after checking that it fits in
    memory (with its training state when ``training``); user errors name the network or the
    method."""
    net_builder = NETS.get(config.net.name)
    copies = TRAINING_COPIES + (config.train.ema_decay > 0) if training else 1

    def build_net(spec: NetSpec) -> torch.nn.Module:
        check_network_size(
            lambda: net_builder(config.net.config, spec),
            f"net ({config.net.name})",
            config.net.config,
            copies=copies,
        )
        try:
            return net_builder(config.net.config, spec)
        except UserError as err:
            raise _NetError(f"net ({config.net.name}): {err}") from None

    try:
        return METHODS.get(config.method.name)(config.method.config, info, net_factory or build_net)
    except _NetError as err:
        raise ConfigError(str(err)) from None
    except UserError as err:
        raise type(err)(f"method ({config.method.name}): {err}") from None


def build_run(
    config: RunConfig, *, data_state: dict | None = None, training: bool = False
) -> tuple[DataSource, Method]:
    data = build_data(config, data_state)
    method = build_method(config, data, training=training)
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
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is corrupted: not valid JSON ({err})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is corrupted: expected a JSON object, got {type(state).__name__}")
    return state


def read_run_config(run_dir: Path) -> RunConfig:
    """The resolved config a run directory holds, checked like any config."""
    cfg_path = run_dir / CONFIG_FILE
    if not cfg_path.is_file():
        raise ConfigError(f"{run_dir} is not a run directory: {CONFIG_FILE} is missing")
    return parse_config(load_yaml(cfg_path))


@dataclass
class LoadedRun:
    config: RunConfig
    data: DataSource
    method: Method
    step: int
    weights: str = "ema"  # the checkpoint's weights that were loaded: ema | model


def load_run(
    run_dir: str | Path,
    *,
    device: torch.device,
    weights: str = "ema",
    data_overrides: list[str] | None = None,
) -> LoadedRun:
    """Rebuild a run from its directory with the latest checkpoint's EMA (or raw) weights;
    ``data_overrides`` (``data.path=OTHER``) score other text with the run's encoding
    (:mod:`discodiff.zeroshot`)."""
    from .zeroshot import with_data_overrides

    run_dir = Path(run_dir)
    config = with_data_overrides(read_run_config(run_dir), data_overrides or [])
    data, method = build_run(config, data_state=read_data_state(run_dir))
    data.use_directory(run_dir)
    path, ckpt = load_newest(run_dir / "checkpoints")
    group = "ema" if weights == "ema" and ckpt.group("ema") else "model"
    state = {k: v for k, v in ckpt.group(group).items() if not k.startswith("__")}
    try:
        method.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(
            f"checkpoint {path} does not fit the run's model: {' '.join(str(err).split())[:400]}"
        ) from None
    method.to(device).eval()
    return LoadedRun(config, data, method, ckpt.step, group)
