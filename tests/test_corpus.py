"""Text corpora: files, directories, globs and JSON lines; splits across documents; document
boundaries and EOS packing; text8 mapping chunk by chunk."""

from __future__ import annotations

import json

import numpy as np
import pytest

from discodiff.data import corpus
from discodiff.data.corpus import Corpus, split_bounds
from discodiff.data.text import TextConfig, build_text
from discodiff.data.tokenizer import TokenizerConfig
from discodiff.data.vocab import to_text8
from discodiff.errors import DataError

DOCS = {"b.txt": "the second document. " * 20, "a.txt": "First one!\n" * 30, "sub/c.txt": "third, last " * 25}


@pytest.fixture
def docs_dir(tmp_path):
    root = tmp_path / "docs"
    for name, text in DOCS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    (root / ".hidden.txt").write_text("never read")
    return root


def texts(c: Corpus) -> list[str]:
    return ["".join(doc) for doc in c.iter_documents()]


def test_file_directory_and_glob(docs_dir):
    ordered = [DOCS["a.txt"], DOCS["b.txt"], DOCS["sub/c.txt"]]  # sorted paths; hidden files skipped
    assert texts(Corpus(str(docs_dir))) == ordered
    assert texts(Corpus(str(docs_dir / "*.txt"))) == ordered[:2]
    assert texts(Corpus(str(docs_dir / "**" / "c.txt"))) == ordered[2:]
    assert texts(Corpus(str(docs_dir / "a.txt"))) == ordered[:1]
    with pytest.raises(FileNotFoundError, match="no files match"):
        Corpus(str(docs_dir / "*.md"))
    (docs_dir / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no files"):
        Corpus(str(docs_dir / "empty"))


def test_jsonl_documents(tmp_path):
    path = tmp_path / "shard.jsonl"
    path.write_text('{"text": "one doc"}\n\n{"text": "two", "id": 3}\n', encoding="utf-8")
    assert texts(Corpus(str(path), documents="jsonl")) == ["one doc", "two"]
    path.write_text('{"text": "ok"}\n{"body": "no text"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"shard.jsonl:2: expected a JSON object with a string field 'text'"):
        texts(Corpus(str(path), documents="jsonl"))


def test_splits_cut_the_text_of_all_documents(docs_dir):
    c = Corpus(str(docs_dir))
    total = c.count_chars()
    assert total == sum(len(t) for t in DOCS.values())
    bounds = split_bounds(total, 0.3, 0.2)
    pieces = list(c.pieces(bounds))
    by_split = {s: "".join(p.text for p in pieces if p.split == s) for s in ("train", "val", "test")}
    whole = DOCS["a.txt"] + DOCS["b.txt"] + DOCS["sub/c.txt"]
    assert by_split["train"] + by_split["val"] + by_split["test"] == whole
    assert len(by_split["train"]) == bounds[0] and len(by_split["test"]) == total - bounds[1]
    starts = [(p.split, p.start, p.end) for p in pieces]
    # a.txt in train; b.txt starts in train, is cut, ends in val; c.txt is cut into val and test
    assert starts == [
        ("train", True, True),
        ("train", True, False),
        ("val", True, True),
        ("val", True, False),
        ("test", True, True),
    ]
    assert [p.split for p in c.pieces(bounds, splits=("train",))] == ["train", "train"]


def test_eos_packing_and_document_starts(docs_dir):
    cfg = dict(path=str(docs_dir), seq_len=8, tokenizer=TokenizerConfig("bpe", 300), val_fraction=0.2)
    data = build_text(TextConfig(**cfg))
    eos, train = data.vocab.eos_id, np.asarray(data.parts["train"])
    assert (train == eos).sum() == 2  # a.txt and b.txt end in train (b.txt is not cut at 0.2)
    docs = data.documents["train"]
    assert docs.tolist()[0] == 0 and train[docs[1] - 1] == eos  # the second document follows an EOS
    assert data.decode_batch(data.split("val")[0])[0]  # decodes
    wrapped = build_text(TextConfig(**cfg, packing="wrap"))
    assert (np.asarray(wrapped.parts["train"]) == eos).sum() == 0
    chars = build_text(TextConfig(path=str(docs_dir), seq_len=8, val_fraction=0.2))  # wrap: no separator
    whole = DOCS["a.txt"] + DOCS["b.txt"] + DOCS["sub/c.txt"]
    assert chars.vocab.decode(np.asarray(chars.parts["train"])) == whole[: len(chars.parts["train"])]


def test_text8_mapping_chunk_by_chunk_equals_the_whole_text(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    text = "".join(rng.choice(list("ab .,!-\n0123 XYZ"), 5000))
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    monkeypatch.setattr(corpus, "CHUNK_CHARS", 50)
    monkeypatch.setattr(corpus, "CUT_LOOKAHEAD", 10)
    assert "".join(texts(Corpus(str(tmp_path / "t.txt"), format="text8"))) == to_text8(text)


def test_bad_files(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        texts(Corpus(str(tmp_path / "latin1.txt")))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "empty.txt").write_text("")
    with pytest.raises(DataError, match="holds no text"):
        Corpus(str(tmp_path / "d")).count_chars()
    assert json.dumps(Corpus(None).source()) == '"builtin:tinyshakespeare.txt"'
