"""What methods declare, gathered for ``discodiff list``: a method is built (with a stand-in
network, so nothing large is allocated) and asked for its representation, ``known`` semantics,
samplers and estimators."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..base import METHODS, Method
from ..config import ConfigError, from_dict
from ..data import DataInfo
from ..errors import UsageError

EXAMPLE_INFOS: tuple[DataInfo, ...] = (
    DataInfo(event_shape=(2,)),
    DataInfo(event_shape=(16,), kind="tokens", vocab_size=8, unit="bits_per_char"),
)
"""Small data descriptions a method is built on when listed without a config: the first one it
accepts is used (its declarations do not depend on the data's size)."""


class _StandInNet(nn.Module):
    """Takes the place of the network when only declarations are read (never called)."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))


def describe(obj: object) -> str:
    """The first sentence of a docstring, without its leading ````config: {...}````: part."""
    doc = (getattr(obj, "__doc__", None) or "").strip()
    first = " ".join(doc.split("\n\n")[0].split())
    if first.startswith("``") and "``: " in first:
        first = first.split("``: ", 1)[1]
    return first.split(". ")[0].rstrip(".")


def _from_source(source: Path) -> tuple[str, Method]:
    import yaml

    from ..build import build_data, build_method_from_info
    from ..runconfig import load_config, parse_config

    if source.is_dir():
        cfg_path = source / "config.yaml"
        if not cfg_path.is_file():
            raise UsageError(f"{source} is not a run directory: config.yaml is missing")
        config = parse_config(yaml.safe_load(cfg_path.read_text()))
    else:
        config = load_config(source)
    info = build_data(config).info
    return config.method.name, build_method_from_info(config, info, net_factory=lambda spec: _StandInNet())


def declared_method(source: str | Path) -> tuple[str, Method]:
    """``(name, method)`` for a registered method name (default options) or a config / run path."""
    if isinstance(source, Path):
        if str(source) in METHODS:
            source = str(source)
        else:
            if not source.exists():
                raise UsageError(f"{source}: no such config or run directory, nor a method name")
            return _from_source(source)
    entry = METHODS.entry(source)
    options = from_dict(entry.config, {}, f"method ({source})") if entry.config else None
    errors = []
    for info in EXAMPLE_INFOS:
        try:
            return source, entry.obj(options, info, lambda spec: _StandInNet())
        except (ValueError, ConfigError) as err:
            errors.append(str(err))
    raise RuntimeError(f"method {source!r} accepts none of the example data descriptions: {errors}")


def method_rows(methods: list[tuple[str, Method]]) -> list[dict]:
    rows = []
    for name, method in methods:
        entry = METHODS.entry(name)
        rows.append(
            {
                "method": name,
                "data": method.representation,
                "known": method.known_semantics,
                "default_sampler": method.default_sampler,
                "samplers": ", ".join(method.samplers),
                "estimators": ", ".join(method.nll_estimators),
                "description": describe(entry.config or entry.obj),
            }
        )
    return rows


def sampler_rows(declared: tuple[str, Method]) -> list[dict]:
    name, method = declared
    rows = []
    for sampler in method.samplers:
        info = method.sampler_info(sampler)
        rows.append(
            {
                "method": name,
                "sampler": sampler,
                "default": "yes" if sampler == method.default_sampler else "",
                "steps": info.default_steps,
                "min_steps": info.min_steps,
                "max_steps": "any" if info.max_steps is None else info.max_steps,
                "nfe_per_step": "adaptive" if info.nfe_per_step is None else f"{info.nfe_per_step:g}",
                "deterministic": "yes" if info.deterministic else "no",
                "limit": info.limit,
            }
        )
    return rows
