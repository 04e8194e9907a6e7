"""``discodiff list {methods,samplers,datasets,schedules,nets,configs} [CONFIG_OR_RUN] [--json]``.

Everything listed comes from the registries and from what methods declare (representation,
``known`` semantics, samplers with :class:`~discodiff.base.SamplerInfo`, likelihood estimators
with :class:`~discodiff.base.EstimatorInfo`); nothing here knows a method by name. Step limits
can depend on a method's options (a D3PM's ``timesteps``): without a config they are those of the
method's default options, with ``CONFIG.yaml`` or a run directory those of that run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import yaml

from ..errors import UsageError
from .declared import EXAMPLE_LENGTH, declared_method, describe, method_rows, sampler_rows

KINDS = ("methods", "samplers", "datasets", "schedules", "nets", "configs")

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "list", help="list methods, samplers, data sets, schedules, networks or configs", allow_abbrev=False
    )
    p.add_argument("kind", choices=KINDS)
    p.add_argument(
        "source",
        nargs="?",
        type=Path,
        help="methods/samplers: a config YAML or run directory whose method to describe",
    )
    p.add_argument("--json", action="store_true", help="one JSON list on stdout")


def _options(config_cls: type | None) -> str:
    if config_cls is None or not dataclasses.is_dataclass(config_cls):
        return ""
    return ", ".join(f.name for f in dataclasses.fields(config_cls) if f.init)


def _registry_rows(registry) -> list[dict]:
    rows = []
    for name in registry.names():
        entry = registry.entry(name)
        doc_of = entry.config if entry.config is not None else entry.obj
        rows.append(
            {"name": name, "description": describe(doc_of), "options": _options(entry.config or entry.obj)}
        )
    return rows


def config_dirs() -> list[Path]:
    """Where configs are looked for: ``./configs``, then the source checkout's ``configs/``."""
    dirs = [Path("configs"), PACKAGE_DIR.parents[1] / "configs"]
    seen, out = set(), []
    for d in dirs:
        if d.is_dir() and d.resolve() not in seen:
            seen.add(d.resolve())
            out.append(d)
    return out


def _first_comment(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""


def _config_rows() -> list[dict]:
    rows = []
    for root in config_dirs():
        for path in sorted(root.rglob("*.yaml")):
            text = path.read_text()
            try:
                data = yaml.safe_load(text) or {}
            except yaml.YAMLError:
                continue
            if not isinstance(data, dict):
                continue

            def name(section: str, data=data) -> str:
                value = data.get(section)
                return value.get("name", "?") if isinstance(value, dict) else str(value)

            rows.append(
                {
                    "config": str(path),
                    "method": name("method"),
                    "data": name("data"),
                    "net": name("net"),
                    "description": _first_comment(text),
                }
            )
    return rows


def _rows(args: argparse.Namespace) -> list[dict]:
    from .. import build  # noqa: F401  (registers every component)
    from ..base import METHODS
    from ..data import DATASETS
    from ..nets import NETS
    from ..schedules import SCHEDULES

    if args.source is not None and args.kind not in ("methods", "samplers"):
        raise UsageError(f"discodiff list {args.kind} takes no CONFIG_OR_RUN argument")
    if args.kind == "methods":
        if args.source is not None:
            return method_rows([declared_method(args.source)])
        return method_rows([declared_method(name) for name in METHODS.names()])
    if args.kind == "samplers":
        if args.source is not None:
            return sampler_rows(declared_method(args.source))
        return [
            row
            for name in METHODS.names()
            for row in sampler_rows(
                declared_method(name), declared_method(name, length=EXAMPLE_LENGTH + 1)[1]
            )
        ]
    if args.kind == "configs":
        rows = _config_rows()
        if not rows:
            raise UsageError("no configs found: looked in ./configs and the source checkout's configs/")
        return rows
    registry = {"datasets": DATASETS, "schedules": SCHEDULES, "nets": NETS}[args.kind]
    return _registry_rows(registry)


def format_table(rows: list[dict]) -> str:
    """Rows of equal keys as aligned columns under a header."""
    if not rows:
        return ""
    keys = list(rows[0])
    cells = [[str(k) for k in keys]] + [["" if r[k] is None else str(r[k]) for k in keys] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(keys) - 1)]
    lines = []
    for row in cells:
        lines.append("  ".join([c.ljust(w) for c, w in zip(row, widths)] + [row[-1]]).rstrip())
    return "\n".join(lines)


def _clip(text: str, width: int = 80) -> str:
    """A table cell's description cut to ``width`` characters (``--json`` keeps it whole)."""
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def run(args: argparse.Namespace) -> int:
    rows = _rows(args)
    if args.json:
        print(json.dumps(rows))
    else:
        print(format_table([{k: _clip(v) if k == "description" else v for k, v in r.items()} for r in rows]))
        if any(value == "L" for row in rows for value in row.values()):
            print("(L: the data's sequence length)")
    return 0
