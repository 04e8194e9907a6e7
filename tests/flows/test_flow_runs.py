"""Both flow methods through the run machinery (train, final evaluation, samples, infilling)."""

import json

import pytest

from discodiff.run import train_run
from discodiff.runconfig import parse_config
from runs import tiny

TEXT = {"name": "text", "seq_len": 16}
NET = {"name": "transformer", "width": 32, "depth": 1, "heads": 2}
TRAIN = {"steps": 4, "batch_size": 8, "warmup_steps": 1, "ckpt_every": 4, "log_every": 2}
EVAL = {"nll_examples": 8, "num_samples": 4, "batch_size": 8}


@pytest.mark.parametrize(
    "method, infills",
    [
        ({"name": "discrete_flow", "layers": ["coupling", "coupling"]}, False),
        ({"name": "dfm", "sample_steps": 4, "nll_time_samples": 2}, True),
    ],
)
def test_a_text_run_trains_evaluates_and_infills_only_where_the_method_can(tmp_path, method, infills):
    """A discrete flow declares ``known_semantics: none``: the run's final outputs skip the
    infilling example (which the sampler would refuse) instead of failing the run."""
    run = tmp_path / "run"
    config = {**tiny(train=TRAIN, eval=EVAL), "data": TEXT, "method": method, "net": NET}
    metrics = train_run(parse_config(config), run, progress=False)
    assert metrics["step"] == 4 and metrics["bits_per_char"] > 0
    assert json.loads((run / "metrics.json").read_text())["step"] == 4
    assert (run / "samples.txt").read_text().strip()
    assert any(run.glob("infill*")) == infills
