"""A bench suite: one YAML file naming the data, the network, the training settings, the budget,
the validation set and the sampling grid, shared by every method it lists.

::

    description: one line for the leaderboard's title
    seed: 0
    budget_s: 600                 # training seconds per method (--budget overrides)
    data: {...}                   # one data section: the same data for every method
    net: {...}                    # one net section: the same network for every method
    train: {...}                  # shared train settings (steps are sized to the budget)
    likelihood: {...}             # LikelihoodSpec
    quality: {...}                # QualitySpec
    methods:
      NAME: {method: {...}, samplers: [...], estimators: [...], train: {...}}

A method entry may override ``train`` keys (a learning rate, say) but never ``data`` or ``net``:
the network is equal by construction. ``samplers`` lists the samplers to measure (default: the
method's default sampler; ``[all]``: every sampler it declares); ``estimators`` the likelihood
estimators (default: every estimator it declares).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import ConfigError, apply_overrides, from_dict, load_yaml
from ..runconfig import RunConfig, parse_config
from ..train.lr import sized_warmup

SUITE_DIR = Path("configs") / "bench"
"""Where suite names are looked up (from the working directory, then from the repository)."""


@dataclass
class LikelihoodSpec:
    """``likelihood:`` the fixed validation set and how it is measured."""

    split: Literal["val", "test"] = "val"  # the data source's fixed split (documented by the data)
    examples: int = 0  # 0: the whole split; else this many evenly spaced examples of it
    curve_examples: int = 64  # evenly spaced examples of that set for the points during training
    curve_points: int = 4  # likelihood measurements during training (the last one is the end)
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.examples < 0 or self.curve_examples < 1 or self.curve_points < 1 or self.batch_size < 1:
            raise ValueError("examples must be >= 0; curve_examples, curve_points, batch_size >= 1")


@dataclass
class QualitySpec:
    """``quality:`` the sampling grid and what scores it."""

    samples: int = 1000  # samples per draw
    draws: int = 3  # independent draws (seeds 0 .. draws-1): figures are mean +- sd over them
    batch_size: int = 1000  # samples per ``sample`` call
    steps: list[int] = field(default_factory=lambda: [10, 100, 1000])  # kept where a sampler allows
    guidance: list[float] = field(default_factory=lambda: [1.0])  # guidance scales (labelled data)
    metric: str = ""  # the quality figure plotted and ranked (a key of the rows' metrics)
    lower_is_better: bool = True
    reference: str | None = None  # a method of the suite: scores samples (generative perplexity)
    data_row: bool = True  # also score the split itself (a floor / reference for every metric)

    def __post_init__(self) -> None:
        if self.samples < 1 or self.draws < 1 or self.batch_size < 1:
            raise ValueError("samples, draws and batch_size must be >= 1")
        if not self.steps or any(s < 1 for s in self.steps):
            raise ValueError("steps must be a non-empty list of positive integers")


@dataclass
class MethodEntry:
    """One method of a suite."""

    method: dict[str, Any]
    samplers: list[str] | None = None
    estimators: list[str] | None = None
    train: dict[str, Any] = field(default_factory=dict)


@dataclass
class Suite:
    """A parsed suite file."""

    name: str
    path: Path
    description: str
    seed: int
    budget_s: float
    data: dict[str, Any]
    net: dict[str, Any]
    train: dict[str, Any]
    likelihood: LikelihoodSpec
    quality: QualitySpec
    methods: dict[str, MethodEntry]

    def run_config(self, name: str, *, steps: int, budget_s: float) -> RunConfig:
        """The run config of method ``name``: the shared sections, its method section, its train
        overrides, ``train.steps`` sized to the budget and the budget as a hard stop."""
        entry = self.methods[name]
        train = {**self.train, **entry.train}
        warmup = int(train.get("warmup_steps", 100))
        train.update(
            steps=steps,
            warmup_steps=sized_warmup(warmup, steps),
            time_budget_s=budget_s,
            ckpt_every=10**9,  # the bench checkpoints at its curve points
            eval_every=0,
            sample_every=0,
        )
        raw = {
            "seed": self.seed,
            "data": self.data,
            "method": entry.method,
            "net": self.net,
            "train": train,
            "eval": {"num_samples": 0, "batch_size": self.likelihood.batch_size},
        }
        try:
            return parse_config(raw)
        except ConfigError as err:
            raise ConfigError(f"suite {self.path}, method {name!r}: {err}") from None

    def config_hash(self, name: str) -> str:
        """A short hash of everything that defines method ``name``'s measurement except the
        budget (data, net, train, method entry, likelihood and quality sections, seed)."""
        blob = {
            "seed": self.seed,
            "data": self.data,
            "net": self.net,
            "train": self.train,
            "entry": vars(self.methods[name]),
            "likelihood": vars(self.likelihood),
            "quality": vars(self.quality),
        }
        return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:12]


def find_suite(name_or_path: str) -> Path:
    """A suite file: a path, or a name in ``configs/bench/`` (of the working directory, else of the
    repository this package lives in)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"suite file not found: {path}")
        return path
    repo = Path(__file__).resolve().parents[3]
    for root in (Path.cwd(), repo):
        candidate = root / SUITE_DIR / f"{name_or_path}.yaml"
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for root in (Path.cwd(), repo) for p in (root / SUITE_DIR).glob("*.yaml")})
    raise ConfigError(
        f"unknown suite {name_or_path!r}: no {SUITE_DIR / (name_or_path + '.yaml')}; "
        f"known suites: {', '.join(known) or 'none'}"
    )


SUITE_KEYS = {"description", "seed", "budget_s", "data", "net", "train", "likelihood", "quality", "methods"}


def load_suite(name_or_path: str, overrides: list[str] | None = None) -> Suite:
    """Read and check a suite (``overrides``: ``key=value`` on the suite, e.g. ``quality.draws=1``)."""
    path = find_suite(name_or_path)
    raw = apply_overrides(load_yaml(path), overrides or [])
    unknown = set(raw) - SUITE_KEYS
    if unknown:
        raise ConfigError(
            f"suite {path}: unknown keys {', '.join(sorted(unknown))}; allowed: {sorted(SUITE_KEYS)}"
        )
    for key in ("data", "net", "methods"):
        if not isinstance(raw.get(key), dict) or not raw[key]:
            raise ConfigError(f"suite {path}: '{key}' must be a non-empty mapping")
    methods = {}
    for name, entry in raw["methods"].items():
        if isinstance(entry, dict) and ({"net", "data"} & set(entry)):
            raise ConfigError(
                f"suite {path}: methods.{name} sets {sorted({'net', 'data'} & set(entry))}; every method "
                "shares the suite's data and net sections"
            )
        methods[str(name)] = from_dict(MethodEntry, entry, f"methods.{name}")
    suite = Suite(
        name=path.stem,
        path=path,
        description=str(raw.get("description", path.stem)),
        seed=int(raw.get("seed", 0)),
        budget_s=float(raw.get("budget_s", 60.0)),
        data=raw["data"],
        net=raw["net"],
        train=dict(raw.get("train") or {}),
        likelihood=from_dict(LikelihoodSpec, raw.get("likelihood"), "likelihood"),
        quality=from_dict(QualitySpec, raw.get("quality"), "quality"),
        methods=methods,
    )
    ref = suite.quality.reference
    if ref is not None and ref not in methods:
        raise ConfigError(f"suite {path}: quality.reference {ref!r} is not one of its methods")
    for name in methods:  # every method config must parse (a typo fails before any training)
        suite.run_config(name, steps=1, budget_s=1.0)
    return suite


def select_methods(suite: Suite, methods: str | None) -> list[str]:
    """The methods to run, in suite order, the reference first (it scores the others' samples)."""
    names = list(suite.methods)
    if methods:
        wanted = [m.strip() for m in methods.split(",") if m.strip()]
        unknown = [m for m in wanted if m not in suite.methods]
        if unknown:
            raise ConfigError(
                f"--methods: {', '.join(unknown)} not in suite {suite.name}; allowed: {', '.join(names)}"
            )
        names = [m for m in names if m in wanted]
    ref = suite.quality.reference
    if ref is not None:
        names = [ref, *[m for m in names if m != ref]]
    return names
