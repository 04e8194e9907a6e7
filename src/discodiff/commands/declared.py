"""What methods declare, gathered for ``discodiff list``: a method is built (on a small example
data description with a small network, or from a config) and asked for its representation,
``known`` semantics, samplers and estimators."""

from __future__ import annotations

import re
from pathlib import Path

from ..base import METHODS, Method
from ..config import from_dict
from ..data import DataInfo
from ..data.base import FieldInfo
from ..errors import UsageError, UserError

EXAMPLE_LENGTH = 16
"""Sequence length of the example token data; a declaration equal to it that changes with the
length (an AR model's one step per token) is listed as ``L``."""


def _examples(length: int) -> tuple[tuple[DataInfo, str, dict], ...]:
    """Small data descriptions (with a small network) a method is built on when listed without a
    config: the first it accepts is used."""
    tokens = DataInfo(event_shape=(length,), kind="tokens", vocab_size=8, unit="bits_per_char")
    n = 4  # graphs of up to 4 nodes with 2 node and 2 edge categories
    graphs = DataInfo(
        event_shape=(n, n),
        kind="graph",
        unit="bits_per_entry",
        fields={
            "nodes": FieldInfo((n,), "tokens", 2, marginal=(0.5, 0.5)),
            "edges": FieldInfo((n, n), "tokens", 2, symmetric=True, marginal=(0.5, 0.5)),
            "node_mask": FieldInfo((n,), "mask"),
        },
        node_counts=(0.0, 0.25, 0.25, 0.25, 0.25),
    )
    graph_net = {"depth": 1, "width_x": 16, "width_e": 8, "width_y": 8, "heads": 2}
    return (
        (DataInfo(event_shape=(2,)), "mlp", {"hidden": 8, "depth": 1}),
        (tokens, "transformer", {"width": 16, "depth": 1, "heads": 1}),
        (graphs, "graph_transformer", graph_net),
    )


ABBREVIATIONS = ("al", "Eq", "Sec", "App", "e.g", "i.e", "cf", "Fig")
"""Words after which a period does not end a sentence."""


def describe(obj: object) -> str:
    """The first sentence of a docstring, without a leading ````config: {...}````: part."""
    doc = " ".join((getattr(obj, "__doc__", None) or "").strip().split("\n\n")[0].split())
    if doc.startswith("``"):
        close = doc.find("``", 2)
        if close > 0 and doc[close + 2 : close + 4] == ": ":
            doc = doc[close + 4 :]
    for match in re.finditer(r"\. ", doc):
        words = doc[: match.start()].split()
        if words and words[-1].lstrip("(") not in ABBREVIATIONS:
            return doc[: match.start()]
    return doc.rstrip(".")


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
    return config.method.name, build_method_from_info(config, build_data(config).info)


def declared_method(source: str | Path, *, length: int = EXAMPLE_LENGTH) -> tuple[str, Method | None]:
    """``(name, method)`` for a registered method name (built with its default options on the
    first of :func:`_examples` it accepts; ``None`` if it accepts none, e.g. a method that needs
    structured data) or for a config / run path (its own method)."""
    from ..nets import NETS

    if isinstance(source, Path):
        if str(source) in METHODS:
            source = str(source)
        else:
            if not source.exists():
                raise UsageError(f"{source}: no such config or run directory, nor a method name")
            return _from_source(source)
    entry = METHODS.entry(source)
    options = from_dict(entry.config, {}, f"method ({source})") if entry.config else None
    for info, net_name, net_options in _examples(length):
        net_entry = NETS.entry(net_name)
        net_config = from_dict(net_entry.config, net_options, "net")
        try:
            return source, entry.obj(options, info, lambda spec, c=net_config, b=net_entry.obj: b(c, spec))
        except (ValueError, UserError):
            continue
    return source, None


def method_rows(methods: list[tuple[str, Method]]) -> list[dict]:
    rows = []
    for name, method in methods:
        entry = METHODS.entry(name)
        if method is None:
            unknown = f"(see `discodiff list methods CONFIG` with a {name} config)"
            declared = dict.fromkeys(("data", "known", "default_sampler", "samplers", "estimators"), "?")
            declared["samplers"] = unknown
        else:
            declared = {
                "data": method.representation,
                "known": method.known_semantics,
                "default_sampler": method.default_sampler,
                "samplers": ", ".join(method.samplers),
                "estimators": ", ".join(method.nll_estimators),
            }
        rows.append({"method": name, **declared, "description": describe(entry.config or entry.obj)})
    return rows


def sampler_rows(declared: tuple[str, Method | None], other: Method | None = None) -> list[dict]:
    """One row per sampler. ``other``: the same method built on longer example data; a value
    that differs there and equals :data:`EXAMPLE_LENGTH` here is shown as ``L``."""
    name, method = declared
    if method is None:
        raise UsageError(f"method {name!r} needs a config to be built: discodiff list samplers CONFIG")
    rows = []
    for sampler in method.samplers:
        info = method.sampler_info(sampler)
        longer = other.sampler_info(sampler) if other is not None else info

        def shown(field: str, info=info, longer=longer):
            value = getattr(info, field)
            return "L" if value == EXAMPLE_LENGTH and getattr(longer, field) != value else value

        max_steps = shown("max_steps")
        rows.append(
            {
                "method": name,
                "sampler": sampler,
                "default": "yes" if sampler == method.default_sampler else "",
                "steps": shown("default_steps"),
                "min_steps": shown("min_steps"),
                "max_steps": "any" if max_steps is None else max_steps,
                "nfe_per_step": "adaptive" if info.nfe_per_step is None else f"{info.nfe_per_step:g}",
                "deterministic": "yes" if info.deterministic else "no",
                "limit": info.limit,
            }
        )
    return rows
