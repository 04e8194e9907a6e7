"""The round trip SMILES -> graph -> molecule -> canonical SMILES, measured on a whole file.

``python -m discodiff.molecules.roundtrip ../shared/data/molecules/qm9/qm9.csv.gz`` prints the
fraction that comes back exactly (canonical SMILES equal to the input's) and counts the rest by
reason: a refusal from :data:`~discodiff.molecules.convert.REASONS`, ``stereo`` (the graph keeps no
stereochemistry), ``decode_invalid`` (the graph's molecule fails sanitization) or ``changed`` (it
sanitizes to another molecule).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from .convert import (
    AtomTypes,
    Charges,
    Chem,
    canonical_smiles,
    discover_atom_types,
    graph_to_mol,
    mol_to_graph,
    parse_smiles,
    sanitize,
)

EXAMPLES_PER_REASON = 3
"""How many example SMILES a report keeps for each reason."""


@dataclass
class RoundTripReport:
    """Counts of a round trip over ``total`` SMILES."""

    total: int
    exact: int
    reasons: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def fraction_exact(self) -> float:
        return self.exact / self.total if self.total else 0.0

    def to_dict(self) -> dict:
        return {
            "total": self.total,
            "exact": self.exact,
            "fraction_exact": self.fraction_exact,
            "reasons": dict(self.reasons.most_common()),
            "examples": self.examples,
        }


def round_trip_one(smiles: str, atom_types: AtomTypes, *, max_atoms: int | None, charges: Charges) -> str:
    """``"exact"`` or the reason the SMILES does not come back."""
    mol = parse_smiles(smiles)
    if mol is None:
        return "unparsable"
    graph = mol_to_graph(mol, atom_types, max_atoms=max_atoms, charges=charges)
    if isinstance(graph, str):
        return graph
    back = sanitize(graph_to_mol(graph.atoms, graph.bonds, atom_types))
    if back is None:
        return "decode_invalid"
    if canonical_smiles(back) == canonical_smiles(mol):
        return "exact"
    if canonical_smiles(back) == Chem.MolToSmiles(mol, isomericSmiles=False):
        return "stereo"
    return "changed"


def round_trip(
    smiles: Sequence[str],
    atom_types: AtomTypes | None = None,
    *,
    max_atoms: int | None = None,
    charges: Charges = "types",
) -> RoundTripReport:
    """Round-trip every SMILES; ``atom_types`` default to those found in ``smiles``."""
    if atom_types is None:
        atom_types = discover_atom_types(
            (m for m in map(parse_smiles, smiles) if m is not None), charges=charges
        )
    report = RoundTripReport(total=len(smiles), exact=0)
    for s in smiles:
        outcome = round_trip_one(s, atom_types, max_atoms=max_atoms, charges=charges)
        if outcome == "exact":
            report.exact += 1
            continue
        report.reasons[outcome] += 1
        examples = report.examples.setdefault(outcome, [])
        if len(examples) < EXAMPLES_PER_REASON:
            examples.append(s)
    return report


def main(argv: list[str] | None = None) -> int:
    from .files import read_smiles_column

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("path", help="a SMILES file (.csv, .smi, .txt, optionally .gz)")
    p.add_argument("--charges", choices=["types", "refuse"], default="types")
    p.add_argument("--max-atoms", type=int)
    args = p.parse_args(argv)
    smiles = read_smiles_column(args.path)
    start = time.perf_counter()
    report = round_trip(smiles, max_atoms=args.max_atoms, charges=args.charges)
    print(json.dumps({**report.to_dict(), "seconds": time.perf_counter() - start}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
