"""The command line, end to end: train -> sample -> eval --json, and clear errors."""

import json

import numpy as np
import pytest

from discodiff.cli import main
from runs import tiny, write_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    cfg = write_config(tmp / "tiny.yaml", tiny())
    assert (
        main(
            ["train", cfg, "--out", str(tmp / "run"), "--no-progress", "train.steps=10", "--max-steps", "10"]
        )
        == 0
    )
    return tmp / "run"


def test_sample_writes_array_and_picture(run_dir, tmp_path, capsys):
    out = tmp_path / "s.npy"
    assert (
        main(["sample", str(run_dir), "--num", "16", "--steps", "5", "--sampler", "ddim", "--out", str(out)])
        == 0
    )
    assert np.load(out).shape == (16, 2)
    assert (tmp_path / "s.png").is_file()


def test_eval_json_has_the_metrics(run_dir, capsys):
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--json", "eval.num_samples=50"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"w2", "bits_per_dim", "step"} <= metrics.keys()
    assert metrics["step"] == 10


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "missing.yaml"], "config file not found"),
        (["sample", "no_such_run"], "not a run directory"),
        (["eval", "no_such_run", "--json"], "not a run directory"),
    ],
)
def test_user_errors_exit_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unknown_config_key_exits_2(tmp_path, capsys):
    cfg = write_config(tmp_path / "bad.yaml", tiny(train={"lrr": 1}))
    assert main(["train", cfg, "--out", str(tmp_path / "r")]) == 2
    assert "unknown key 'config.train.lrr'" in capsys.readouterr().err


def test_sampler_name_checked(run_dir, capsys):
    assert main(["sample", str(run_dir), "--sampler", "nope"]) == 2
    assert "unknown sampler 'nope'" in capsys.readouterr().err
