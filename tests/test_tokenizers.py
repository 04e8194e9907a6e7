"""Subword tokenizers: training, loading a tokenizer.json, ids beside the methods' own, chunked
encoding equal to whole-text encoding, saved state, unknown characters."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from discodiff.build import build_run
from discodiff.config import ConfigError
from discodiff.data import corpus
from discodiff.data.corpus import read_text
from discodiff.data.text import TextConfig, build_text
from discodiff.data.tokenizer import TokenizerConfig, load_tokenizer_file, train_tokenizer
from discodiff.errors import DataError
from discodiff.runconfig import parse_config

TEXT = read_text(None)[:60_000]  # tiny-shakespeare's first 60k characters


@pytest.fixture(scope="module")
def bpe():
    return train_tokenizer(TokenizerConfig("bpe", 400), [TEXT], allow_unk=False)


def write(tmp_path, text, name="corpus.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_bpe_round_trip_size_eos_and_determinism(bpe):
    assert len(bpe) == 400 and bpe.eos_id == 0 and bpe.unit == "bits_per_token"
    ids = bpe.encode(TEXT)
    assert ids.dtype == np.int64 and ids.max() < 400 and len(ids) < 0.6 * len(TEXT)  # merges were learned
    assert bpe.decode(ids) == TEXT
    assert bpe.decode(np.array([bpe.eos_id])) == "<|endoftext|>" and bpe.count_chars(np.array([0])) == 0
    again = train_tokenizer(TokenizerConfig("bpe", 400), [TEXT], allow_unk=False)
    assert again.sha256 == bpe.sha256  # same text, same tokenizer (DDP ranks could rely on it)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 400\)"):
        bpe.decode(np.array([400]))


def test_chunked_encoding_equals_whole_text(bpe, monkeypatch):
    """Chunks cut at word boundaries tokenize exactly like the whole text (BPE and Unigram)."""
    unigram = train_tokenizer(TokenizerConfig("unigram", 120), [TEXT[:8000]], allow_unk=True)
    monkeypatch.setattr(corpus, "CHUNK_CHARS", 90)
    monkeypatch.setattr(corpus, "CUT_LOOKAHEAD", 40)
    blocks = [TEXT[i : i + 37] for i in range(0, len(TEXT), 37)]
    chunks = list(corpus.chunked(blocks))
    assert "".join(chunks) == TEXT and len(chunks) > 500
    for tok in (bpe, unigram):
        whole = tok.encode(TEXT)
        assert np.concatenate(tok.encode_batch(chunks)).tolist() == whole.tolist()
    assert bpe.decode(bpe.encode(TEXT)) == TEXT


def test_cut_falls_back_to_newlines_then_hard_cuts(monkeypatch):
    monkeypatch.setattr(corpus, "CHUNK_CHARS", 10)
    monkeypatch.setattr(corpus, "CUT_LOOKAHEAD", 5)
    assert list(corpus.chunked(["x" * 12 + "\nyyyyyyyyyyyyyy"])) == ["x" * 12 + "\n", "y" * 14]
    assert list(corpus.chunked(["z" * 40])) == ["z" * 10] * 4


def test_tokenizer_file_adds_a_missing_eos(tmp_path, bpe):
    path = tmp_path / "tokenizer.json"
    bpe.save(path)
    loaded = load_tokenizer_file(TokenizerConfig("file", path=str(path)), allow_unk=False)
    assert loaded.sha256 == bpe.sha256 and loaded.eos_id == 0
    other = load_tokenizer_file(TokenizerConfig("file", path=str(path), eos_token="<doc>"), allow_unk=False)
    assert len(other) == 401 and other.eos_id == 400  # added after the tokenizer's ids, colliding with none
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match=r"not a tokenizer\.json"):
        load_tokenizer_file(TokenizerConfig("file", path=str(tmp_path / "bad.json")), allow_unk=False)
    with pytest.raises(FileNotFoundError, match=r"huggingface\.co/openai-community/gpt2"):
        load_tokenizer_file(TokenizerConfig("file", path=str(tmp_path / "none.json")), allow_unk=False)


def test_mask_and_bos_ids_lie_beyond_the_tokenizer(tmp_path, bpe):
    """Data of V tokens (EOS among them): absorbing diffusion's mask and the AR start id are V."""
    path = tmp_path / "tokenizer.json"
    bpe.save(path)
    cfg = {
        "data": {
            "name": "text",
            "path": write(tmp_path, TEXT),
            "seq_len": 32,
            "tokenizer": {"type": "file", "path": str(path)},
        },
        "net": {"name": "transformer", "width": 32, "depth": 1, "heads": 2},
    }
    data, mdlm = build_run(parse_config({**cfg, "method": {"name": "mdlm"}}))
    _, ar = build_run(parse_config({**cfg, "method": {"name": "ar"}}))
    assert data.info.vocab_size == 400 and data.vocab.eos_id < 400
    assert mdlm.mask_id == 400 and ar.bos == 400
    assert (data.parts["val"] == data.vocab.eos_id).sum() == 1  # one document: one EOS at its end


def test_config_errors():
    for bad, match in (
        ({"type": "bpe"}, "needs vocab_size"),
        ({"type": "bpe", "vocab_size": 100}, ">= 257"),
        ({"type": "chars", "vocab_size": 100}, "vocab_size applies"),
        ({"type": "file"}, "needs path"),
    ):
        with pytest.raises(ConfigError, match=match):
            parse_config({"data": {"name": "text", "tokenizer": bad}, "method": "ar", "net": "transformer"})
    with pytest.raises(ConfigError, match="packing: eos needs a tokenizer"):
        parse_config({"data": {"name": "text", "packing": "eos"}, "method": "ar", "net": "transformer"})


def test_state_restores_the_tokenizer_and_unknown_pieces(tmp_path):
    cfg = TextConfig(
        path=write(tmp_path, TEXT[:20_000]), seq_len=16, tokenizer=TokenizerConfig("unigram", 100)
    )
    data = build_text(cfg)
    state = json.loads(json.dumps(data.state_dict()))
    other = write(tmp_path, "Fair Verona, where we lay our scene. " * 40, "other.txt")
    restored = build_text(TextConfig(**{**cfg.__dict__, "path": other}), state)
    assert restored.vocab.sha256 == data.vocab.sha256  # the saved tokenizer, not a new one
    assert restored.state_dict() == data.state_dict()
    assert restored.decode(restored.encode("Fair Verona")) == "Fair Verona"
    with pytest.raises(DataError, match=r"not in the tokenizer's vocabulary.*'\u00e6+'.*data.unk: true"):
        restored.encode("caf\u00e6")
    with pytest.raises(DataError, match="not in the tokenizer's vocabulary"):
        build_text(
            TextConfig(**{**cfg.__dict__, "path": write(tmp_path, TEXT[:2000] + "\u00e6", "u.txt")}), state
        )
    allowed = build_text(TextConfig(**{**cfg.__dict__, "path": other, "unk": True}), state)
    assert allowed.vocab.unk_id in allowed.encode("\u00e6").tolist()


def test_character_unk(tmp_path):
    path = write(tmp_path, "ab" * 450 + "abc" * 34)  # 'c' only in the last 10%
    data = build_text(TextConfig(path=path, seq_len=16, unk=True))
    assert len(data.vocab) == 3 and data.state_dict() == {"chars": "ab", "unk": True}
    assert data.encode("c").tolist() == [2] and data.decode(torch.tensor([0, 2])) == "a\ufffd"
    with pytest.raises(DataError, match="has no <unk>"):
        build_text(TextConfig(path=path, seq_len=16, unk=True), {"chars": "abc"})
