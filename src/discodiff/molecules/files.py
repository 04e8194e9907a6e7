"""Reading SMILES files: CSV with a ``smiles`` column, or one SMILES per line; ``.gz`` allowed.

A file whose first line names a column ``smiles`` (any case, comma-separated) is read as CSV
(QM9's ``Index,SMILES``, MOSES's ``SMILES``); otherwise every non-empty line is a molecule, its
first whitespace-separated field the SMILES (the ``.smi`` convention). Line numbers are kept, so
errors can name them.
"""

from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass
from pathlib import Path

from .deps import DataError

SMILES_COLUMN = "smiles"
"""The CSV column read (compared case-insensitively)."""


@dataclass
class SmilesRecords:
    """The molecules of one file.

    Attributes:
        smiles: the SMILES strings, in file order.
        lines: their 1-based line numbers in the file.
        ids: the first column of a CSV with more than one column (QM9's ``Index``), else ``None``.
        path: the file.
    """

    smiles: list[str]
    lines: list[int]
    ids: list[str] | None
    path: Path

    def __len__(self) -> int:
        return len(self.smiles)


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return path.open(encoding="utf-8")


def read_smiles_file(path: str | Path) -> SmilesRecords:
    """Every molecule of a SMILES file (see the module docstring for the formats)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"SMILES file not found: {path}")
    try:
        with _open_text(path) as f:
            text = f.read()
    except (OSError, UnicodeDecodeError, EOFError) as err:
        raise DataError(f"{path}: cannot read it as (gzipped) UTF-8 text: {err}") from None
    rows = text.splitlines()
    if not any(r.strip() for r in rows):
        raise DataError(f"{path}: the file holds no molecules")
    header = [c.strip().lower() for c in rows[0].split(",")]
    if SMILES_COLUMN in header:
        return _read_csv(rows, header, path)
    smiles, lines = [], []
    for number, row in enumerate(rows, start=1):
        if row.strip():
            smiles.append(row.split()[0])
            lines.append(number)
    return SmilesRecords(smiles, lines, None, path)


def _read_csv(rows: list[str], header: list[str], path: Path) -> SmilesRecords:
    col = header.index(SMILES_COLUMN)
    keep_ids = len(header) > 1 and col != 0
    smiles, lines, ids = [], [], []
    for number, fields in enumerate(csv.reader(rows[1:]), start=2):
        if not fields or not any(f.strip() for f in fields):
            continue
        if len(fields) != len(header):
            raise DataError(f"{path}, line {number}: {len(fields)} fields where the header has {len(header)}")
        smiles.append(fields[col].strip())
        lines.append(number)
        if keep_ids:
            ids.append(fields[0].strip())
    if not smiles:
        raise DataError(f"{path}: the file holds a header but no molecules")
    return SmilesRecords(smiles, lines, ids if keep_ids else None, path)


def read_smiles_column(path: str | Path) -> list[str]:
    """Just the SMILES strings of a file."""
    return read_smiles_file(path).smiles
