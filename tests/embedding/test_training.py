"""Short training runs on tiny-shakespeare (built into the package) from the repository's configs.

- Diffusion-LM's jointly trained embeddings do not collapse: after 200 steps at lr 1e-2 (ten times
  the config's, to move the embeddings far in a short run) the smallest pairwise distance stays
  above 6 sigma(t_1) and the smallest norm above 3 sigma(t_1), sigma(t_1) the noise of the first
  latent, where rounding reads (measured: 2.9 and 2.4 against floors 1.5 and 0.75). Without the
  rounding term the same run collapses below the distance floor (measured 0.7): the test can fail.
- CDCD's embeddings keep norm sqrt(d) exactly and their smallest distance above 2 sigma_min.
- Every config trains, evaluates (bits per character) and samples through the command line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from discodiff.build import build_run
from discodiff.cli import main
from discodiff.runconfig import load_config
from discodiff.train.loop import Trainer

CONFIGS = Path(__file__).parents[2] / "configs" / "shakespeare"
TINY = [
    "data.seq_len=32",
    "net.width=64",
    "net.depth=2",
    "net.heads=4",
    "net.cond_dim=32",
    "net.time_dim=32",
    "train.batch_size=16",
    "train.warmup_steps=20",
    "train.precision=fp32",
]


def train(name: str, steps: int, *overrides: str):
    extra = ["method.timesteps=200", "method.sample_steps=50"] if name != "cdcd" else []
    config = load_config(CONFIGS / f"{name}.yaml", [*TINY, *extra, f"train.steps={steps}", *overrides])
    torch.manual_seed(0)
    data, method = build_run(config)
    trainer = Trainer(method, data, config.train, Path("unused"), seed=0, device=torch.device("cpu"))
    records = [trainer.train_step() for _ in range(steps)]
    return method, records


def separation(table: torch.Tensor) -> tuple[float, float]:
    """Smallest norm and smallest pairwise distance of the embedding rows."""
    dist = torch.cdist(table, table).fill_diagonal_(math.inf)
    return float(table.norm(dim=1).min()), float(dist.min())


def test_diffusion_lm_embeddings_do_not_collapse() -> None:
    method, records = train("diffusion_lm", 200, "train.lr=1e-2")
    sigma_1 = float(method.process.alpha_sigma(torch.tensor([1 / method.T], dtype=torch.float64))[1])
    min_norm, min_dist = separation(method.encoder.table().detach())
    assert min_dist > 6 * sigma_1 and min_norm > 3 * sigma_1
    assert records[-1]["rounding_nats_per_token"] < 0.1
    collapsing, _ = train("diffusion_lm", 200, "train.lr=1e-2", "method.rounding_weight=0")
    assert separation(collapsing.encoder.table().detach())[1] < 6 * sigma_1


def test_cdcd_embeddings_stay_on_the_sphere() -> None:
    method, records = train("cdcd", 120, "train.lr=1e-2")
    table = method.encoder.table().detach()
    torch.testing.assert_close(table.norm(dim=1), torch.full((len(table),), 4.0))  # sqrt(16)
    assert separation(table)[1] > 2 * method.config.sigma_min
    assert all(math.isfinite(r["warp_fit"]) for r in records)
    assert records[-1]["ce_nats_per_token"] < records[0]["ce_nats_per_token"]


@pytest.mark.parametrize("name", ["diffusion_lm", "simplex", "cdcd"])
def test_config_trains_evaluates_and_samples(name, tmp_path, capsys) -> None:
    extra = ["method.timesteps=20", "method.sample_steps=5"] if name != "cdcd" else ["method.bound_samples=4"]
    args = [*TINY, *extra, "train.steps=4", "train.ckpt_every=4", "eval.nll_examples=4", "eval.num_samples=2"]
    run = tmp_path / "run"
    assert main(["train", str(CONFIGS / f"{name}.yaml"), "--out", str(run), "--no-progress", *args]) == 0
    assert (run / "samples.txt").is_file()
    capsys.readouterr()
    assert main(["eval", str(run), "--json", "eval.steps=5"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert math.isfinite(metrics["bits_per_char"]) and metrics["bits_per_char"] > 0
    out = tmp_path / "s.txt"
    assert main(["sample", str(run), "--num", "3", "--steps", "5", "--out", str(out)]) == 0
    assert out.read_text().count("=== sample") == 3
