"""Character-level text data: vocabularies, text8 mapping, splits, streams, restore, errors."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from discodiff.config import ConfigError, from_dict
from discodiff.data import DATASETS
from discodiff.data.text import Text8Config, TextConfig, build_text, build_text8, read_text, split_bounds
from discodiff.data.vocab import TEXT8_ALPHABET, CharVocab, to_text8

SHARED = Path(__file__).parents[1] / ".." / "shared" / "data"
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"


def write(tmp_path: Path, text: str, name: str = "corpus.txt") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_vocab_round_trip_ascii_and_unicode() -> None:
    for text in ("hello world\nfoo!", "héllo wörld — ünïcode ✓ 日本"):
        vocab = CharVocab.from_text(text)
        assert vocab.chars == "".join(sorted(set(text)))
        ids = vocab.encode(text)
        assert ids.dtype == np.uint8 and ids.max() < len(vocab)
        assert vocab.decode(ids) == text
    big = CharVocab("".join(chr(0x4E00 + i) for i in range(300)))
    assert big.encode(big.chars[::-1]).dtype == np.int32 and big.decode(big.encode(big.chars)) == big.chars


def test_unknown_characters_are_named() -> None:
    vocab = CharVocab("abc ")
    with pytest.raises(ValueError, match=r"2 character\(s\).*index 1: 'x', 'z'"):
        vocab.encode("axcz")
    with pytest.raises(ValueError, match="'é'"):
        vocab.encode("abé")


def test_text8_mapping() -> None:
    assert to_text8("Hello, World! 42 café") == "hello world four two caf "
    assert to_text8("  A--b\n\tC  ") == " a b c "
    assert to_text8("R2D2") == "r two d two "
    assert set(to_text8("Ünïcode 3.14 ÆØÅ x")) <= set(TEXT8_ALPHABET)


def test_builtin_is_tiny_shakespeare_with_the_nanogpt_split() -> None:
    data = build_text(TextConfig())
    text = read_text(None)
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == TINY_SHAKESPEARE_SHA256
    assert len(data.vocab) == 65 and data.info.vocab_size == 65 and data.info.unit == "bits_per_char"
    assert data.info.event_shape == (256,) and data.info.kind == "tokens"
    assert len(data.parts["train"]) == int(0.9 * len(text)) == 1_003_854
    val, cond = data.split("val")
    assert cond is None and val.shape == (111_540 // 256, 256) and val.dtype == torch.long
    assert "".join(data.decode_batch(val)) == text[1_003_854 : 1_003_854 + val.numel()]  # consecutive windows
    assert data.split("test")[0].equal(val)  # no test text of its own: test = val


def test_builtin_equals_the_shared_file() -> None:
    shared = SHARED / "text" / "tinyshakespeare.txt"
    if not shared.is_file():
        pytest.skip("../shared/data is absent")
    assert (
        build_text(TextConfig(path=str(shared)))
        .split("val")[0]
        .equal(build_text(TextConfig()).split("val")[0])
    )


def test_train_stream_draws_windows_and_resumes() -> None:
    data = build_text(TextConfig(seq_len=64))
    train_text = read_text(None)[:1_003_854]
    stream = data.train_stream(seed=3)
    first, cond = stream.next(8)
    assert cond is None and first.shape == (8, 64) and first.dtype == torch.long
    assert all(window in train_text for window in data.decode_batch(first))
    state = stream.state_dict()
    expected, _ = stream.next(8)
    resumed = data.train_stream(seed=999)
    resumed.load_state_dict(state)
    assert resumed.next(8)[0].equal(expected)
    assert not data.train_stream(seed=4).next(8)[0].equal(first)


def test_vocabulary_state_restore(tmp_path: Path) -> None:
    original = build_text(TextConfig(path=write(tmp_path, "abcdef" * 50 + "xyz" * 30), seq_len=8))
    state = json.loads(json.dumps(original.state_dict()))
    assert state == {"chars": "abcdefxyz"}
    restored = build_text(TextConfig(path=write(tmp_path, "abcdef" * 50 + "xyz" * 30), seq_len=8), state)
    assert restored.split("val")[0].equal(original.split("val")[0])
    # a corpus with fewer characters gets other ids from scratch, the same ids under the saved vocabulary
    subset = write(tmp_path, "cab" * 200, "subset.txt")
    fresh, saved = (
        build_text(TextConfig(path=subset, seq_len=8)),
        build_text(TextConfig(path=subset, seq_len=8), state),
    )
    assert fresh.encode("c").item() == 2 and saved.encode("c").item() == original.encode("c").item() == 2
    assert fresh.encode("a").item() == 0 and saved.decode(saved.encode("cab")) == "cab"
    with pytest.raises(ValueError, match="saved run"):
        build_text(TextConfig(path=write(tmp_path, "abc?" * 100, "other.txt"), seq_len=8), state)


def test_unseen_validation_characters(tmp_path: Path) -> None:
    path = write(tmp_path, "ab" * 450 + "abc" * 34)  # 'c' only in the last 10%
    with pytest.raises(ValueError, match=r"'c'.*vocab_from: all"):
        build_text(TextConfig(path=path, seq_len=16))
    assert len(build_text(TextConfig(path=path, seq_len=16, vocab_from="all")).vocab) == 3


def test_text8_format_of_any_text(tmp_path: Path) -> None:
    data = build_text(
        TextConfig(path=write(tmp_path, "The Cat, 9 lives!\n" * 40), seq_len=16, format="text8")
    )
    assert data.vocab.chars == TEXT8_ALPHABET and data.info.vocab_size == 27
    assert data.encode(" az").tolist() == [0, 1, 26]
    assert data.decode_batch(data.split("val")[0])[0] in to_text8("The Cat, 9 lives!\n" * 40)


def test_text8_file_loader(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    text = "".join(rng.choice(list(TEXT8_ALPHABET), 2000))
    data = build_text8(Text8Config(path=write(tmp_path, text, "text8"), seq_len=20))
    assert split_bounds(100_000_000, 0.05, 0.05) == (90_000_000, 95_000_000)
    assert (
        len(data.parts["train"]) == 1800 and len(data.parts["val"]) == 100 and len(data.parts["test"]) == 100
    )
    assert data.decode_batch(data.split("test")[0]) == [text[1900 + 20 * i : 1920 + 20 * i] for i in range(5)]
    assert data.state_dict() == {"chars": TEXT8_ALPHABET}
    with pytest.raises(ValueError, match="not a text8 file: byte b'A' at offset 3"):
        build_text8(Text8Config(path=write(tmp_path, "abcAdef" * 100, "bad")))
    with pytest.raises(FileNotFoundError, match=r"wget http://mattmahoney\.net/dc/text8\.zip"):
        build_text8(Text8Config(path=str(tmp_path / "missing")))
    with pytest.raises(ValueError, match="not text8's"):
        build_text8(Text8Config(path=write(tmp_path, text, "text8"), seq_len=20), {"chars": "abc"})


def test_eval_windows_are_evenly_spaced() -> None:
    data = build_text(TextConfig(seq_len=256, eval_windows=5))
    full = build_text(TextConfig(seq_len=256)).split("val")[0]
    val = data.split("val")[0]
    assert val.shape == (5, 256)
    assert val[0].equal(full[0]) and val[-1].equal(full[-1])


def test_save_samples_writes_utf8(tmp_path: Path) -> None:
    data = build_text(TextConfig(path=write(tmp_path, "añb\n" * 100), seq_len=4))
    samples = data.encode("ñab\nbbañ").view(2, 4)
    (path,) = data.save_samples(samples, tmp_path / "samples")
    assert path.suffix == ".txt"
    assert path.read_text(encoding="utf-8") == "=== sample 0 ===\nñab\n\n=== sample 1 ===\nbbañ\n"


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        build_text(TextConfig(path=str(tmp_path / "nope.txt")))
    with pytest.raises(ValueError, match="empty"):
        build_text(TextConfig(path=write(tmp_path, "")))
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        build_text(TextConfig(path=str(tmp_path / "latin1.txt")))
    with pytest.raises(ValueError, match="val text has 10 characters, fewer than seq_len=32"):
        build_text(TextConfig(path=write(tmp_path, "x" * 100), seq_len=32))
    with pytest.raises(ValueError, match="seq_len"):
        TextConfig(seq_len=0)
    with pytest.raises(ValueError, match="sum < 1"):
        TextConfig(val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ConfigError, match="'chars', 'text8'"):
        from_dict(TextConfig, {"format": "bytes"}, "data")
    with pytest.raises(ValueError, match="unknown split"):
        build_text(TextConfig()).split("train")


def test_registered() -> None:
    assert DATASETS.entry("text").config is TextConfig and DATASETS.entry("text8").config is Text8Config
    assert isinstance(DATASETS.get("text")(TextConfig(seq_len=32)).info.vocab_size, int)
