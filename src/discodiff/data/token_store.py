"""Token streams of a corpus: encoded in memory, or written once to a prepared directory of
memory-mapped files (``discodiff prepare``) and read from it (``data.prepared``).

A prepared directory::

    meta.json        format and version, id dtype, vocabulary size, EOS id, the data config it was
                     made from, the corpus files' signature (count, bytes, SHA-256 of names, sizes
                     and modification times: a stale directory is noticed while the files exist),
                     and per split: tokens, documents, characters, SHA-256 of its tokens
    codec.json       the encoding (character vocabulary or tokenizer), as a run saves it
    tokenizer.json   the tokenizer, for other tools (subword encodings only)
    train.bin ...    the split's ids, raw little-endian uint16 (uint32 beyond 65,536 ids)
    train.docs ...   little-endian int64 offsets into train.bin where documents (or the part of one
                     that falls in the split) begin

It is written under a temporary name and renamed into place: a prepared directory is complete or
absent. Opening it checks the format, every file's size against ``meta.json``, the config it was
made from and the encoding against the run's, each with an error that says what to do.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..errors import DataError
from .corpus import SPLITS, Corpus
from .tokenizer import Codec

FORMAT = "discodiff-tokens"
VERSION = 1
META, CODEC, TOKENIZER = "meta.json", "codec.json", "tokenizer.json"
DOC_DTYPE = np.dtype("<i8")
ENCODE_BATCH_CHARS = 1 << 22
"""Characters of text encoded per parallel batch (a few MB in flight, whatever the corpus size)."""


def file_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else uint32 (little-endian)."""
    if vocab_size > 1 << 32:
        raise DataError(f"a vocabulary of {vocab_size} ids does not fit uint32")
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


def memory_dtype(vocab_size: int) -> np.dtype:
    """The smallest dtype for ids held in memory (uint8 up to 256 ids)."""
    return np.dtype(np.uint8) if vocab_size <= 256 else file_dtype(vocab_size)


class TokenSink:
    """Collects one split's ids and document starts, in memory or into two files."""

    def __init__(self, dtype: np.dtype, directory: Path | None = None, split: str = "") -> None:
        self.dtype, self.tokens, self.documents, self.chars = dtype, 0, 0, 0
        self._ids: list[np.ndarray] = []
        self._docs: list[int] = []
        self._hash = hashlib.sha256()
        self._files = None
        if directory is not None:
            self._files = (open(directory / f"{split}.bin", "wb"), open(directory / f"{split}.docs", "wb"))

    def document(self) -> None:
        """A document begins at the current offset."""
        if self._files is None:
            self._docs.append(self.tokens)
        else:
            self._files[1].write(np.array([self.tokens], dtype=DOC_DTYPE).tobytes())
        self.documents += 1

    def write(self, ids: np.ndarray, *, chars: int = 0) -> None:
        ids = np.asarray(ids).astype(self.dtype, copy=False)
        self.tokens, self.chars = self.tokens + len(ids), self.chars + chars
        if self._files is None:
            self._ids.append(ids)
        else:
            data = ids.tobytes()
            self._hash.update(data)
            self._files[0].write(data)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """In memory: the ids and the document starts."""
        ids = np.concatenate(self._ids) if self._ids else np.zeros(0, self.dtype)
        return ids, np.asarray(self._docs, dtype=np.int64)

    def abandon(self) -> None:
        """Close the files without finishing them (the caller deletes them)."""
        for f in self._files or ():
            f.close()

    def close(self) -> dict:
        """Into files: flush and return the split's entry of ``meta.json``."""
        for f in self._files:
            f.flush()
            os.fsync(f.fileno())
            f.close()
        stats = {"tokens": self.tokens, "documents": self.documents, "characters": self.chars}
        return {**stats, "sha256": self._hash.hexdigest()}


def encode_corpus(
    corpus: Corpus,
    bounds: tuple[int, int],
    codec: Codec,
    sinks: dict[str, TokenSink],
    *,
    eos: bool,
    progress: bool = False,
    total_chars: int | None = None,
) -> None:
    """Encode the corpus split at ``bounds`` into ``sinks``, batch by batch; with ``eos``, the
    codec's EOS id follows every document (MDLM's packing: documents separated by EOS)."""
    separator = np.array([codec.eos_id if eos else 0])
    bar = tqdm(total=total_chars, desc="encode", unit="char", unit_scale=True, disable=not progress)
    batch, size = [], 0

    def flush() -> None:
        for piece, ids in zip(batch, codec.encode_batch([p.text for p in batch])):
            sink = sinks[piece.split]
            if piece.start:
                sink.document()
            sink.write(ids, chars=len(piece.text))
            if eos and piece.end:
                sink.write(separator)
        bar.update(size)

    for piece in corpus.pieces(bounds):
        batch.append(piece)
        size += len(piece.text)
        if size >= ENCODE_BATCH_CHARS:
            flush()
            batch, size = [], 0
    flush()
    bar.close()


def write_prepared(
    directory: Path, *, meta: dict, codec: Codec, encode: Callable[[dict[str, TokenSink]], None]
) -> dict:
    """Write a prepared directory atomically (replacing an old one); returns its ``meta.json``."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    dtype = file_dtype(len(codec))
    sinks = {split: TokenSink(dtype, tmp, split) for split in SPLITS}
    try:
        encode(sinks)
        splits = {split: sink.close() for split, sink in sinks.items()}
    except BaseException:
        for sink in sinks.values():
            sink.abandon()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    state = json.dumps(codec.state_dict())
    (tmp / CODEC).write_text(state, encoding="utf-8")
    if hasattr(codec, "save"):
        codec.save(tmp / TOKENIZER)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "dtype": dtype.name,
        "vocab_size": len(codec),
        "eos_id": codec.eos_id,
        "codec_sha256": hashlib.sha256(state.encode("utf-8")).hexdigest(),
        **meta,
        "splits": splits,
    }
    (tmp / META).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    if directory.exists():
        old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        os.replace(directory, old)
        shutil.rmtree(old)
    os.replace(tmp, directory)
    return meta


def _hint(directory: Path) -> str:
    return f"run `discodiff prepare CONFIG --force` to write {directory} again"


def read_meta(directory: Path) -> dict:
    """``meta.json`` of a prepared directory, checked for format and version."""
    path = Path(directory) / META
    if not Path(directory).is_dir():
        raise DataError(f"data.prepared: {directory} does not exist; run `discodiff prepare CONFIG` first")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"data.prepared: {directory} is not a prepared corpus ({META} is missing)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"data.prepared: {path} is corrupted ({err}); {_hint(directory)}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise DataError(f"data.prepared: {path} is not a {FORMAT} v{VERSION} file; {_hint(directory)}")
    return meta


def check_config(directory: Path, meta: dict, config: dict) -> None:
    """The prepared directory was made from this data config (each key compared, first mismatch named)."""
    made = meta.get("config", {})
    for key, value in config.items():
        if made.get(key) != value:
            raise DataError(
                f"data.prepared: {directory} was prepared with data.{key} = {made.get(key)!r}, but the "
                f"config has {value!r}; {_hint(directory)}"
            )


def open_prepared(
    directory: Path, meta: dict, codec: Codec
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Memory-map the splits' ids and document starts after checking them against ``meta`` and
    ``codec``."""
    directory = Path(directory)
    if meta.get("vocab_size") != len(codec):
        raise DataError(
            f"data.prepared: {directory} holds ids of a {meta.get('vocab_size')}-token vocabulary, but its "
            f"encoding has {len(codec)}; {_hint(directory)}"
        )
    if meta.get("dtype") not in ("uint16", "uint32") or np.dtype(meta["dtype"]) != file_dtype(len(codec)):
        raise DataError(f"data.prepared: {directory} has id dtype {meta.get('dtype')!r}; {_hint(directory)}")
    dtype = file_dtype(len(codec))
    parts, docs = {}, {}
    for split in SPLITS:
        entry = meta.get("splits", {}).get(split, {})
        for suffix, count, item in ((".bin", "tokens", dtype.itemsize), (".docs", "documents", 8)):
            file = directory / f"{split}{suffix}"
            expected = int(entry.get(count, -1)) * item
            actual = file.stat().st_size if file.is_file() else None
            if actual != expected:
                found = "missing" if actual is None else f"{actual:,} bytes"
                raise DataError(
                    f"data.prepared: {file} is truncated or corrupted ({found}, expected {expected:,} "
                    f"bytes); {_hint(directory)}"
                )
        parts[split] = _map(directory / f"{split}.bin", dtype) if entry["tokens"] else np.zeros(0, dtype)
        docs[split] = (
            _map(directory / f"{split}.docs", DOC_DTYPE) if entry["documents"] else np.zeros(0, DOC_DTYPE)
        )
    return parts, docs


def _map(file: Path, dtype: np.dtype) -> np.ndarray:
    """A read-only memory map of ``file`` as ids. Training reads windows at random offsets, so the
    kernel is told not to read ahead (``MADV_RANDOM``): without it each window's page fault reads
    128 KB or more around it (measured: 3 s against 3 ms for 320 windows of a fresh file)."""
    with open(file, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    if hasattr(mapped, "madvise") and hasattr(mmap, "MADV_RANDOM"):
        mapped.madvise(mmap.MADV_RANDOM)
    return np.frombuffer(mapped, dtype=dtype)


def verify_prepared(directory: Path, meta: dict, *, progress: bool = False) -> None:
    """Recompute every split's SHA-256 and compare it with ``meta.json`` (reads the whole files)."""
    for split in SPLITS:
        h = hashlib.sha256()
        file = Path(directory) / f"{split}.bin"
        with (
            open(file, "rb") as f,
            tqdm(desc=f"verify {split}", unit="B", unit_scale=True, disable=not progress) as bar,
        ):
            for block in iter(lambda: f.read(1 << 24), b""):
                h.update(block)
                bar.update(len(block))
        if h.hexdigest() != meta["splits"][split]["sha256"]:
            raise DataError(f"data.prepared: {file} fails its SHA-256 check (corrupted); {_hint(directory)}")
