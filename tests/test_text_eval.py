"""Token-sample metrics and the infilling example every text run writes."""

import math

import pytest
import torch

from discodiff.base import Batch
from discodiff.build import build_run
from discodiff.data.text import INFILL_HOLE
from discodiff.metrics.text import generative_perplexity, sample_entropy
from discodiff.runconfig import parse_config

TEXT_AR = {
    "data": {"name": "text", "seq_len": 32},
    "method": {"name": "ar"},
    "net": {"name": "transformer", "width": 32, "depth": 1, "heads": 2},
}


def test_sample_entropy_against_hand_values():
    x = torch.tensor([[0, 0, 0, 0], [0, 1, 2, 3], [0, 0, 1, 1]])
    expect = (0 + math.log(4) + math.log(2)) / 3
    assert sample_entropy(x, 5) == pytest.approx(expect)


def test_generative_perplexity_is_exp_of_the_reference_nll():
    _, ar = build_run(parse_config(TEXT_AR))
    x = torch.randint(0, 65, (6, 32))
    out = generative_perplexity(ar, x, batch_size=4)
    nll = ar.nll(Batch(x))
    assert out["gen_ppl"] == pytest.approx(math.exp(float(nll.nll.sum() / nll.num_dims.sum())))


def test_text_infilling_example_and_file(tmp_path):
    data, _ = build_run(parse_config(TEXT_AR))
    known, mask = data.infilling_example(3)
    assert known.shape == mask.shape == (3, 32)
    assert (~mask).sum(1).tolist() == [16, 16, 16] and mask[:, :8].all() and mask[:, 24:].all()
    filled = torch.where(mask, known, torch.zeros_like(known))
    (path,) = data.save_infilling(known, mask, filled, tmp_path / "infill")
    text = path.read_text(encoding="utf-8")
    assert text.count("prompt ===") == 3 and text.count(INFILL_HOLE) == 48
