"""Training: exact resume, atomic checkpoints, clear stops on NaN, corrupted checkpoints."""

import json

import pytest
import torch

from discodiff.base import Batch, LossOutput, Method, NLLOutput, SampleOutput
from discodiff.build import build_data
from discodiff.run import train_run
from discodiff.runconfig import TrainConfig
from discodiff.train import CheckpointError, Trainer, TrainingError, latest_checkpoint, load_checkpoint
from runs import tiny_config


def final_tensors(run_dir):
    return load_checkpoint(latest_checkpoint(run_dir / "checkpoints")).tensors


def test_resume_continues_exactly(tmp_path):
    """N steps straight == N/2 steps, stop, resume, N/2 steps: identical weights, EMA, optimizer."""
    cfg = tiny_config(eval={"num_samples": 0})
    train_run(cfg, tmp_path / "straight", progress=False)
    train_run(cfg, tmp_path / "split", max_steps=10, progress=False)
    assert load_checkpoint(latest_checkpoint(tmp_path / "split" / "checkpoints")).step == 10
    train_run(cfg, tmp_path / "split", resume=True, progress=False)
    a, b = final_tensors(tmp_path / "straight"), final_tensors(tmp_path / "split")
    for group in ("model", "ema", "optim"):
        assert a[group].keys() == b[group].keys()
        for key in a[group]:
            assert torch.equal(a[group][key], b[group][key]), f"{group}.{key} differs after resume"


def test_run_outputs_and_atomic_checkpoints(tmp_path):
    run = tmp_path / "run"
    metrics = train_run(tiny_config(), run, progress=False)
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "metrics.json",
        "samples.npy",
        "samples.png",
        "loss.png",
        "trajectory.png",
    ):
        assert (run / name).is_file(), name
    assert {"w2", "bits_per_dim", "nll_nats"} <= metrics.keys()
    ckpts = run / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["latest", "step_00000010", "step_00000020"]
    assert (ckpts / "latest").read_text().strip() == "step_00000020"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [5, 10, 15, 20]
    with pytest.raises(Exception, match="--resume"):
        train_run(tiny_config(), run, progress=False)


class Exploding(Method):
    """A test double whose loss becomes NaN at its sixth call."""

    event_shape = (2,)

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))
        self.calls = 0

    def loss(self, batch: Batch) -> LossOutput:
        self.calls += 1
        value = ((batch.x - self.w) ** 2).mean()
        if self.calls == 6:
            value = value * float("nan")
        return LossOutput(value, value.detach().expand(batch.size))

    def nll(self, batch, *, estimator="bound") -> NLLOutput:
        raise AssertionError("not used")

    def sample(self, num_or_shape, **kw) -> SampleOutput:
        raise AssertionError("not used")


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path):
    data = build_data(tiny_config())
    cfg = TrainConfig(steps=10, batch_size=8, ckpt_every=2, ema_decay=0.0)
    trainer = Trainer(Exploding(), data, cfg, tmp_path, seed=0, device=torch.device("cpu"))
    with pytest.raises(TrainingError, match=r"loss became nan at step 6.*step_00000004"):
        trainer.fit(progress=False)
    assert load_checkpoint(latest_checkpoint(tmp_path / "checkpoints")).step == 4


def test_nan_in_training_data_is_refused(tmp_path):
    data = build_data(tiny_config())
    stream = data.train_stream

    def poisoned(seed):
        s = stream(seed)
        original = s.next

        def next_batch(n):
            x, c = original(n)
            x[3, 1] = float("nan")
            return x, c

        s.next = next_batch
        return s

    data.train_stream = poisoned
    trainer = Trainer(
        Exploding(), data, TrainConfig(steps=2, batch_size=8), tmp_path, seed=0, device=torch.device("cpu")
    )
    with pytest.raises(ValueError, match="training batch of step 1 contains NaN"):
        trainer.fit(progress=False)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    train_run(tiny_config(eval={"num_samples": 0}), run, progress=False)
    return run


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "bad_json", "missing_state"])
def test_corrupted_checkpoint_gives_clear_error(trained_run, tmp_path, damage):
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(latest_checkpoint(trained_run / "checkpoints"), ckpt)
    tensors = ckpt / "tensors.safetensors"
    if damage == "flip_byte":
        raw = bytearray(tensors.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        tensors.write_bytes(bytes(raw))
        match = "SHA-256"
    elif damage == "truncate":
        tensors.write_bytes(tensors.read_bytes()[:100])
        match = "SHA-256"
    elif damage == "bad_json":
        (ckpt / "state.json").write_text("{not json")
        match = "not valid JSON"
    else:
        (ckpt / "state.json").unlink()
        match = "state.json is missing"
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(ckpt)
