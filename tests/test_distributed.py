"""A 2-process torchrun (gloo) run reproduces one process with the same global batch."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from discodiff.train import latest_checkpoint, load_checkpoint
from runs import tiny, write_config

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _run(cmd, cwd):
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_process_ddp_matches_one_process(tmp_path):
    cfg = write_config(
        tmp_path / "cfg.yaml",
        tiny(train={"steps": 12, "ckpt_every": 100}, eval={"num_samples": 0, "nll_examples": 50}),
    )
    base = [sys.executable, "-m", "discodiff", "train", cfg, "--no-progress", "--out"]
    _run([*base, str(tmp_path / "one")], tmp_path)
    _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "discodiff",
            "train",
            cfg,
            "--no-progress",
            "--out",
            str(tmp_path / "two"),
        ],
        tmp_path,
    )
    one = load_checkpoint(latest_checkpoint(tmp_path / "one" / "checkpoints")).tensors["model"]
    two = load_checkpoint(latest_checkpoint(tmp_path / "two" / "checkpoints")).tensors["model"]
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-5, msg=f"{key} differs")
