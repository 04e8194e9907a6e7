"""A disk cache for what molecule data sets derive: converted graphs, property values and the
reference statistics of the metrics.

Converting QM9 takes about half a minute on one core, its QED values a minute and a half, ChemNet
statistics of a reference set a few seconds per thousand molecules; ``train`` and every ``eval``
would repeat them. Each entry lives under a key that hashes everything it depends on (the input
files' SHA-256, the conversion options, RDKit's version and :data:`CACHE_VERSION`), so a changed
file or option never reads a stale entry. Files are safetensors and JSON written atomically
(never pickle). The root is ``$DISCODIFF_CACHE``, else ``$XDG_CACHE_HOME/discodiff``, else
``~/.cache/discodiff``; ``data.cache: false`` turns it off.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

CACHE_VERSION = 1
"""Bumped when what a cache entry holds changes."""


def cache_root() -> Path:
    if os.environ.get("DISCODIFF_CACHE"):
        return Path(os.environ["DISCODIFF_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "discodiff"


def cache_key(parts: dict) -> str:
    """A short hash of ``parts`` (JSON-serializable) plus the RDKit and cache versions."""
    from rdkit import __version__ as rdkit_version

    text = json.dumps({**parts, "rdkit": rdkit_version, "cache": CACHE_VERSION}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class Cache:
    """Arrays and JSON under ``root/molecules/<key>/``; ``enabled=False`` stores nothing."""

    def __init__(self, key: str, *, enabled: bool = True, root: Path | None = None) -> None:
        self.enabled = enabled
        self.dir = (root or cache_root()) / "molecules" / key

    def path(self, name: str) -> Path:
        return self.dir / name

    def load_arrays(self, name: str) -> dict[str, np.ndarray] | None:
        path = self.path(f"{name}.safetensors")
        return load_file(str(path)) if self.enabled and path.is_file() else None

    def save_arrays(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        if self.enabled:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.path(f"{name}.safetensors.tmp{os.getpid()}")
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp))
            tmp.replace(self.path(f"{name}.safetensors"))

    def load_json(self, name: str):
        path = self.path(f"{name}.json")
        return json.loads(path.read_text()) if self.enabled and path.is_file() else None

    def save_json(self, name: str, value) -> None:
        if self.enabled:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.path(f"{name}.json.tmp{os.getpid()}")
            tmp.write_text(json.dumps(value))
            tmp.replace(self.path(f"{name}.json"))
