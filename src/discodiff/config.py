"""Typed, strict configuration: YAML -> dataclasses, with errors that name the key.

Every config section is a dataclass. Unknown keys, wrong types and values outside a ``Literal``
raise :class:`ConfigError` with the dotted key, what was given and what is allowed. Fields whose
metadata names a registry (``component(...)``) take a registered name, or a mapping with ``name``
plus that component's own options.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from .errors import ConfigError
from .registry import Registry


@dataclass(frozen=True)
class Spec:
    """A parsed component choice: its registered name and its typed config (or object)."""

    name: str
    config: Any


def component(registry: Registry, default: str | dict | None = None):
    """A dataclass field holding a registered component, parsed through ``registry``."""
    meta = {"registry": registry}
    if default is None:
        return field(metadata=meta)
    return field(default_factory=lambda: parse_component(registry, default, "<default>"), metadata=meta)


def parse_component(registry: Registry, value: Any, path: str) -> Any:
    """Parse ``name`` or ``{name: ..., option: ...}`` through ``registry``.

    Returns the component object itself when it is a dataclass (schedules), else a :class:`Spec`.
    """
    if isinstance(value, Spec) or _is_registered_instance(registry, value):
        return value
    if isinstance(value, str):
        name, options = value, {}
    elif isinstance(value, dict):
        if "name" not in value:
            raise ConfigError(f"{path}: missing key 'name' (one of: {', '.join(registry.names())})")
        options = dict(value)
        name = options.pop("name")
    else:
        raise ConfigError(f"{path}: expected a {registry.kind} name or a mapping with 'name', got {value!r}")
    try:
        entry = registry.entry(name)
    except KeyError as err:
        raise ConfigError(f"{path}.name: {err.args[0]}") from None
    if entry.config is None:
        return from_dict(entry.obj, options, path)
    return Spec(name, from_dict(entry.config, options, path))


def _is_registered_instance(registry: Registry, value: Any) -> bool:
    try:
        registry.name_of(value)
    except KeyError:
        return False
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def from_dict(cls: type, data: Any, path: str = "config") -> Any:
    """Build dataclass ``cls`` from a mapping, checking every key and type."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping, got {type(data).__name__} {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            hint = difflib.get_close_matches(str(key), list(fields), n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"unknown key '{path}.{key}'{extra}; allowed: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        key_path = f"{path}.{name}"
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"missing required key '{key_path}'")
            continue
        registry = f.metadata.get("registry")
        if registry is not None:
            kwargs[name] = parse_component(registry, data[name], key_path)
        else:
            kwargs[name] = _coerce(hints[name], data[name], key_path)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{path}: {err}") from None


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"'{path}': got {value!r}; allowed: {', '.join(repr(a) for a in args)}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, path)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"'{path}': got {value!r}; " + "; ".join(errors))
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{path}': expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if origin is tuple:
            if len(value) != len(args):
                raise ConfigError(f"'{path}': expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        return [_coerce(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{path}': expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"'{path}': expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"'{path}': expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"'{path}': expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"'{path}': expected a number, got {value!r}")
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"'{path}': expected a string, got {value!r}")
        return value
    raise ConfigError(f"'{path}': unsupported config type {_type_name(tp)}")


def to_dict(obj: Any, registries: dict[str, Registry] | None = None) -> Any:
    """Inverse of :func:`from_dict`: plain data for YAML / JSON."""
    if isinstance(obj, Spec):
        return {"name": obj.name, **to_dict(obj.config)}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            registry = f.metadata.get("registry")
            if registry is not None and not isinstance(value, Spec):
                out[f.name] = {"name": registry.name_of(value), **to_dict(value)}
            else:
                out[f.name] = to_dict(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, with a clear error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML scalars) to a nested mapping."""
    data = dict(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"override {item!r} has an empty key")
        value = yaml.safe_load(raw) if raw.strip() else ""
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if isinstance(child, str):  # a component given by name only
                child = {"name": child}
            elif child is None:
                child = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: '{'.'.join(parts[: i + 1])}' is not a mapping")
            node[part] = dict(child)
            node = node[part]
        node[parts[-1]] = value
    return data
