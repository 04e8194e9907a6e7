"""Non-finite values reach the trainer's stop for every real method; the CLI tells user errors
(one line, status 2) from bugs (traceback)."""

import math

import pytest
import torch

from discodiff.base import METHODS
from discodiff.build import build_data, build_method
from discodiff.cli import main
from discodiff.errors import ConfigError, TrainingError
from discodiff.runconfig import TrainConfig, parse_config
from discodiff.train import Trainer, latest_checkpoint, load_checkpoint
from discodiff.train.checkpoint import save_checkpoint
from runs import tiny, write_config

TOY = {"data": {"name": "toy2d", "eval_size": 8}, "net": {"name": "mlp", "hidden": 8, "depth": 1}}
TEXT = {
    "data": {"name": "text", "seq_len": 8},
    "net": {"name": "transformer", "width": 8, "depth": 1, "heads": 1, "cond_dim": 8},
}
GRAPHS = {
    "data": {"name": "graphs", "source": "planar", "num_graphs": 20},
    "net": {"name": "graph_transformer", "depth": 1, "width_x": 16, "width_e": 8, "width_y": 8, "heads": 2},
}
METHOD_OPTIONS = {
    "digress": {"timesteps": 4},
    "d3pm": {"timesteps": 4},
    "gaussian": {"timesteps": 4},
    "diffusion_lm": {"timesteps": 4, "sample_steps": 4},
}
DATA = {}


def _method(name: str):
    """The registered method ``name`` on the first tiny data set it accepts (toy 2D, text, graphs)."""
    for base in (TOY, TEXT, GRAPHS):
        cfg = parse_config({**base, "method": {"name": name, **METHOD_OPTIONS.get(name, {})}})
        key = base["data"]["name"]
        data = DATA.get(key) or DATA.setdefault(key, build_data(cfg))
        try:
            return data, build_method(cfg, data)
        except ConfigError:
            continue
    pytest.fail(f"no tiny data set fits method {name!r}: add one to this test")


@pytest.mark.parametrize("name", METHODS.names())
def test_nan_network_output_stops_training_with_step_and_checkpoint(name, tmp_path):
    """A network that returns NaN ends training in a TrainingError naming the step and the last good
    checkpoint, for every registered method (what each one detects: NaN logits, a NaN loss, a NaN
    gradient). Mutations: drop the FloatingPointError conversion in ``Trainer.stop_on_nonfinite``
    (the token and embedding methods, which check their outputs, then end in a raw
    FloatingPointError); drop the loss and gradient checks in ``Trainer.check_finite`` (the Gaussian
    method then trains on NaN)."""
    torch.manual_seed(0)
    data, method = _method(name)
    config = TrainConfig(steps=3, batch_size=4, ckpt_every=1, ema_decay=0.0, warmup_steps=0)
    trainer = Trainer(method, data, config, tmp_path, seed=0, device=torch.device("cpu"))
    trainer.fit(max_steps=1, progress=False)
    with torch.no_grad():
        for p in method.parameters():
            p.fill_(math.nan)
    with pytest.raises(
        TrainingError, match=r"at step 2; training stopped\. The last good checkpoint is .*step_00000001"
    ):
        trainer.fit(progress=False)


def _poisoned_run(tmp_path):
    """A run trained one step whose checkpoint then holds weights of 1e30 (finite, so that it loads:
    NaN weights are refused at load), so that the resumed step's loss is NaN."""
    cfg = write_config(
        tmp_path / "tiny.yaml",
        tiny(train={"steps": 3, "ckpt_every": 1}, eval={"nll_examples": 0, "num_samples": 0}),
    )
    run = tmp_path / "run"
    assert main(["train", cfg, "--out", str(run), "--no-progress", "--max-steps", "1"]) == 0
    root = run / "checkpoints"
    ckpt = load_checkpoint(latest_checkpoint(root))
    ckpt.tensors["model"] = {k: torch.full_like(v, 1e30) for k, v in ckpt.tensors["model"].items()}
    ckpt.state = {k: v for k, v in ckpt.state.items() if k not in ("format", "step", "sha256")}
    save_checkpoint(root, ckpt, keep=3)
    return cfg, run


def test_cli_reports_a_diverged_run_in_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    """Mutation: take TrainingError (UserError) out of the CLI's caught errors, or ignore --debug."""
    cfg, run = _poisoned_run(tmp_path)
    capsys.readouterr()
    resume = ["train", cfg, "--out", str(run), "--no-progress", "--resume"]
    assert main(resume) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert "loss became nan at step 2" in err and "step_00000001" in err
    with pytest.raises(TrainingError):
        main([*resume, "--debug"])


def test_cli_keeps_the_traceback_of_a_bug(tmp_path, monkeypatch):
    """A ValueError that is not a user error is a bug: it propagates. Mutation: catch ValueError again."""

    def broken(*args, **kwargs):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr("discodiff.build.load_run", broken)
    with pytest.raises(ValueError, match="internal invariant"):
        main(["sample", str(tmp_path)])
