"""Text corpora on disk: which files, which documents, and the pieces of text each split gets.

A corpus is ``data.path``: one UTF-8 file, a directory (every file under it whose name does not
start with a dot, recursively, in sorted order) or a glob (``works/*_gut.txt``, sorted); ``None``
is the tiny-shakespeare shipped in the package. ``documents: file`` makes each file one document;
``documents: jsonl`` reads each line of each file as a JSON object whose ``jsonl_key`` field
(``text``) is one document, the usual export format of OpenWebText and FineWeb.

Everything streams, so memory stays flat however large the corpus: a document is read in chunks
of about :data:`CHUNK_CHARS` characters, cut before a space that follows a non-space. Byte-level
BPE (GPT-2's pattern), Metaspace (Unigram) and whitespace pre-tokenizers all split words there, so
tokenizing chunk by chunk gives the tokens of the whole text. ``format: text8`` maps each chunk to
text8's alphabet; runs of spaces that meet at a chunk edge are squeezed as in the whole text.

Splits: the text of all documents, in order, is cut into train | val | test at character
fractions (:func:`split_bounds`), so one file splits as nanoGPT splits it and a collection of
documents has at most two documents cut by a split boundary.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Literal

from tqdm.auto import tqdm

from ..errors import DataError
from .vocab import to_text8

BUILTIN_CORPUS = "tinyshakespeare.txt"
"""The corpus shipped in ``discodiff/data/builtin/``, used when ``data.path`` is not given."""

CHUNK_CHARS = 1 << 16
"""Characters per chunk of a document (tokenized together; 64 Ki keeps encoding batches parallel)."""

CUT_LOOKAHEAD = 1 << 12
"""How far past :data:`CHUNK_CHARS` a chunk may run to end at a word boundary."""

SPLITS = ("train", "val", "test")
_GLOB_CHARS = frozenset("*?[")


def split_bounds(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """``(train_end, val_end)`` for ``n`` characters: train is the first
    ``floor(n (1 - val - test))``, test the last ``floor(n test)``, val what lies between. The
    fractions are taken at their decimal value (0.1 is exactly 1/10), so tiny-shakespeare's train
    is nanoGPT's first ``int(0.9 n)`` = 1,003,854 characters and text8's splits are exactly
    90M/5M/5M."""
    val, test = Fraction(repr(val_fraction)), Fraction(repr(test_fraction))
    return math.floor(n * (1 - val - test)), n - math.floor(n * test)


def corpus_source(path: str | None) -> str:
    """Where a corpus is: its resolved path (the files need not exist), or ``builtin:tinyshakespeare.txt``."""
    return f"builtin:{BUILTIN_CORPUS}" if path is None else str(Path(path).expanduser().resolve())


@dataclass(frozen=True)
class Piece:
    """A run of one document's text inside one split.

    Attributes:
        split: ``train``, ``val`` or ``test``.
        text: the characters.
        start: the first piece of its document in this split (a document boundary precedes it).
        end: the last piece of its document (the document ends here: an EOS may follow).
    """

    split: str
    text: str
    start: bool
    end: bool


def _cut(buf: str) -> int:
    """Where to end a chunk of ``buf`` (longer than CHUNK_CHARS + CUT_LOOKAHEAD): before the first
    space after CHUNK_CHARS with a non-space on both sides, else after a newline, else at
    CHUNK_CHARS."""
    limit = CHUNK_CHARS + CUT_LOOKAHEAD
    for i in range(CHUNK_CHARS, limit):
        if buf[i] == " " and not buf[i - 1].isspace() and not buf[i + 1].isspace():
            return i
    newline = buf.find("\n", CHUNK_CHARS, limit)
    return newline + 1 if newline >= 0 else CHUNK_CHARS


def chunked(blocks: Iterable[str]) -> Iterator[str]:
    """Re-cut a stream of text blocks into chunks of about CHUNK_CHARS (see the module docstring)."""
    buf = ""
    for block in blocks:
        buf += block
        while len(buf) > CHUNK_CHARS + CUT_LOOKAHEAD:
            cut = _cut(buf)
            yield buf[:cut]
            buf = buf[cut:]
    if buf:
        yield buf


class Corpus:
    """The documents at ``path`` (see the module docstring), read lazily, chunk by chunk."""

    def __init__(
        self,
        path: str | None,
        *,
        documents: Literal["file", "jsonl"] = "file",
        jsonl_key: str = "text",
        format: Literal["chars", "text8"] = "chars",
    ) -> None:
        self.path, self.documents, self.jsonl_key, self.format = path, documents, jsonl_key, format
        self.files()  # fail early on a missing path

    def source(self) -> str:
        return corpus_source(self.path)

    def files(self) -> Iterator[Path]:
        """The corpus files in order (none for the built-in corpus)."""
        if self.path is None:
            return iter(())
        path = Path(self.path).expanduser()
        if _GLOB_CHARS & set(self.path):
            files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
            if not files:
                raise FileNotFoundError(f"data.path: no files match {self.path}")
            return iter(files)
        if path.is_dir():
            first = next(_walk(path), None)
            if first is None:
                raise FileNotFoundError(f"data.path: directory {path} holds no files")
            return _walk(path)
        if not path.is_file():
            raise FileNotFoundError(f"data.path: text file not found: {path}")
        return iter([path])

    def signature(self) -> dict:
        """What the corpus files are, without reading them: their count, total bytes and a
        SHA-256 of each file's path, size and modification time, in order. An edited, added,
        removed or renamed file changes it (a prepared directory records it to notice a stale copy)."""
        h, count, size = hashlib.sha256(), 0, 0
        if self.path is None:
            text = resources.files(__package__).joinpath("builtin").joinpath(BUILTIN_CORPUS)
            entries = [(f"builtin:{BUILTIN_CORPUS}", len(text.read_bytes()), 0)]
        else:
            entries = ((os.path.abspath(f), *_size_mtime(f)) for f in self.files())
        for name, nbytes, mtime in entries:
            h.update(f"{name}\0{nbytes}\0{mtime}\n".encode("utf-8", "surrogateescape"))
            count, size = count + 1, size + nbytes
        return {"files": count, "bytes": size, "sha256": h.hexdigest()}

    def _raw_documents(self) -> Iterator[Iterator[str]]:
        """Each document as a stream of text blocks."""
        if self.path is None:
            text = resources.files(__package__).joinpath("builtin").joinpath(BUILTIN_CORPUS)
            yield iter([text.read_text(encoding="utf-8")])
            return
        single = Path(self.path).expanduser().is_file()
        for file in self.files():
            if self.documents == "jsonl":
                yield from (iter([text]) for text in _jsonl_texts(file, self.jsonl_key))
            else:
                yield _file_blocks(file, empty_error=single)

    def iter_documents(self) -> Iterator[Iterator[str]]:
        """Each non-empty document as a stream of chunks, mapped to ``format``."""
        squeeze = _Text8Squeeze() if self.format == "text8" else None
        for blocks in self._raw_documents():
            chunks = chunked(blocks)
            yield chunks if squeeze is None else squeeze.map(chunks)

    def count_chars(self, *, progress: bool = False) -> int:
        """Characters of the whole (mapped) corpus text."""
        total = 0
        with tqdm(desc="count", unit="char", unit_scale=True, disable=not progress) as bar:
            for chunk in (chunk for doc in self.iter_documents() for chunk in doc):
                total += len(chunk)
                bar.update(len(chunk))
        if total == 0:
            raise DataError(f"data.path: {self.path} holds no text")
        return total

    def pieces(self, bounds: tuple[int, int], *, splits: Iterable[str] = SPLITS) -> Iterator[Piece]:
        """The corpus text cut at ``bounds = (train_end, val_end)`` characters, as pieces of
        documents in order (only those of ``splits``; reading stops after the last one asked)."""
        wanted = set(splits)
        ends = (bounds[0], bounds[1], math.inf)
        last_wanted = max(SPLITS.index(s) for s in wanted)
        pos, split = 0, 0
        for doc in self.iter_documents():
            start = True
            for chunk, last_chunk in _with_last(doc):
                while chunk:
                    while pos >= ends[split]:
                        split, start = split + 1, True
                    if split > last_wanted:
                        return
                    take = min(len(chunk), ends[split] - pos)
                    part, chunk, pos = chunk[:take], chunk[take:], pos + take
                    if SPLITS[split] in wanted:
                        yield Piece(SPLITS[split], part, start, last_chunk and not chunk)
                    start = False


class _Text8Squeeze:
    """Maps chunks with :func:`to_text8`, squeezing the two spaces that meet at a chunk edge
    (``to_text8`` squeezes every run of non-letters to one space; a run cut by a chunk edge would
    otherwise leave two). One instance spans the whole corpus: documents are one text."""

    def __init__(self) -> None:
        self.ends_in_space = False

    def map(self, chunks: Iterable[str]) -> Iterator[str]:
        for chunk in chunks:
            mapped = to_text8(chunk)
            if self.ends_in_space and mapped.startswith(" "):
                mapped = mapped[1:]
            if mapped:
                self.ends_in_space = mapped.endswith(" ")
                yield mapped


def _with_last(items: Iterator[str]) -> Iterator[tuple[str, bool]]:
    """``(item, is_last)`` pairs."""
    prev = next(items, None)
    for item in items:
        yield prev, False
        prev = item
    if prev is not None:
        yield prev, True


def _walk(root: Path) -> Iterator[Path]:
    """Files under ``root`` (not hidden), depth first, each directory in sorted order."""
    entries = sorted(os.scandir(root), key=lambda e: e.name)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            yield from _walk(Path(entry.path))
        elif entry.is_file():
            yield Path(entry.path)


def _size_mtime(file: Path) -> tuple[int, int]:
    stat = file.stat()
    return stat.st_size, stat.st_mtime_ns


def _file_blocks(file: Path, *, empty_error: bool) -> Iterator[str]:
    """The text of ``file`` in blocks of CHUNK_CHARS characters (universal newlines)."""
    try:
        with open(file, encoding="utf-8") as f:
            block = f.read(CHUNK_CHARS)
            if not block and empty_error:
                raise DataError(f"data.path: {file} is empty")
            while block:
                yield block
                block = f.read(CHUNK_CHARS)
    except UnicodeDecodeError as err:
        raise DataError(f"data.path: {file} is not UTF-8 text ({err.reason})") from None


def _jsonl_texts(file: Path, key: str) -> Iterator[str]:
    """The ``key`` field of each JSON line of ``file`` (blank lines skipped)."""
    try:
        with open(file, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{file}:{number}: not a JSON line ({err.msg})") from None
                if not isinstance(record, dict) or not isinstance(record.get(key), str):
                    raise DataError(f"{file}:{number}: expected a JSON object with a string field {key!r}")
                yield record[key]
    except UnicodeDecodeError as err:
        raise DataError(f"data.path: {file} is not UTF-8 text ({err.reason})") from None


def read_text(path: str | None) -> str:
    """The whole text of a corpus of one document (``None``: the built-in tiny-shakespeare)."""
    return "".join(chunk for doc in Corpus(path).iter_documents() for chunk in doc)
