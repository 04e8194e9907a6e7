"""Subword text end to end: ``discodiff prepare`` then ``train`` on a BPE corpus, ``eval --json``
in every unit, zero-shot evaluation on another corpus, generative perplexity under an AR
reference, the shakespeare_works configs and the GPU-sized OpenWebText configs (one CPU step)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from discodiff.build import build_run
from discodiff.cli import main
from discodiff.data.corpus import read_text
from discodiff.data.tokenizer import TokenizerConfig, train_tokenizer
from discodiff.prepare import prepare
from discodiff.run import train_run
from discodiff.runconfig import load_config

ROOT = Path(__file__).resolve().parents[1]
WORKS = ROOT / ".." / "shared" / "data" / "text" / "shakespeare_works"
TEXT = read_text(None)
TINY_NET = ["net.width=32", "net.depth=1", "net.heads=2", "net.cond_dim=16", "net.time_dim=16"]
TINY_EVAL = ["eval.batch_size=4", "eval.nll_examples=4", "eval.num_samples=2", "train.log_every=1"]


def bpe_run_config(tmp: Path, method: dict) -> str:
    corpus = tmp / "corpus"
    corpus.mkdir(exist_ok=True)
    for i in range(3):
        (corpus / f"doc{i}.txt").write_text(TEXT[i * 15_000 : (i + 1) * 15_000], encoding="utf-8")
    cfg = {
        "data": {
            "name": "text",
            "path": str(corpus / "*.txt"),
            "tokenizer": {"type": "bpe", "vocab_size": 300},
            "prepared": str(tmp / "prepared"),
            "seq_len": 32,
        },
        "method": method,
        "net": {"name": "transformer", "width": 32, "depth": 1, "heads": 2},
        "train": {"steps": 3, "batch_size": 8, "grad_accum": 2, "warmup_steps": 1, "log_every": 1},
        "eval": {"batch_size": 8, "nll_examples": 8, "num_samples": 2},
    }
    path = tmp / f"{method['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``discodiff prepare`` then ``discodiff train`` (3 steps) for an AR reference and MDLM."""
    tmp = tmp_path_factory.mktemp("bpe")
    configs = {
        name: bpe_run_config(tmp, {"name": name, "sample_steps": 4} if name == "mdlm" else {"name": name})
        for name in ("ar", "mdlm")
    }
    assert main(["prepare", configs["ar"], "--no-progress"]) == 0
    for name, cfg in configs.items():
        assert main(["train", cfg, "--out", str(tmp / name), "--no-progress"]) == 0
    return tmp


def test_prepare_then_train_writes_the_tokenizer_and_every_unit(runs, capsys):
    assert main(["prepare", str(runs / "mdlm.yaml"), "--no-progress"]) == 0  # the AR's prepared files serve
    assert "up to date (verified)" in capsys.readouterr().out
    run = runs / "mdlm"
    assert json.loads((run / "tokenizer.json").read_text())["model"]["type"] == "BPE"
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"bits_per_token", "bits_per_char", "perplexity", "sample_entropy"} <= metrics.keys()
    val = json.loads((runs / "prepared" / "meta.json").read_text())["splits"]["val"]
    chars_per_token = metrics["bits_per_token"] / metrics["bits_per_char"]  # of the evaluated windows
    assert (
        chars_per_token == pytest.approx(val["characters"] / val["tokens"], rel=0.1) and chars_per_token > 1.2
    )
    assert "=== sample 1 ===" in (run / "samples.txt").read_text(encoding="utf-8")
    assert main(["sample", str(run), "--num", "2", "--steps", "4", "--out", str(runs / "s.txt")]) == 0
    assert (runs / "s.txt").read_text(encoding="utf-8").count("=== sample") == 2


def test_eval_json_zero_shot_and_generative_perplexity(runs, tmp_path, capsys):
    other = tmp_path / "other.txt"
    other.write_text(TEXT[-30_000:], encoding="utf-8")  # text the runs never saw
    argv = ["eval", str(runs / "mdlm"), "--json", "eval.nll_examples=4", "eval.num_samples=2"]
    capsys.readouterr()
    assert main([*argv, f"eval.reference_run={runs / 'ar'}"]) == 0
    own = json.loads(capsys.readouterr().out)
    assert {"bits_per_token", "bits_per_char", "perplexity", "gen_ppl", "gen_bits_per_token"} <= own.keys()
    assert main([*argv, f"data.path={other}"]) == 0
    zero_shot = json.loads(capsys.readouterr().out)
    assert (
        zero_shot["data_overrides"] == [f"data.path={other}"]
        and zero_shot["bits_per_char"] != own["bits_per_char"]
    )
    assert (runs / "mdlm" / "eval_zero_shot.json").is_file()
    assert main([*argv, "data.seq_len=16"]) == 2
    assert "data.seq_len cannot change for a trained run" in capsys.readouterr().err


def test_zero_shot_characters_outside_a_character_vocabulary(tmp_path, capsys):
    corpus = tmp_path / "abc.txt"
    corpus.write_text("abc " * 2000, encoding="utf-8")
    cfg = {
        "data": {"name": "text", "path": str(corpus), "seq_len": 16},
        "method": "ar",
        "net": {"name": "transformer", "width": 16, "depth": 1, "heads": 2},
        "train": {"steps": 1, "batch_size": 4, "warmup_steps": 1},
        "eval": {"batch_size": 4, "nll_examples": 4, "num_samples": 0},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["bits_per_char"] == pytest.approx(metrics["bits_per_token"])  # one token per character
    assert metrics["perplexity"] == pytest.approx(2 ** metrics["bits_per_token"])
    (tmp_path / "other.txt").write_text("abd " * 200, encoding="utf-8")
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), f"data.path={tmp_path / 'other.txt'}"]) == 2
    err = capsys.readouterr().err
    assert "character(s) are not in the vocabulary" in err and "'d'" in err and "saved run" in err


def test_shakespeare_works_configs_build_on_one_prepared_corpus(tmp_path, monkeypatch):
    if not WORKS.is_dir():
        pytest.skip("../shared/data is absent")
    monkeypatch.chdir(ROOT)
    poem = WORKS / "phoenix_and_the_turtle_gut.txt"  # one short poem, for speed
    small = [f"data.path={poem}", f"data.prepared={tmp_path / 'p'}", "data.seq_len=64"]
    names = ("ar", "mdlm", "sedd_absorb", "udlm")
    configs = [load_config(ROOT / "configs" / "shakespeare_works" / f"{n}.yaml", small) for n in names]
    assert configs[0].data.config.tokenizer == TokenizerConfig("bpe", 4096)
    shipped = load_config(ROOT / "configs" / "shakespeare_works" / "mdlm.yaml").data.config
    assert shipped.path == "../shared/data/text/shakespeare_works/*_gut.txt"
    prepare(configs[0], progress=False)
    for cfg in configs:
        data, method = build_run(cfg)
        assert data.info.vocab_size <= 4096 and method.event_shape == (64,)
        assert (cfg.net.config.width, cfg.net.config.depth, cfg.net.config.heads) == (256, 4, 4)


@pytest.mark.parametrize("name", ["ar", "mdlm", "sedd_absorb", "udlm"])
def test_openwebtext_configs_run_one_step_on_cpu(name, tmp_path, monkeypatch):
    """The GPU-sized configs as shipped, with a tiny network, corpus and tokenizer.json."""
    monkeypatch.chdir(tmp_path)
    config = ROOT / "configs" / "openwebtext" / f"{name}.yaml"
    shipped = load_config(config)
    assert shipped.data.config.seq_len == 1024 and shipped.train.precision == "bf16"
    assert (shipped.net.config.width, shipped.net.config.depth, shipped.net.config.heads) == (768, 12, 12)
    corpus = tmp_path / "data" / "openwebtext"
    corpus.mkdir(parents=True)
    for i in range(4):
        (corpus / f"{i:05d}.txt").write_text(TEXT[i * 8000 : (i + 1) * 8000], encoding="utf-8")
    (tmp_path / "data" / "gpt2").mkdir()
    train_tokenizer(TokenizerConfig("bpe", 300), [TEXT[:50_000]], allow_unk=False).save(
        tmp_path / "data" / "gpt2" / "tokenizer.json"
    )
    tiny = [
        *TINY_NET,
        *TINY_EVAL,
        "data.seq_len=32",
        "data.eval_windows=4",
        "train.batch_size=8",
        "train.steps=1",
    ]
    tiny += ["method.sample_steps=4"] if name != "ar" else []
    cfg = load_config(config, tiny)
    prepare(cfg, progress=False)
    metrics = train_run(cfg, tmp_path / "run", progress=False)
    assert metrics["step"] == 1 and "bits_per_char" in metrics


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_shakespeare_works_prepare_then_train_every_config(tmp_path, monkeypatch, capsys):
    """The whole corpus on 2 cores: prepare (BPE training and encoding, about a minute), then 2
    steps of each config and ``eval --json`` in every unit (a few minutes in all)."""
    if not WORKS.is_dir():
        pytest.skip("../shared/data is absent")
    monkeypatch.chdir(ROOT)
    prepared = f"data.prepared={tmp_path / 'prepared'}"
    assert main(["prepare", "configs/shakespeare_works/ar.yaml", prepared, "--no-progress"]) == 0
    meta = json.loads((tmp_path / "prepared" / "meta.json").read_text())
    assert meta["vocab_size"] == 4096 and meta["splits"]["train"]["documents"] >= 39
    small = [prepared, "train.steps=2", "eval.nll_examples=4", "eval.num_samples=2", "method.sample_steps=4"]
    for name in ("ar", "mdlm", "sedd_absorb", "udlm"):
        overrides = small[:-1] if name == "ar" else small
        out = str(tmp_path / name)
        config = f"configs/shakespeare_works/{name}.yaml"
        assert main(["train", config, "--out", out, "--no-progress", *overrides]) == 0
        capsys.readouterr()
        assert main(["eval", out, "--json", "eval.nll_examples=4", "eval.num_samples=0"]) == 0
        metrics = json.loads(capsys.readouterr().out)
        assert metrics["bits_per_token"] > metrics["bits_per_char"] > 0 and metrics["perplexity"] > 1
