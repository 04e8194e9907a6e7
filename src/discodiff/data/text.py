"""Text corpora as fixed-length token sequences: characters or subwords, in memory or memory-mapped.

Two registered data sets:

- ``text``: any UTF-8 corpus (``path``: a file, a directory or a glob; see
  :mod:`~discodiff.data.corpus`), or, without a path, tiny-shakespeare shipped inside the package
  (1,115,394 characters, 65 distinct; char-rnn's ``input.txt``, public-domain text). The text is
  cut into train | val | test by character fractions, in that order; the default 0.9 / 0.1 / 0 is
  char-rnn's and nanoGPT's tiny-shakespeare split. ``format: text8`` first maps the text to
  text8's 27 characters (:func:`~discodiff.data.vocab.to_text8`). ``tokenizer`` picks characters
  (the default) or subwords (:mod:`~discodiff.data.tokenizer`); ``prepared`` reads the ids from a
  directory written once by ``discodiff prepare`` (:mod:`~discodiff.data.token_store`) instead of
  encoding the corpus at every start.
- ``text8``: the real text8 file (Mahoney 2006; 100,000,000 characters of ``a-z`` and space) from
  a local path, with the standard split: the first 90M characters train, the next 5M validation,
  the last 5M test. Online users can fetch it with
  ``wget http://mattmahoney.net/dc/text8.zip && unzip text8.zip``.

Documents are concatenated; with ``packing: eos`` (the default for subwords) an EOS token follows
each one, as MDLM packs OpenWebText; with ``wrap`` (the default, and only choice, for characters)
they follow each other directly. Examples are windows of ``seq_len`` ids, ``(N, seq_len)`` long,
across document boundaries. The training stream draws windows at uniformly random offsets of the
training ids (its state is one generator state, so it resumes exactly); the val and test splits
are the consecutive non-overlapping windows of their ids (a last partial window is dropped),
optionally thinned to ``eval_windows`` evenly spaced ones.

Vocabulary: for characters, the sorted characters of the training text (``vocab_from: all``: of
the whole text, nanoGPT's choice); a character outside it raises an error that names it, or, with
``unk: true``, becomes ``<unk>``. The encoding (vocabulary or tokenizer) is saved with the run
(:meth:`TextData.state_dict`) and a restored run encodes with the saved one, so ids never shift.

Likelihood: bits per token, bits per character of the decoded text (comparable across
tokenizers) and perplexity per token (:func:`~discodiff.metrics.text.text_likelihood`).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from ..metrics.text import sample_entropy, text_likelihood
from .base import DATASETS, PREPARERS, DataInfo, DataSource, GeneratedStream, TrainStream
from .corpus import BUILTIN_CORPUS, read_text, split_bounds
from .text_config import Text8Config, TextConfig
from .text_encoding import encode_in_memory, load_prepared, prepare_text
from .tokenizer import Codec
from .vocab import TEXT8_ALPHABET, CharVocab

__all__ = [
    "BUILTIN_CORPUS",
    "INFILL_HOLE",
    "Text8Config",
    "TextConfig",
    "TextData",
    "build_text",
    "build_text8",
    "read_text",
    "split_bounds",
]

TEXT8_FRACTIONS = (0.05, 0.05)
"""text8's validation and test fractions: 5M + 5M of its 100M characters."""

MAX_EVAL_TOKENS = 1 << 25
"""Most ids a val/test split returns at once (256 MB as int64); beyond, set ``data.eval_windows``."""

INFILL_HOLE = "\u2591"
"""Shown in place of each hidden token of an infilling prompt (light shade)."""


class TextData(DataSource):
    """A corpus as ``(N, seq_len)`` long windows; see the module docstring.

    Args:
        parts: ``train``, ``val``, ``test``: each split's ids, ``(n,)`` (in memory, or a read-only
            memory map; an empty test split means test = val).
        vocab: the encoding (:class:`~discodiff.data.vocab.CharVocab` or a subword tokenizer).
        seq_len: ids per example.
        eval_windows: cap on the number of val/test windows (None: all).
        origin: the prepared directory the ids are mapped from (their ids are range-checked in
            every window read, so a corrupted file is named), or None for ids encoded here.
        documents: each split's document starts, ``(d,)`` int64 offsets, where known.
    """

    def __init__(
        self,
        parts: dict[str, np.ndarray],
        vocab: Codec,
        *,
        seq_len: int,
        eval_windows: int | None = None,
        origin: Path | None = None,
        documents: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.vocab, self.seq_len, self.eval_windows, self.origin = vocab, seq_len, eval_windows, origin
        self.parts = dict(parts)
        self.documents = documents or {}
        self._file = {name: name for name in self.parts}  # which split's file a split reads
        if len(self.parts["test"]) == 0:
            self.parts["test"], self._file["test"] = self.parts["val"], "val"
        what = "characters" if isinstance(vocab, CharVocab) else "tokens"
        for name, part in self.parts.items():
            if len(part) < seq_len:
                raise DataError(
                    f"the {name} text has {len(part)} {what}, fewer than seq_len={seq_len}; "
                    "use a shorter seq_len or a longer text"
                )
        self.info = DataInfo(event_shape=(seq_len,), kind="tokens", vocab_size=len(vocab), unit=vocab.unit)

    def _windows(self, name: str, starts: np.ndarray) -> Tensor:
        """Windows of split ``name`` starting at ``starts`` (n,): (n, seq_len) long."""
        ids = self.parts[name][starts[:, None] + np.arange(self.seq_len)[None, :]].astype(np.int64)
        if self.origin is not None and ids.size and ids.max() >= len(self.vocab):
            row, col = np.unravel_index(int(ids.argmax()), ids.shape)
            raise DataError(
                f"{self.origin / self._file[name]}.bin is corrupted: id {int(ids.max())} at offset "
                f"{int(starts[row]) + int(col)} is outside the vocabulary of {len(self.vocab)}; "
                "run `discodiff prepare CONFIG --force`"
            )
        return torch.from_numpy(ids)

    def train_stream(self, seed: int) -> TrainStream:
        num_starts = len(self.parts["train"]) - self.seq_len + 1

        def draw(n: int, g: torch.Generator) -> tuple[Tensor, None]:
            return self._windows("train", torch.randint(0, num_starts, (n,), generator=g).numpy()), None

        return GeneratedStream(draw, seed)

    def split(self, name: Literal["val", "test"]) -> tuple[Tensor, None]:
        if name not in ("val", "test"):
            raise ValueError(f"unknown split {name!r}; allowed: 'val', 'test'")
        count = len(self.parts[name]) // self.seq_len
        index = np.arange(count)
        if self.eval_windows is not None and self.eval_windows < count:
            index = np.linspace(0, count - 1, self.eval_windows).round().astype(np.int64)
        if len(index) * self.seq_len > MAX_EVAL_TOKENS:
            raise DataError(
                f"the {name} split has {len(index):,} windows of {self.seq_len}; set data.eval_windows "
                f"(e.g. 4096) to evaluate on evenly spaced ones"
            )
        return self._windows(name, index * self.seq_len), None

    def encode(self, text: str) -> Tensor:
        """``text`` -> ``(n,)`` long ids (e.g. a prompt); what the encoding lacks raises a DataError."""
        try:
            return torch.from_numpy(self.vocab.encode(text).astype(np.int64))
        except ValueError as err:
            raise DataError(str(err)) from None

    def decode(self, ids: Tensor) -> str:
        """``(L,)`` ids -> text (subwords show special tokens such as EOS)."""
        if ids.dim() != 1:
            raise ValueError(
                f"decode takes one sequence (L,), got shape {tuple(ids.shape)}; see decode_batch"
            )
        return self.vocab.decode(ids.detach().cpu().numpy())

    def decode_batch(self, ids: Tensor) -> list[str]:
        """``(N, L)`` ids -> one string per sequence."""
        return [self.decode(row) for row in ids.detach().cpu().reshape(-1, ids.shape[-1])]

    def use_directory(self, path: Path) -> None:
        """Also write a subword tokenizer to ``path/tokenizer.json`` (for other tools)."""
        super().use_directory(path)
        save = getattr(self.vocab, "save", None)
        target = Path(path) / "tokenizer.json"
        if save is not None and not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".tokenizer.json.{os.getpid()}.tmp")
            save(tmp)
            tmp.replace(target)

    def save_samples(self, samples: Tensor, stem: Path, cond: Tensor | None = None) -> list[Path]:
        """Write ``(N, L)`` samples as UTF-8 text to ``stem.txt``, each under a ``=== sample i ===`` line."""
        path = Path(stem).with_suffix(".txt")
        texts = self.decode_batch(samples)
        path.write_text(
            "".join(f"=== sample {i} ===\n{text}\n" for i, text in enumerate(texts)), encoding="utf-8"
        )
        return [path]

    def state_dict(self) -> dict:
        return self.vocab.state_dict()

    def likelihood_metrics(self, nats: float, x: Tensor) -> dict[str, float]:
        """Bits per token, bits per character of the decoded text, perplexity per token."""
        rows = x.detach().cpu().reshape(len(x), -1).numpy()
        return text_likelihood(nats, tokens=rows.size, chars=sum(self.vocab.count_chars(r) for r in rows))

    def sample_metrics(self, samples: Tensor, cond: Tensor | None = None) -> dict[str, float]:
        """Mean per-sample unigram entropy in nats (low values expose repetitive, collapsed text)."""
        return {"sample_entropy": sample_entropy(samples, len(self.vocab))}

    def infilling_example(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` test windows with their middle half hidden."""
        x, _ = self.split("test")
        x = x[torch.linspace(0, len(x) - 1, n).round().long()]
        mask = torch.ones_like(x, dtype=torch.bool)
        mask[:, self.seq_len // 4 : 3 * self.seq_len // 4] = False
        return x, mask

    def save_infilling(self, known: Tensor, known_mask: Tensor, samples: Tensor, stem: Path) -> list[Path]:
        """Prompt (each hidden token as INFILL_HOLE) and completion, one pair per example."""
        blocks = []
        for i, (row, mask) in enumerate(zip(known.cpu(), known_mask.cpu())):
            shown = self._with_holes(row, mask)
            filled = self.decode(samples[i].cpu())
            blocks.append(f"=== example {i}: prompt ===\n{shown}\n=== example {i}: infilled ===\n{filled}\n")
        path = Path(stem).with_suffix(".txt")
        path.write_text("".join(blocks), encoding="utf-8")
        return [path]

    def _with_holes(self, ids: Tensor, mask: Tensor) -> str:
        """The known runs of ``ids`` decoded, each hidden token shown as INFILL_HOLE."""
        cuts = [0, *(torch.nonzero(mask[1:] != mask[:-1]).flatten() + 1).tolist(), len(ids)]
        runs = itertools.pairwise(cuts)
        return "".join(self.decode(ids[a:b]) if mask[a] else INFILL_HOLE * (b - a) for a, b in runs)


@DATASETS.register("text", config=TextConfig)
def build_text(config: TextConfig, state: dict | None = None) -> TextData:
    """Any text corpus (or the built-in tiny-shakespeare); ``state``: a saved encoding."""
    if config.prepared is not None:
        parts, documents, codec, directory = load_prepared(config, state)
        return TextData(
            parts,
            codec,
            seq_len=config.seq_len,
            eval_windows=config.eval_windows,
            origin=directory,
            documents=documents,
        )
    parts, documents, codec = encode_in_memory(config, state)
    return TextData(
        parts, codec, seq_len=config.seq_len, eval_windows=config.eval_windows, documents=documents
    )


PREPARERS.register("text")(prepare_text)


@DATASETS.register("text8", config=Text8Config)
def build_text8(config: Text8Config, state: dict | None = None) -> TextData:
    """The real text8 file; its vocabulary is always :data:`TEXT8_ALPHABET`."""
    file = Path(config.path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(
            f"data.path: text8 file not found: {file} (download: wget http://mattmahoney.net/dc/text8.zip "
            "&& unzip text8.zip)"
        )
    raw = file.read_bytes()
    if not raw:
        raise DataError(f"data.path: {file} is empty")
    if state and state.get("chars") != TEXT8_ALPHABET:
        raise DataError("the saved vocabulary is not text8's; this run was trained on other data")
    vocab = CharVocab(TEXT8_ALPHABET)
    invalid = np.uint8(len(vocab))  # any id outside the vocabulary marks a byte that is not text8's
    table = np.full(256, invalid, dtype=np.uint8)
    table[np.frombuffer(TEXT8_ALPHABET.encode("ascii"), dtype=np.uint8)] = np.arange(len(vocab))
    ids = table[np.frombuffer(raw, dtype=np.uint8)]  # (n,) uint8, one byte per character
    if (ids == invalid).any():
        bad = int(np.flatnonzero(ids == invalid)[0])
        raise DataError(
            f"{file} is not a text8 file: byte {bytes([raw[bad]])!r} at offset {bad} is not a-z or space "
            "(for other text use data 'text' with format: text8)"
        )
    train_end, val_end = split_bounds(len(ids), *TEXT8_FRACTIONS)
    parts = {"train": ids[:train_end], "val": ids[train_end:val_end], "test": ids[val_end:]}
    return TextData(parts, vocab, seq_len=config.seq_len, eval_windows=config.eval_windows)
