"""The molecule data sets' configs and registry entries: ``qm9``, ``moses`` and ``smiles``.

This module does not import RDKit: the data set names register without the extra, and building
one checks for it first (:func:`~discodiff.molecules.deps.require`), so a missing extra is one
line naming it. Each builder returns a :class:`~discodiff.molecules.source.MoleculeData`.

::

    data: {name: qm9, path: ../shared/data/molecules/qm9/qm9.csv.gz}
    data: {name: moses, path: ../shared/data/molecules/moses, train_subset: 100000}
    data: {name: smiles, path: my_molecules.smi, skip_invalid: true}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..data.base import DATASETS
from .deps import require


@dataclass
class MoleculeConfig:
    """Options every molecule data set shares."""

    path: str  # qm9: the CSV file; moses: the directory of its three files; smiles: the training file
    atom_types: list[str] | None = None  # node categories, e.g. [C, N, O, F, "[N+]"]; None: from training
    charges: Literal["types", "refuse"] = "types"  # charged atoms as their own types, or refuse them
    max_atoms: int | None = None  # heavy atoms at most (None: the largest training molecule)
    skip_invalid: bool = False  # skip (and count) SMILES RDKit cannot read instead of failing
    condition: Literal["none", "qed", "logp"] = "none"  # a property to condition on, as bins
    condition_bins: int = 4  # equally populated bins of the property (the class labels)
    eval_size: int | None = 10_000  # val / test molecules kept as graphs for the likelihood (None: all)
    reference_size: int | None = None  # test molecules for the FCD / MOSES references (None: all)
    fcd: bool = True  # Frechet ChemNet Distance among the sample metrics
    moses_metrics: bool = False  # MOSES's filters, SNN, fragment and scaffold similarity, IntDiv
    node_count_pseudocount: float = 0.01  # added to each node count in the data's range (as graphs)
    cache: bool = True  # reuse conversions and references from the disk cache (molecules.cache)

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("data.path is required (a SMILES file, or MOSES's directory)")
        for name in ("max_atoms", "eval_size", "reference_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"data.{name} must be >= 1 or null, got {value}")
        if self.condition != "none" and self.condition_bins < 2:
            raise ValueError(f"data.condition_bins must be >= 2, got {self.condition_bins}")


@dataclass
class QM9Config(MoleculeConfig):
    """``data: {name: qm9}``: QM9 with DiGress's split (:mod:`.datasets`)."""

    max_atoms: int | None = 9


@dataclass
class MosesConfig(MoleculeConfig):
    """``data: {name: moses}``: MOSES's train / test / test_scaffolds."""

    max_atoms: int | None = 27
    moses_metrics: bool = True
    train_subset: int | None = None  # convert only this many training molecules (seeded; None: all)
    subset_seed: int = 0
    reference_size: int | None = 20_000  # of MOSES's 176,074 test molecules (None: all, as MOSES)


@dataclass
class SmilesConfig(MoleculeConfig):
    """``data: {name: smiles}``: a user's SMILES files (one per split, or one split by fractions)."""

    val_path: str | None = None  # validation molecules (None: a fraction of ``path``)
    test_path: str | None = None  # test molecules (None: a fraction of ``path``)
    val_fraction: float = 0.1  # used when val_path is not given
    test_fraction: float = 0.1  # used when test_path is not given
    split_seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        val, test = self.fractions
        if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
            raise ValueError("data.val_fraction and data.test_fraction must be in [0, 1) and sum below 1")
        if not self.test_path and test == 0:
            raise ValueError("give data.test_path or a data.test_fraction > 0 (the metrics need a test set)")

    @property
    def fractions(self) -> tuple[float, float]:
        """The val and test fractions cut from ``path`` (0 where a file is given)."""
        return (0.0 if self.val_path else self.val_fraction, 0.0 if self.test_path else self.test_fraction)


def _build(kind: str):
    def build(config: MoleculeConfig, state: dict | None = None):
        require("rdkit")
        if config.fcd:
            require("fcd_torch")
        from .source import build_molecule_data

        return build_molecule_data(kind, config, state)

    return build


DATASETS.register("qm9", config=QM9Config)(_build("qm9"))
DATASETS.register("moses", config=MosesConfig)(_build("moses"))
DATASETS.register("smiles", config=SmilesConfig)(_build("smiles"))
