"""Gradient accumulation (``train.grad_accum``): N micro-batches make one optimizer step equal to
one big batch, resume exactly, and all-reduce once under DDP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from discodiff.build import build_run
from discodiff.config import ConfigError
from discodiff.data.corpus import read_text
from discodiff.run import train_run
from discodiff.runconfig import TrainConfig, parse_config
from discodiff.train import Trainer, latest_checkpoint, load_checkpoint
from discodiff.train.loop import _LossModule
from runs import tiny, tiny_config, write_config

MDLM = {
    "data": {"name": "text", "seq_len": 16},
    "method": {"name": "mdlm"},  # draws t and the masks with batch.rand: the noise must match
    "net": {"name": "transformer", "width": 32, "depth": 1, "heads": 2},
}
SRC = str(Path(__file__).resolve().parents[1] / "src")


def trainer(tmp_path, grad_accum: int, name: str) -> Trainer:
    corpus = tmp_path / "corpus.txt"
    if not corpus.is_file():
        corpus.write_text(read_text(None)[:20_000], encoding="utf-8")
    torch.manual_seed(0)
    data, method = build_run(parse_config({**MDLM, "data": {**MDLM["data"], "path": str(corpus)}}))
    cfg = TrainConfig(steps=10, batch_size=12, grad_accum=grad_accum, lr=1e-3, warmup_steps=1, ema_decay=0.9)
    return Trainer(method, data, cfg, tmp_path / name, seed=0, device=torch.device("cpu"))


def assert_same_parameters(a: Trainer, b: Trainer) -> None:
    for (name, p), q in zip(a.method.named_parameters(), b.method.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=f"{name} differs")


def paired_steps(a: Trainer, b: Trainer) -> tuple[dict, dict]:
    """One step of each from the same global RNG state; b must leave the RNG where a leaves it."""
    state = torch.get_rng_state()
    rec_a = a.train_step()
    after = torch.get_rng_state()
    torch.set_rng_state(state)
    rec_b = b.train_step()
    assert torch.equal(torch.get_rng_state(), after)
    return rec_a, rec_b


def test_micro_batches_equal_one_big_batch(tmp_path):
    """Loss, gradient norm and parameters after each of two steps match one batch of 12."""
    big, small = trainer(tmp_path, 1, "big"), trainer(tmp_path, 4, "small")
    for _ in range(2):
        a, b = paired_steps(big, small)
        assert float(b["loss"]) == pytest.approx(float(a["loss"]), rel=1e-5)
        assert float(b["grad_norm"]) == pytest.approx(float(a["grad_norm"]), rel=1e-4)
        assert_same_parameters(big, small)


def test_config_checks():
    with pytest.raises(ValueError, match=r"divisible by train.grad_accum \(5\)"):
        TrainConfig(batch_size=12, grad_accum=5)
    with pytest.raises(ConfigError, match="grad_accum must be >= 1"):
        parse_config({**MDLM, "train": {"grad_accum": 0}})


def test_accumulation_resumes_exactly(tmp_path):
    cfg = tiny_config(train={"grad_accum": 4}, eval={"num_samples": 0})
    train_run(cfg, tmp_path / "straight", progress=False)
    train_run(cfg, tmp_path / "split", max_steps=10, progress=False)
    train_run(cfg, tmp_path / "split", resume=True, progress=False)
    a, b = (
        load_checkpoint(latest_checkpoint(tmp_path / r / "checkpoints")).tensors
        for r in ("straight", "split")
    )
    for group in ("model", "ema", "optim"):
        for key in a[group]:
            assert torch.equal(a[group][key], b[group][key]), f"{group}.{key} differs after resume"


def test_ddp_all_reduces_once_per_step(tmp_path):
    """Under DDP (one gloo process here) the first N - 1 backward passes skip the all-reduce."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        reference, ddp = trainer(tmp_path, 1, "ref"), trainer(tmp_path, 3, "ddp")
        ddp.loss_module = DistributedDataParallel(_LossModule(ddp.method))
        reductions = []

        def hook(state, bucket):  # one process: the all-reduce of a bucket is the bucket itself
            reductions.append(bucket.index())
            future = torch.futures.Future()
            future.set_result(bucket.buffer())
            return future

        ddp.loss_module.register_comm_hook(None, hook)
        for step in range(2):
            paired_steps(reference, ddp)
            assert len(reductions) == step + 1  # one bucket, all-reduced on the last micro-batch only
        assert_same_parameters(reference, ddp)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_ddp_with_accumulation_matches_one_process(tmp_path):
    """torchrun, 2 processes x 2 micro-batches of 16 == 1 process, 1 batch of 64 (about 60 s)."""
    base = tiny(train={"steps": 6, "ckpt_every": 100}, eval={"num_samples": 0, "nll_examples": 50})
    one = write_config(tmp_path / "one.yaml", base)
    two = write_config(tmp_path / "two.yaml", {**base, "train": {**base["train"], "grad_accum": 2}})
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    runs = {
        "one": [sys.executable, "-m", "discodiff", "train", one],
        "two": [*torchrun, "-m", "discodiff", "train", two],
    }
    for name, cmd in runs.items():
        proc = subprocess.run(
            [*cmd, "--no-progress", "--out", str(tmp_path / name)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (
        load_checkpoint(latest_checkpoint(tmp_path / r / "checkpoints")).tensors["model"]
        for r in ("one", "two")
    )
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=f"{key} differs")
