"""Every bad input and damaged run of issue 18 (tests/bad_inputs.py): one clear error line naming
the field or file, or, for a damaged latest checkpoint, one warning and the newest intact one."""

import pytest
import yaml

from bad_inputs import BASE_TOY, CASES, classify
from discodiff.cli import main

SLOW = {"seq_len_100000"}  # 10-20 s: the probe runs one attention layer over 100,000 positions


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A tiny trained run with checkpoints at steps 10 and 20, copied by the run-directory cases."""
    tmp = tmp_path_factory.mktemp("base")
    cfg = tmp / "base.yaml"
    cfg.write_text(yaml.safe_dump(BASE_TOY))
    assert main(["train", str(cfg), "--out", str(tmp / "run"), "--no-progress"]) == 0
    return tmp / "run"


def run_case(case, base_run, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    argv, release = case.setup(tmp_path, base_run)
    capsys.readouterr()
    try:
        code = main(argv)
    except Exception:  # an escaped exception is what the case must never give
        code = None
    finally:
        if release is not None:
            release()
    err = capsys.readouterr().err
    expected = "clear" if case.expect == "error" else "ok"
    assert classify(case, argv[0], code, err) == expected, err


@pytest.mark.parametrize("case", [c for c in CASES if c.name not in SLOW], ids=lambda c: c.name)
def test_case(case, base_run, tmp_path, capsys, monkeypatch):
    run_case(case, base_run, tmp_path, capsys, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in CASES if c.name in SLOW], ids=lambda c: c.name)
def test_slow_case(case, base_run, tmp_path, capsys, monkeypatch):
    run_case(case, base_run, tmp_path, capsys, monkeypatch)
