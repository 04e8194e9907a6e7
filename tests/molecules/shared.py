"""Paths of the shared molecule data (tests skip cleanly when it is absent)."""

from pathlib import Path

import pytest

pytest.importorskip("rdkit")

MOLECULES = Path(__file__).parents[2] / ".." / "shared" / "data" / "molecules"
QM9_FILE = MOLECULES / "qm9" / "qm9.csv.gz"
MOSES_DIR = MOLECULES / "moses"

needs_qm9 = pytest.mark.skipif(not QM9_FILE.is_file(), reason="shared QM9 file absent")
needs_moses = pytest.mark.skipif(
    not (MOSES_DIR / "test.csv.gz").is_file(), reason="shared MOSES files absent"
)
