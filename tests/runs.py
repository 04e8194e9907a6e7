"""Tiny run configs for training and CLI tests."""

from __future__ import annotations

import copy

import yaml

from discodiff.runconfig import RunConfig, parse_config

TINY = {
    "seed": 0,
    "data": {"name": "toy2d", "dataset": "moons", "eval_size": 300},
    "method": {"name": "gaussian", "timesteps": 20},
    "net": {"name": "mlp", "hidden": 32, "depth": 1},
    "train": {"steps": 20, "batch_size": 64, "lr": 1e-3, "warmup_steps": 5, "ckpt_every": 10, "log_every": 5},
    "eval": {"nll_examples": 100, "num_samples": 100, "batch_size": 100},
}


def tiny(**sections) -> dict:
    """The tiny config with some sections' keys replaced, e.g. tiny(train={"steps": 4})."""
    cfg = copy.deepcopy(TINY)
    for name, values in sections.items():
        if isinstance(values, dict):
            cfg[name] = {**cfg.get(name, {}), **values}
        else:
            cfg[name] = values
    return cfg


def tiny_config(**sections) -> RunConfig:
    return parse_config(tiny(**sections))


def write_config(path, cfg: dict) -> str:
    path.write_text(yaml.safe_dump(cfg))
    return str(path)
