"""The user's workflow, in process: what training logs and records, standard errors, evaluation
precision and progress, plots, inpainting and text prompts."""

import json
import math
import time

import matplotlib.figure
import numpy as np
import pytest
import torch
from torch import nn

from discodiff.base import METHODS, Batch, EstimatorInfo, LossOutput, Method, NLLOutput
from discodiff.build import build_data, build_run
from discodiff.cli import main
from discodiff.commands.declared import declared_method
from discodiff.errors import UsageError
from discodiff.evaluate import likelihood
from discodiff.metrics.stats import ratio_stderr
from discodiff.plots import loss_curve, scatter_limits
from discodiff.precision import network_precision, resolved_eval
from discodiff.prompting import text_known
from discodiff.run import train_run
from discodiff.runconfig import EvalConfig, TrainConfig, parse_config
from discodiff.train import Trainer, TrainingError
from discodiff.utils import LN2
from runs import tiny, tiny_config


def replaced(**sections):
    """The tiny config with whole sections replaced."""
    cfg = tiny()
    cfg.update(sections)
    return parse_config(cfg)


class Counting(Method):
    """A test double: its k-th loss is k; its NLL calls its network ``calls`` times per batch and
    returns given per-example values."""

    event_shape = (2,)
    nll_estimators = ("bound", "exact")

    def __init__(self, values=None, calls=3):
        super().__init__()
        self.net = nn.Linear(2, 2)
        self.k, self.values, self.calls, self.offset = 0, values, calls, 0

    def loss(self, batch: Batch) -> LossOutput:
        self.k += 1
        value = (self.net.weight * 0).sum() + self.k
        return LossOutput(value, value.detach().expand(batch.size))

    def nll(self, batch, *, estimator="bound") -> NLLOutput:
        for _ in range(self.calls):
            self.net(batch.x)
        n = batch.size
        out = self.values[self.offset : self.offset + n]
        self.offset = (self.offset + n) % len(self.values)
        return NLLOutput(out, torch.full((n,), 2.0))

    def estimator_info(self, name: str) -> EstimatorInfo:
        return EstimatorInfo(name, exact=name == "exact", monte_carlo=name == "bound")


def test_logged_loss_is_the_mean_of_its_window(tmp_path):
    data = build_data(tiny_config())
    cfg = TrainConfig(steps=10, batch_size=8, log_every=5, ema_decay=0.0, warmup_steps=1)
    Trainer(Counting(), data, cfg, tmp_path, seed=0, device=torch.device("cpu")).fit(progress=False)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["loss"]) for r in records] == [(5, 3.0), (10, 8.0)]  # means of 1..5, 6..10


def test_time_budget_says_so_and_records_why_training_stopped(tmp_path, capsys):
    cfg = tiny_config(train={"steps": 50, "time_budget_s": 1e-9}, eval={"num_samples": 0})
    metrics = train_run(cfg, tmp_path / "run", progress=False)
    err = capsys.readouterr().err
    assert "time budget of 1e-09 s reached" in err and "at step 1 of 50 planned" in err
    assert (metrics["step"], metrics["planned_steps"], metrics["stopped_by"]) == (1, 50, "time_budget")
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["stopped_by"] == "time_budget" and saved["train_seconds"] > 0


def test_non_finite_stop_is_recorded(tmp_path, monkeypatch):
    def diverge(self):
        raise TrainingError("loss became nan at step 1")

    monkeypatch.setattr(Trainer, "train_step", diverge)
    with pytest.raises(TrainingError):
        train_run(tiny_config(), tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["stopped_by"] == "nan" and saved["planned_steps"] == 20 and saved["step"] == 0


def test_ratio_stderr_predicts_the_spread_of_the_estimate():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(100, generator=g, dtype=torch.float64) * 3 + 10
    assert ratio_stderr(a, torch.full((100,), 4.0)) == pytest.approx(float(a.std()) / 4 / 10, rel=1e-9)
    # unequal dimensions: the delta method against 4,000 replicate data sets (rel. error of a
    # standard deviation from 4,000 draws: about 1 / sqrt(2 * 4000) = 1.1%; 5% allowed)
    reps, n = 4000, 200
    b = torch.randint(5, 50, (reps, n), generator=g).double()
    a = b * 1.5 + torch.randn(reps, n, generator=g, dtype=torch.float64) * b.sqrt()
    ratios = a.sum(1) / b.sum(1)
    predicted = np.mean([ratio_stderr(a[i], b[i]) for i in range(200)])
    assert predicted == pytest.approx(float(ratios.std()), rel=0.05)


def test_likelihood_stderr_for_monte_carlo_estimators_and_progress_per_network_call(capsys):
    data = build_data(tiny_config())
    values = torch.linspace(1.0, 9.0, 40, dtype=torch.float64)
    method = Counting(values, calls=3)
    cfg = EvalConfig(nll_examples=40, batch_size=10, estimators=["bound", "exact"])
    out = likelihood(method, data, cfg, progress=True)
    bits = values / 2 / LN2
    assert out["bits_per_dim"] == pytest.approx(float(bits.mean()))
    assert out["bits_per_dim_stderr"] == pytest.approx(float(bits.std()) / math.sqrt(40))
    assert "bits_per_dim_exact_stderr" not in out  # not a Monte Carlo estimate
    err = capsys.readouterr().err  # not a terminal: one plain line per estimator
    assert "nll (bound): 12/12 network calls" in err and "nll (exact): 12/12 network calls" in err


def test_networks_run_in_the_requested_precision():
    _, method = build_run(tiny_config())
    seen = []
    hook = method.net.blocks[0].register_forward_hook(lambda mod, i, o: seen.append(o.dtype))
    x = torch.randn(4, 2)
    with network_precision(method, "bf16"):
        out = method.net(x, torch.rand(4), None)
    assert seen[-1] == torch.bfloat16 and out.dtype == torch.float32  # bf16 inside, fp32 out
    method.net(x, torch.rand(4), None)
    assert seen[-1] == torch.float32  # restored after the block
    hook.remove()
    assert resolved_eval(tiny_config(train={"precision": "bf16"})).precision == "bf16"
    assert (
        resolved_eval(tiny_config(train={"precision": "bf16"}, eval={"precision": "fp32"})).precision
        == "fp32"
    )
    assert resolved_eval(tiny_config()).precision == "fp32"


def test_auto_precision_is_bf16_only_where_it_runs_natively(monkeypatch):
    """``train.precision: auto`` resolves when the config is read (so the run records it): bf16
    where bf16 matmuls are native, fp32 where torch would emulate them (mutation: always bf16)."""
    from discodiff import runconfig

    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(runconfig, "native_bf16", lambda device, _n=native: _n)
        assert tiny_config(train={"precision": "auto"}).train.precision == expected


def test_eval_precision_override_on_the_command_line(tmp_path, capsys, monkeypatch):
    train_run(tiny_config(train={"steps": 2}, eval={"num_samples": 0}), tmp_path / "run", progress=False)
    used = []
    import discodiff.evaluate as evaluate_module

    original = evaluate_module.network_precision

    def spy(method, precision):
        used.append(precision)
        return original(method, precision)

    monkeypatch.setattr(evaluate_module, "network_precision", spy)
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--json", "eval.num_samples=0", "eval.precision=bf16"]) == 0
    assert used == ["bf16"] and "bits_per_dim" in json.loads(capsys.readouterr().out)


def test_scatter_limits_come_from_the_data():
    g = torch.Generator().manual_seed(0)
    data = torch.rand(1000, 2, generator=g) * 4 - 2  # [-2, 2]^2
    samples = torch.cat([torch.rand(996, 2, generator=g) * 4 - 2, torch.full((4, 2), 1e3)])
    lo, hi, outside = scatter_limits(samples, data)
    assert outside == 4
    np.testing.assert_allclose(lo, -2.4, atol=0.02)
    np.testing.assert_allclose(hi, 2.4, atol=0.02)


def test_loss_plot_names_the_quantity(tmp_path, monkeypatch):
    labels = []
    monkeypatch.setattr(
        matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: labels.append(fig.axes[0].get_ylabel())
    )
    log = tmp_path / "metrics.jsonl"
    log.write_text(
        "".join(json.dumps({"kind": "train", "step": s, "loss": 1.0 / s}) + "\n" for s in range(1, 30))
    )
    loss_curve(log, tmp_path / "loss.png", label="bound, nats per token", window=25)
    assert labels == ["training loss: bound, nats per token"]
    for name in METHODS.names():  # every built-in method says what its loss is
        _, method = declared_method(name)
        assert method.loss_label != Method.loss_label and ("per" in method.loss_label), name


def test_inpainting_from_the_command_line(tmp_path, capsys):
    cfg = replaced(
        data={"name": "digits"},
        net={"name": "unet", "channels": 8, "channel_mult": [1], "attention_resolutions": [], "groups": 4},
        train={"steps": 2, "batch_size": 8},
        eval={"num_samples": 0, "nll_examples": 8},
    )
    train_run(cfg, tmp_path / "run", progress=False)
    image = np.full((8, 8), np.nan)
    image[:, :4] = np.arange(32).reshape(8, 4) % 17  # the left half is known
    np.save(tmp_path / "known.npy", image)
    out = tmp_path / "s.npy"
    argv = ["sample", str(tmp_path / "run"), "--inpaint", str(tmp_path / "known.npy"), "--num", "2"]
    assert main([*argv, "--steps", "5", "--out", str(out), "--no-progress"]) == 0
    assert "known values: replacement" in capsys.readouterr().out
    samples = np.load(out)
    assert samples.shape == (2, 1, 8, 8)
    known = image[:, :4] * 2 / 16 - 1  # levels -> [-1, 1]
    np.testing.assert_allclose(samples[:, 0, :, :4], np.broadcast_to(known, (2, 8, 4)), atol=1e-6)
    assert json.loads((tmp_path / "s.json").read_text())["known"] == {"inpaint": str(tmp_path / "known.npy")}


def test_text_prompt_errors(tmp_path):
    data = build_data(replaced(data={"name": "text", "seq_len": 16, "eval_windows": 2}))
    with pytest.raises(UsageError, match="have 20 tokens; this run's sequences have 16"):
        text_known(data, 1, prompt="abcdefghij", suffix="klmnopqrst")
    template = tmp_path / "t.txt"
    template.write_text("a" * 10 + "___" + "b" * 4 + "\n")  # 17 positions
    with pytest.raises(UsageError, match="spans 17 tokens; this run's sequences have 16"):
        text_known(data, 1, infill=template)
    template.write_text("____\n")
    with pytest.raises(UsageError, match="holds only '_' markers"):
        text_known(data, 1, infill=template)
    template.write_text("ab_d")  # no final newline; positions after the template are generated
    known = text_known(data, 2, infill=template)
    assert known.mask[0].tolist() == [True, True, False, True] + [False] * 12
    assert data.decode(known.known[1][[0, 1, 3]]) == "abd"


def test_a_step_budget_gives_the_same_numbers_on_a_slower_machine(tmp_path, monkeypatch):
    """The README's main job runs on a step budget: a machine half as fast (here every step takes
    twice as long or more) takes longer but reaches the same weights and the same metrics."""
    cfg = tiny_config(train={"steps": 10}, eval={"num_samples": 50})
    fast = train_run(cfg, tmp_path / "fast", progress=False)
    step, slowed = Trainer.train_step, []

    def slow_step(self):
        start = time.perf_counter()
        out = step(self)
        time.sleep(time.perf_counter() - start + 0.01)  # every step at least twice as long
        slowed.append(self.step)
        return out

    monkeypatch.setattr(Trainer, "train_step", slow_step)
    slow = train_run(cfg, tmp_path / "slow", progress=False)
    assert slowed == list(range(1, 11))
    timing = {"train_seconds", "sample_seconds_per_example"}
    assert {k: v for k, v in slow.items() if k not in timing} == {
        k: v for k, v in fast.items() if k not in timing
    }


def test_bundle_data_info_round_trip():
    """A bundle's data.json restores every DataInfo field, structured data included."""
    from discodiff.bundle import _info_to_json, info_from_json
    from discodiff.data.base import DataInfo, FieldInfo

    info = DataInfo(
        event_shape=(9, 9),
        kind="graph",
        fields={
            "nodes": FieldInfo((9,), "tokens", 5),
            "edges": FieldInfo((9, 9), "tokens", 4, symmetric=True),
        },
        node_counts=(0.0, 0.5, 0.5),
        unit="bits_per_graph",
    )
    assert info_from_json(json.loads(json.dumps(_info_to_json(info)))) == info
    text = DataInfo(event_shape=(32,), kind="tokens", vocab_size=65, unit="bits_per_char")
    assert info_from_json(_info_to_json(text)) == text
