"""Property (issue 18): whatever a config or data file holds, ``discodiff train`` either trains
a few steps or stops with one clear error line (exit status 2), never a traceback.

The mutations are tests/mutations.py's. CI runs a fixed, derandomized sample of
``PROPERTY_EXAMPLES`` cases; ``-m slow`` runs 300. ``benchmarks/robustness.py --property N``
counts the outcomes of N cases.
"""

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from mutations import mutated_runs, run_mutated

PROPERTY_EXAMPLES = 20
"""Cases in the default suite (about 10 s)."""


def check(case) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        outcome, detail = run_mutated(case, Path(tmp))
    assert outcome in ("trained", "clear"), f"{case.mutations}: {outcome}\n{detail}"


SETTINGS = dict(deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=PROPERTY_EXAMPLES, **SETTINGS)
@given(case=mutated_runs())
def test_mutated_runs_train_or_fail_clearly(case):
    check(case)


@pytest.mark.slow
@settings(max_examples=300, **SETTINGS)
@given(case=mutated_runs())
def test_many_mutated_runs_train_or_fail_clearly(case):
    check(case)
