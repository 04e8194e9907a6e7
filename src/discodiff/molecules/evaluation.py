"""The sample metrics of a molecule data set, with their references computed once and cached.

Keys (fractions in [0, 1] unless said; definitions in :mod:`.metrics`, :mod:`.moses_metrics` and
:mod:`.properties`):

- always: ``validity`` (DiGress's, largest fragment kept), ``validity_strict`` (one connected
  molecule), ``uniqueness``, ``novelty``; ``fcd`` against the test split (``data.fcd``);
- ``data.moses_metrics``: ``filters``, ``int_div``, and ``snn``, ``frag``, ``scaf`` against the
  test split; for MOSES also ``fcd_testsf``, ``snn_testsf``, ``frag_testsf``, ``scaf_testsf``
  against test_scaffolds (MOSES's "TestSF");
- ``data.condition``: ``<property>_mae`` of the valid samples to the value their label requests,
  beside ``<property>_mae_test_own_bin`` and ``<property>_mae_test_random_bin`` (the test
  molecules against their own bins' and a random bin's targets).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from torch import Tensor

from ..graphs.state import GraphState
from .corpus import Corpus
from .metrics import FCD, Decoded, FCDStats, basic_metrics, decode_graphs
from .moses_metrics import (
    MORGAN_BITS,
    cosine_similarity,
    fraction_passing_filters,
    fragment_counts,
    internal_diversity,
    morgan_fingerprints,
    scaffold_counts,
    snn,
)
from .properties import property_mae, property_values, reference_maes

SUFFIX = {"test": "", "val": "_testsf"}
"""Metric-name suffix per reference split (MOSES's val is test_scaffolds)."""


class MoleculeMetrics:
    """Scores generated graphs as molecules against a :class:`~.corpus.Corpus`."""

    def __init__(self, corpus: Corpus) -> None:
        self.corpus = corpus
        self.cache = corpus.cache
        self._fcd: FCD | None = None
        self._novelty: set[str] | None = None

    @property
    def reference_splits(self) -> tuple[str, ...]:
        return ("test", "val") if self.corpus.kind == "moses" else ("test",)

    def fcd_model(self) -> FCD:
        if self._fcd is None:
            self._fcd = FCD()
        return self._fcd

    # ---- references (cached) -------------------------------------------------------------------

    def fcd_reference(self, split: str) -> FCDStats:
        arrays = self.cache.load_arrays(f"fcd_{split}")
        if arrays is None:
            stats = self.fcd_model().stats(self.corpus.reference_smiles(split))
            arrays = {"mu": stats.mu, "sigma": stats.sigma}
            self.cache.save_arrays(f"fcd_{split}", arrays)
        return FCDStats(arrays["mu"], arrays["sigma"])

    def moses_reference(self, split: str) -> tuple[np.ndarray, Counter, Counter]:
        """Fingerprints, fragment counts and scaffold counts of a reference split."""
        arrays, counts = self.cache.load_arrays(f"fp_{split}"), self.cache.load_json(f"frag_scaf_{split}")
        if arrays is None or counts is None:
            from .convert import parse_smiles

            mols = [parse_smiles(s) for s in self.corpus.reference_smiles(split)]
            arrays = {"bits": np.packbits(morgan_fingerprints(mols), axis=1)}
            counts = {"frag": fragment_counts(mols), "scaf": scaffold_counts(mols)}
            self.cache.save_arrays(f"fp_{split}", arrays)
            self.cache.save_json(f"frag_scaf_{split}", counts)
        fps = np.unpackbits(arrays["bits"], axis=1)[:, :MORGAN_BITS]
        return fps, Counter(counts["frag"]), Counter(counts["scaf"])

    def prepare(self) -> list[Path]:
        """Compute (or find) every reference; returns the cache files."""
        for split in self.reference_splits:
            if self.corpus.config.fcd:
                self.fcd_reference(split)
            if self.corpus.config.moses_metrics:
                self.moses_reference(split)
        return sorted(self.cache.dir.glob("*")) if self.cache.enabled else []

    # ---- scoring -----------------------------------------------------------------------------

    def decode(self, samples: GraphState) -> Decoded:
        return decode_graphs(samples.nodes, samples.edges, samples.node_mask, self.corpus.atom_types)

    def __call__(self, samples: GraphState, cond: Tensor | None = None) -> dict[str, float]:
        decoded = self.decode(samples)
        if self._novelty is None:
            self._novelty = self.corpus.novelty_reference()
        out = basic_metrics(decoded, self._novelty)
        valid = decoded.valid_smiles
        config = self.corpus.config
        if config.fcd:
            gen = self.fcd_model().stats(valid)
            for split in self.reference_splits:
                out[f"fcd{SUFFIX[split]}"] = self.fcd_model().distance(self.fcd_reference(split), gen)
        mols = [m for m in decoded.mols if m is not None]
        if config.moses_metrics:
            out.update(self.moses_scores(mols))
        if self.corpus.bins is not None and cond is not None:
            out.update(self.property_scores(decoded, cond))
        return out

    def moses_scores(self, mols: list) -> dict[str, float]:
        fps = morgan_fingerprints(mols)
        frags, scafs = fragment_counts(mols), scaffold_counts(mols)
        out = {"filters": fraction_passing_filters(mols), "int_div": internal_diversity(fps)}
        for split in self.reference_splits:
            ref_fps, ref_frags, ref_scafs = self.moses_reference(split)
            suffix = SUFFIX[split]
            out[f"snn{suffix}"] = snn(fps, ref_fps)
            out[f"frag{suffix}"] = cosine_similarity(ref_frags, frags)
            out[f"scaf{suffix}"] = cosine_similarity(ref_scafs, scafs)
        return out

    def property_scores(self, decoded: Decoded, cond: Tensor) -> dict[str, float]:
        bins, name = self.corpus.bins, self.corpus.config.condition
        labels = cond.cpu().numpy()
        keep = [i for i, m in enumerate(decoded.mols) if m is not None and labels[i] >= 0]
        values = property_values(name, [decoded.mols[i] for i in keep])
        refs = reference_maes(bins, self.corpus.property_values["test"])
        return {
            f"{name}_mae": property_mae(bins, values, labels[keep]),
            f"{name}_mae_test_own_bin": refs["own_bin"],
            f"{name}_mae_test_random_bin": refs["random_bin"],
        }
