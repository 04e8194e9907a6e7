"""Scoring a trained run on other data: ``discodiff eval RUN data.path=OTHER_CORPUS``.

A data config declares which of its keys choose the text rather than its encoding or the
example shape (``eval_keys``); only those may change for a trained run, and the run's saved
encoding (vocabulary or tokenizer) is used on the new text. Naming another corpus (a key of
``corpus_keys``) drops the ``cache_keys`` (a prepared copy of the old corpus) unless they are
given too, so ``data.path=OTHER`` encodes OTHER in memory and ``data.path=OTHER
data.prepared=DIR`` reads a prepared copy of it.
"""

from __future__ import annotations

from dataclasses import replace

from .config import ConfigError, apply_overrides, parse_component, to_dict
from .data import DATASETS
from .runconfig import RunConfig


def override_keys(overrides: list[str], section: str) -> list[str]:
    """The top-level keys under ``section`` that ``key=value`` overrides set."""
    keys = []
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key.startswith(f"{section}."):
            keys.append(key[len(section) + 1 :].split(".")[0])
    return keys


def with_data_overrides(config: RunConfig, overrides: list[str]) -> RunConfig:
    """The run's config with ``data.key=value`` overrides that choose other text to score."""
    if not overrides:
        return config
    cls = type(config.data.config)
    allowed = getattr(cls, "eval_keys", ())
    keys = override_keys(overrides, "data")
    for key in keys:
        if key not in allowed:
            listed = ", ".join(f"data.{k}" for k in allowed) or "none"
            raise ConfigError(
                f"data.{key} cannot change for a trained run of data set {config.data.name!r} (it would "
                f"change the encoding or the example shape); allowed: {listed}"
            )
    data = to_dict(config.data)
    if set(keys) & set(getattr(cls, "corpus_keys", ())):
        for cache in getattr(cls, "cache_keys", ()):
            if cache not in keys:
                data[cache] = None
    data = apply_overrides({"data": data}, overrides)["data"]
    return replace(config, data=parse_component(DATASETS, data, "data"))
