"""Molecular properties for guidance: QED and logP from RDKit, given to the model as bins.

The graph methods condition on class labels (and classifier-free guidance mixes the conditional
and the null-label predictions), so a property is given as a *bin*: the training set's quantiles
cut the property into ``bins`` equally populated intervals, and label ``k`` asks for a molecule in
interval ``k``. The value a label requests is the median training value in its interval
(:attr:`PropertyBins.targets`; the median is the constant closest in mean absolute error). The
reported error of generated molecules is ``mean |property(x_i) - targets[label_i]|`` over the
valid samples, beside two references from the test set: its molecules against their own bins'
targets (what sampling the data's conditional distribution gives) and against a uniformly random
bin's (what ignoring the label gives).

- ``qed``: quantitative estimate of drug-likeness (Bickerton et al. 2012), RDKit's
  ``Chem.QED.qed`` with its default weights, in [0, 1].
- ``logp``: Wildman-Crippen logP (Wildman & Crippen 1999), RDKit's ``Crippen.MolLogP``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from rdkit.Chem import QED, Crippen

from ..errors import ConfigError, DataError
from .convert import Chem

PROPERTIES: dict[str, Callable[[Chem.Mol], float]] = {"qed": QED.qed, "logp": Crippen.MolLogP}
"""Property name -> function of a sanitized molecule."""


def property_values(name: str, mols: Sequence[Chem.Mol]) -> np.ndarray:
    """``(N,)`` float64 values of a property."""
    fn = PROPERTIES[name]
    return np.array([fn(m) for m in mols], dtype=np.float64)


@dataclass(frozen=True)
class PropertyBins:
    """Quantile bins of a property.

    Attributes:
        name: the property (a key of :data:`PROPERTIES`).
        edges: the ``bins - 1`` inner edges, increasing; bin ``k`` is ``[edges[k-1], edges[k])``.
        targets: the value label ``k`` requests: the median training value in bin ``k``.
    """

    name: str
    edges: tuple[float, ...]
    targets: tuple[float, ...]

    @property
    def num_bins(self) -> int:
        return len(self.targets)

    def label(self, values: np.ndarray) -> np.ndarray:
        """``(N,)`` int64 bin of each value."""
        return np.searchsorted(np.asarray(self.edges), values, side="right").astype(np.int64)

    def to_dict(self) -> dict:
        """JSON-ready (lists, as a reloaded ``data_state.json`` holds them)."""
        return {"name": self.name, "edges": list(self.edges), "targets": list(self.targets)}

    @classmethod
    def from_dict(cls, d: dict) -> PropertyBins:
        return cls(d["name"], tuple(d["edges"]), tuple(d["targets"]))


def fit_bins(name: str, values: np.ndarray, bins: int) -> PropertyBins:
    """Equally populated bins of the training values (edges at the k / bins quantiles)."""
    if bins < 2:
        raise ConfigError(f"property guidance needs at least 2 bins, got {bins}")
    edges = np.quantile(values, np.arange(1, bins) / bins)
    if len(np.unique(edges)) != len(edges):
        raise DataError(f"{name}: the training values are too concentrated for {bins} distinct bins")
    labels = np.searchsorted(edges, values, side="right")
    targets = tuple(float(np.median(values[labels == k])) for k in range(bins))
    return PropertyBins(name, tuple(float(e) for e in edges), targets)


def property_mae(bins: PropertyBins, values: np.ndarray, labels: np.ndarray) -> float:
    """``mean |values - targets[labels]|`` (``nan`` for no values)."""
    if len(values) == 0:
        return math.nan
    return float(np.abs(values - np.asarray(bins.targets)[labels]).mean())


def reference_maes(bins: PropertyBins, values: np.ndarray) -> dict[str, float]:
    """MAE of real molecules against their own bins' targets and against a random bin's."""
    targets = np.asarray(bins.targets)
    own = property_mae(bins, values, bins.label(values))
    random = float(np.abs(values[:, None] - targets[None, :]).mean())
    return {"own_bin": own, "random_bin": random}
