"""Prepared corpora (``discodiff prepare``): the same ids as in memory, uint16/uint32 files,
document boundaries, exact resume of the window stream, clear errors for mismatched or corrupted
files, and flat memory on a corpus larger than the process may allocate."""

from __future__ import annotations

import json
import mmap
import os
import resource
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from discodiff.data.corpus import read_text
from discodiff.data.text import TextConfig, build_text
from discodiff.data.text_encoding import prepare_text
from discodiff.data.tokenizer import TokenizerConfig
from discodiff.errors import DataError

SRC = str(Path(__file__).resolve().parents[1] / "src")
TEXT = read_text(None)[:40_000]


@pytest.fixture
def corpus_dir(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    for i in range(4):  # four documents of 10k characters
        (root / f"doc{i}.txt").write_text(TEXT[i * 10_000 : (i + 1) * 10_000], encoding="utf-8")
    return root


def bpe_config(corpus_dir, tmp_path, **kw) -> TextConfig:
    return TextConfig(
        path=str(corpus_dir),
        seq_len=32,
        tokenizer=TokenizerConfig("bpe", 320),
        prepared=str(tmp_path / "prepared"),
        **kw,
    )


def test_prepared_ids_equal_in_memory_ids(corpus_dir, tmp_path):
    cfg = bpe_config(corpus_dir, tmp_path)
    report = prepare_text(cfg, progress=False)
    meta = report["meta"]
    assert report["status"] == "written" and meta["dtype"] == "uint16" and meta["vocab_size"] == 320
    assert meta["splits"]["train"]["documents"] == 4 and meta["splits"]["val"]["documents"] == 1
    prepared = build_text(cfg)
    memory = build_text(replace(cfg, prepared=None), prepared.state_dict())
    assert isinstance(prepared.parts["train"].base.obj, mmap.mmap)  # memory-mapped, not read
    for split in ("train", "val"):
        assert np.array_equal(prepared.parts[split], memory.parts[split]), split
    docs = prepared.documents["train"]
    assert np.array_equal(docs, memory.documents["train"]) and docs[0] == 0
    train = np.asarray(prepared.parts["train"])
    assert (train[docs[1:] - 1] == prepared.vocab.eos_id).all()  # each document ends with EOS
    assert (tmp_path / "prepared" / "tokenizer.json").is_file()
    assert prepared.split("val")[0].equal(memory.split("val")[0])
    again = prepare_text(cfg, progress=False)
    assert again["status"] == "up to date (verified)"
    for file in corpus_dir.iterdir():  # the raw text may go once prepared
        file.unlink()
    assert build_text(cfg).split("val")[0].equal(memory.split("val")[0])


def test_stream_resumes_exactly_from_a_memory_map(corpus_dir, tmp_path):
    cfg = bpe_config(corpus_dir, tmp_path)
    prepare_text(cfg, progress=False)
    data = build_text(cfg)
    stream = data.train_stream(seed=5)
    stream.next(7)
    state = stream.state_dict()
    expected = stream.next(7)[0]
    other = build_text(cfg).train_stream(seed=1)
    other.load_state_dict(state)
    assert other.next(7)[0].equal(expected)


def test_uint32_beyond_65536_ids(tmp_path):
    chars = "".join(chr(0x10000 + i) for i in range(66_000))  # 66,000 distinct characters (planes 1 and 2)
    (tmp_path / "big.txt").write_text(chars * 2, encoding="utf-8")
    cfg = TextConfig(
        path=str(tmp_path / "big.txt"), seq_len=8, vocab_from="all", prepared=str(tmp_path / "p")
    )
    assert prepare_text(cfg, progress=False)["meta"]["dtype"] == "uint32"
    data = build_text(cfg)
    assert data.parts["train"].dtype == np.dtype("<u4") and data.info.vocab_size == 66_000
    assert data.decode(data.split("val")[0][0]) == (chars * 2)[118_800:118_808]


def test_mismatched_and_corrupted_files(corpus_dir, tmp_path):
    cfg = bpe_config(corpus_dir, tmp_path)
    directory = tmp_path / "prepared"
    with pytest.raises(DataError, match="does not exist; run `discodiff prepare CONFIG` first"):
        build_text(cfg)
    prepare_text(cfg, progress=False)
    with pytest.raises(DataError, match=r"data.val_fraction = 0.1, but the config has 0.2.*--force"):
        build_text(replace(cfg, val_fraction=0.2))
    with pytest.raises(DataError, match=r"data\.tokenizer"):
        build_text(replace(cfg, tokenizer=TokenizerConfig("bpe", 400)))
    with pytest.raises(DataError, match="another vocabulary or tokenizer than this run's"):
        build_text(cfg, {"tokenizer": "{}", "eos_token": "<|endoftext|>"})
    meta = json.loads((directory / "meta.json").read_text())
    (directory / "meta.json").write_text(json.dumps({**meta, "vocab_size": 4096}))
    with pytest.raises(DataError, match="ids of a 4096-token vocabulary, but its encoding has 320"):
        build_text(cfg)
    (directory / "meta.json").write_text("{broken")
    with pytest.raises(DataError, match=r"meta\.json is corrupted"):
        build_text(cfg)
    (directory / "meta.json").write_text(json.dumps(meta))
    train = directory / "train.bin"
    good = train.read_bytes()
    train.write_bytes(good[:-6])
    with pytest.raises(DataError, match=r"train.bin is truncated or corrupted \(.* bytes, expected"):
        build_text(cfg)
    ids = np.frombuffer(good, dtype="<u2").copy()
    ids[:] = 999  # every id outside the 320-token vocabulary, same size: found when windows are read
    train.write_bytes(ids.tobytes())
    with pytest.raises(DataError, match=r"train.bin is corrupted: id 999 at offset \d+ is outside"):
        build_text(cfg).train_stream(0).next(2)
    with pytest.raises(DataError, match="fails its SHA-256 check"):
        prepare_text(cfg, progress=False)
    assert prepare_text(cfg, force=True, progress=False)["status"] == "written"
    assert build_text(cfg).train_stream(0).next(2)[0].max() < 320


def test_changed_corpus_files_make_a_prepared_directory_stale(corpus_dir, tmp_path):
    cfg = bpe_config(corpus_dir, tmp_path)
    first = prepare_text(cfg, progress=False)["meta"]
    before = np.array(build_text(cfg).parts["train"])
    assert first["corpus"]["files"] == 4 and first["corpus"]["bytes"] == 40_000
    doc = corpus_dir / "doc1.txt"
    doc.write_text(doc.read_text(encoding="utf-8").upper(), encoding="utf-8")  # same size, edited
    os.utime(
        doc, ns=(doc.stat().st_atime_ns, doc.stat().st_mtime_ns + 2 * 10**9)
    )  # coarse-clock file systems
    with pytest.raises(DataError, match=r"is stale: .*\(4 files of 40,000 bytes then, 4 of 40,000 now"):
        build_text(cfg)
    report = prepare_text(cfg, progress=False)  # no --force needed: the files changed
    assert report["status"] == "written again (the corpus files changed)"
    assert report["meta"]["corpus"]["sha256"] != first["corpus"]["sha256"]
    data = build_text(cfg)
    assert data.decode(
        torch.from_numpy(data.parts["train"][data.documents["train"][1] :][:40].astype(np.int64))
    ).isupper()
    assert not np.array_equal(np.asarray(data.parts["train"]), before)
    (corpus_dir / "doc4.txt").write_text("an added document", encoding="utf-8")
    with pytest.raises(DataError, match="4 files of 40,000 bytes then, 5 of 40,017 now"):
        build_text(cfg)


def data_vm() -> int:
    """This process's private data memory (heap and private writable mappings), bytes."""
    status = Path("/proc/self/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmData:")) * 1024


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")
def test_memory_stays_flat_on_a_corpus_larger_than_the_allowed_memory(tmp_path):
    """A 6 GB token file (3G ids, sparse) streams under an allowance of 400 MB more private
    memory (RLIMIT_DATA counts heap and private mappings, not read-only file mappings): windows
    come from a memory map, never a copy. Loading the file would take 6 GB and fails under it."""
    (tmp_path / "c.txt").write_text("ab " * 20_000, encoding="utf-8")
    cfg = TextConfig(path=str(tmp_path / "c.txt"), seq_len=256, prepared=str(tmp_path / "p"))
    prepare_text(cfg, progress=False)
    directory = tmp_path / "p"
    tokens = 3 * 2**30
    with open(directory / "train.bin", "r+b") as f:
        f.truncate(tokens * 2)  # sparse: zeros are id 0, a valid character
    meta = json.loads((directory / "meta.json").read_text())
    meta["splits"]["train"]["tokens"] = tokens
    (directory / "meta.json").write_text(json.dumps(meta))
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = data_vm() + 400 * 2**20
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    try:
        data = build_text(cfg)
        stream = data.train_stream(0)
        for _ in range(50):
            x, _ = stream.next(64)
            assert x.shape == (64, 256) and int(x.max()) <= 2
        val, _ = data.split("val")
        assert len(data.parts["train"]) == tokens and val.shape[1] == 256 and data_vm() < limit
        with pytest.raises(MemoryError):
            np.fromfile(directory / "train.bin", dtype=np.uint16)
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


PEAK_SCRIPT = """
import resource, sys
from discodiff.data.text import TextConfig
from discodiff.data.text_encoding import prepare_text
prepare_text(TextConfig(path=sys.argv[1], prepared=sys.argv[2], seq_len=64), progress=False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_prepare_memory_does_not_grow_with_the_corpus(tmp_path):
    """Peak memory of ``prepare`` (characters) on 8 and 64 copies of tiny-shakespeare (9 MB and
    71 MB) differs by less than 40 MB: the corpus streams through (about 2 minutes)."""
    text = read_text(None)
    peaks = []
    for copies in (8, 64):
        root = tmp_path / f"c{copies}"
        root.mkdir()
        for i in range(copies):
            (root / f"{i:03d}.txt").write_text(text, encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(
            [sys.executable, "-c", PEAK_SCRIPT, str(root), str(tmp_path / f"p{copies}")],
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        peaks.append(int(proc.stdout.split()[-1]))
    assert peaks[1] - peaks[0] < 40, f"peak RSS {peaks} MB"
