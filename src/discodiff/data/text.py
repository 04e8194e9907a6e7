"""Character-level text corpora as fixed-length token sequences.

Two registered data sets:

- ``text``: any UTF-8 text file (``path``), or, without a path, tiny-shakespeare shipped inside
  the package (1,115,394 characters, 65 distinct; char-rnn's ``input.txt``, public-domain text).
  The file is cut into train | val | test by fractions, in that order; the default 0.9 / 0.1 / 0
  is char-rnn's and nanoGPT's tiny-shakespeare split. ``format: text8`` first maps the text to
  text8's 27 characters (:func:`~discodiff.data.vocab.to_text8`).
- ``text8``: the real text8 file (Mahoney 2006; 100,000,000 characters of ``a-z`` and space) from
  a local path, with the standard split: the first 90M characters train, the next 5M validation,
  the last 5M test. Online users can fetch it with
  ``wget http://mattmahoney.net/dc/text8.zip && unzip text8.zip``.

Examples are windows of ``seq_len`` characters, ``(N, seq_len)`` long. The training stream draws
windows at uniformly random offsets of the training text (its state is one generator state, so it
resumes exactly); the val and test splits are the consecutive non-overlapping windows of their
text (a last partial window is dropped), optionally thinned to ``eval_windows`` evenly spaced ones.

Vocabulary: for ``format: chars``, the sorted characters of the training text (``vocab_from:
all``: of the whole file, nanoGPT's choice); a character of the val/test text outside it raises
an error that names it. The vocabulary is saved with the run (:meth:`TextData.state_dict`) and a
restored run encodes with the saved one, so ids never shift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, DataError
from ..metrics.text import sample_entropy
from .base import DATASETS, DataInfo, DataSource, GeneratedStream, TrainStream
from .vocab import TEXT8_ALPHABET, CharVocab, to_text8

BUILTIN_CORPUS = "tinyshakespeare.txt"
"""The corpus shipped in ``discodiff/data/builtin/``, used when ``data.path`` is not given."""

TEXT8_FRACTIONS = (0.05, 0.05)
"""text8's validation and test fractions: 5M + 5M of its 100M characters."""


@dataclass
class TextConfig:
    """``data: {name: text}`` (built-in tiny-shakespeare) or ``{name: text, path: corpus.txt}``."""

    path: str | None = None  # UTF-8 text file; None: the built-in tiny-shakespeare
    seq_len: int = 256  # characters per example
    format: Literal["chars", "text8"] = "chars"  # text8: map to a-z and space as text8 does
    val_fraction: float = 0.1  # share of the file after the training text
    test_fraction: float = 0.0  # share at the end; 0: no test text, "test" gives the val windows
    vocab_from: Literal["train", "all"] = "train"  # characters that form the vocabulary
    eval_windows: int | None = None  # at most this many (evenly spaced) val/test windows

    def __post_init__(self) -> None:
        _check_common(self.seq_len, self.eval_windows)
        if not 0 < self.val_fraction < 1 or not 0 <= self.test_fraction < 1:
            raise ValueError(
                f"val_fraction must be in (0, 1) and test_fraction in [0, 1), got "
                f"{self.val_fraction} and {self.test_fraction}"
            )
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must leave training text (sum < 1)")


@dataclass
class Text8Config:
    """``data: {name: text8, path: /data/text8}``: the real text8 file, 90M/5M/5M split."""

    path: str  # the unzipped text8 file
    seq_len: int = 256  # characters per example
    eval_windows: int | None = None  # at most this many (evenly spaced) val/test windows

    def __post_init__(self) -> None:
        _check_common(self.seq_len, self.eval_windows)


def _check_common(seq_len: int, eval_windows: int | None) -> None:
    if seq_len < 1:
        raise ConfigError(f"seq_len must be >= 1, got {seq_len}")
    if eval_windows is not None and eval_windows < 1:
        raise ConfigError(f"eval_windows must be >= 1 or null, got {eval_windows}")


INFILL_HOLE = "\u2591"
"""Shown in place of each hidden character of an infilling prompt (light shade)."""


class TextData(DataSource):
    """A character corpus as ``(N, seq_len)`` long windows; see the module docstring.

    Args:
        ids: ``(n,)`` the whole corpus encoded (uint8 or int32).
        vocab: its vocabulary.
        bounds: ``(train_end, val_end)``: train is ``ids[:train_end]``, val
            ``ids[train_end:val_end]``, test ``ids[val_end:]`` (empty: test = val).
        seq_len: characters per example.
        eval_windows: cap on the number of val/test windows (None: all).
    """

    def __init__(
        self,
        ids: Tensor,
        vocab: CharVocab,
        bounds: tuple[int, int],
        *,
        seq_len: int,
        eval_windows: int | None = None,
    ) -> None:
        train_end, val_end = bounds
        self.vocab = vocab
        self.seq_len = seq_len
        self.eval_windows = eval_windows
        self.parts = {"train": ids[:train_end], "val": ids[train_end:val_end], "test": ids[val_end:]}
        if len(self.parts["test"]) == 0:
            self.parts["test"] = self.parts["val"]
        for name, part in self.parts.items():
            if len(part) < seq_len:
                raise DataError(
                    f"the {name} text has {len(part)} characters, fewer than seq_len={seq_len}; "
                    "use a shorter seq_len or a longer text"
                )
        self.info = DataInfo(
            event_shape=(seq_len,), kind="tokens", vocab_size=len(vocab), unit="bits_per_char"
        )

    def _windows(self, part: Tensor, starts: Tensor) -> Tensor:
        """Windows of ``part`` starting at ``starts`` (n,): (n, seq_len) long."""
        offsets = torch.arange(self.seq_len)
        return part[starts[:, None] + offsets[None, :]].long()

    def train_stream(self, seed: int) -> TrainStream:
        train = self.parts["train"]
        num_starts = len(train) - self.seq_len + 1

        def draw(n: int, g: torch.Generator) -> tuple[Tensor, None]:
            return self._windows(train, torch.randint(0, num_starts, (n,), generator=g)), None

        return GeneratedStream(draw, seed)

    def split(self, name: Literal["val", "test"]) -> tuple[Tensor, None]:
        if name not in ("val", "test"):
            raise ValueError(f"unknown split {name!r}; allowed: 'val', 'test'")
        part = self.parts[name]
        count = len(part) // self.seq_len
        index = torch.arange(count)
        if self.eval_windows is not None and self.eval_windows < count:
            index = torch.linspace(0, count - 1, self.eval_windows, dtype=torch.float64).round().long()
        return self._windows(part, index * self.seq_len), None

    def encode(self, text: str) -> Tensor:
        """``text`` -> ``(len(text),)`` long ids (e.g. an infilling prompt); unknown characters raise."""
        return torch.from_numpy(self.vocab.encode(text).astype(np.int64))

    def decode(self, ids: Tensor) -> list[str]:
        """``(N, L)`` or ``(L,)`` ids -> one string per sequence."""
        rows = ids.detach().cpu().reshape(-1, ids.shape[-1]).numpy()
        return [self.vocab.decode(row) for row in rows]

    def save_samples(self, samples: Tensor, stem: Path, cond: Tensor | None = None) -> list[Path]:
        """Write ``(N, L)`` samples as UTF-8 text to ``stem.txt``, each under a ``=== sample i ===`` line."""
        texts = self.decode(samples)
        path = Path(stem).with_suffix(".txt")
        path.write_text(
            "".join(f"=== sample {i} ===\n{text}\n" for i, text in enumerate(texts)), encoding="utf-8"
        )
        return [path]

    def state_dict(self) -> dict:
        return {"chars": self.vocab.chars}

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
        """Prompt (hidden characters as INFILL_HOLE) and completion, one pair per example."""
        prompts = self.decode(known)
        mask = known_mask.cpu()
        blocks = []
        for i, (prompt, filled) in enumerate(zip(prompts, self.decode(samples))):
            shown = "".join(c if m else INFILL_HOLE for c, m in zip(prompt, mask[i].tolist()))
            blocks.append(f"=== example {i}: prompt ===\n{shown}\n=== example {i}: infilled ===\n{filled}\n")
        path = Path(stem).with_suffix(".txt")
        path.write_text("".join(blocks), encoding="utf-8")
        return [path]


def read_text(path: str | None) -> str:
    """The UTF-8 text at ``path`` (``None``: the built-in tiny-shakespeare), with clear errors."""
    if path is None:
        return (
            resources.files(__package__)
            .joinpath("builtin")
            .joinpath(BUILTIN_CORPUS)
            .read_text(encoding="utf-8")
        )
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"data.path: text file not found: {file}")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"data.path: {file} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    if not text:
        raise DataError(f"data.path: {file} is empty")
    return text


def split_bounds(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """``(train_end, val_end)`` for ``n`` characters: train is the first
    ``floor(n (1 - val - test))``, test the last ``floor(n test)``, val what lies between. The
    fractions are taken at their decimal value (0.1 is exactly 1/10), so tiny-shakespeare's train
    is nanoGPT's first ``int(0.9 n)`` = 1,003,854 characters and text8's splits are exactly
    90M/5M/5M."""
    val, test = Fraction(repr(val_fraction)), Fraction(repr(test_fraction))
    return math.floor(n * (1 - val - test)), n - math.floor(n * test)


def _saved_vocab(state: dict | None) -> CharVocab | None:
    if not state:
        return None
    if not isinstance(state.get("chars"), str):
        raise DataError("saved text data state has no 'chars' vocabulary string")
    return CharVocab(state["chars"])


@DATASETS.register("text", config=TextConfig)
def build_text(config: TextConfig, state: dict | None = None) -> TextData:
    """Any text file (or the built-in tiny-shakespeare); ``state``: a saved vocabulary."""
    text = read_text(config.path)
    if config.format == "text8":
        text = to_text8(text)
    train_end, val_end = split_bounds(len(text), config.val_fraction, config.test_fraction)
    vocab = _saved_vocab(state)
    if vocab is None:
        if config.format == "text8":
            vocab = CharVocab(TEXT8_ALPHABET)
        else:
            vocab = CharVocab.from_text(text[:train_end] if config.vocab_from == "train" else text)
    try:
        ids = vocab.encode(text)
    except ValueError as err:
        raise DataError(
            f"{err}; the vocabulary comes from "
            + (
                "the saved run"
                if state
                else "the training text (set data.vocab_from: all to use the whole file)"
            )
        ) from None
    return TextData(
        torch.from_numpy(ids),
        vocab,
        (train_end, val_end),
        seq_len=config.seq_len,
        eval_windows=config.eval_windows,
    )


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
    bounds = split_bounds(len(ids), *TEXT8_FRACTIONS)
    return TextData(
        torch.from_numpy(ids),
        vocab,
        bounds,
        seq_len=config.seq_len,
        eval_windows=config.eval_windows,
    )
