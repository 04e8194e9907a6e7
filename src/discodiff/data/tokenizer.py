"""Subword tokenizers through Hugging Face ``tokenizers`` (offline), and the codec protocol text
data uses for characters and subwords alike.

``data.tokenizer`` chooses the encoding:

- ``chars`` (default): one id per character (:class:`~discodiff.data.vocab.CharVocab`);
- ``bpe``: byte-level BPE (GPT-2's scheme: the 256 byte symbols, GPT-2's pre-tokenization
  pattern, merges learned by frequency) of ``vocab_size`` tokens, trained on the training split;
- ``unigram``: a Unigram language model (Kudo 2018, SentencePiece's default) of ``vocab_size``
  pieces with Metaspace pre-tokenization, trained on the training split;
- ``file``: a user's ``tokenizer.json`` (``path``), e.g. GPT-2's 50,257 tokens.

**Ids.** A tokenizer's ids are 0..V-1, its special tokens included. The document separator
``eos_token`` (GPT-2's ``<|endoftext|>``) is one of them: trained tokenizers reserve it, a loaded
tokenizer that lacks it gets it added as id V. Methods add their own ids beyond the data's V (the
mask of absorbing diffusion is V, the AR baseline's start id is V), so they never collide with the
tokenizer's.

The trained or loaded tokenizer is part of the data state saved with a run (and written to
``RUN_DIR/tokenizer.json``): sampling, evaluation and export encode and decode with it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from ..errors import DataError

MIN_BPE_VOCAB = 257
"""A byte-level BPE holds the 256 byte symbols and the EOS token before any merge."""

UNKNOWN_SHOWN = 10
"""How many unencodable characters an encoding error lists."""


@dataclass
class TokenizerConfig:
    """``data.tokenizer``: ``{type: bpe, vocab_size: 4096}``, ``{type: file, path: tokenizer.json}``."""

    type: Literal["chars", "bpe", "unigram", "file"] = "chars"
    vocab_size: int | None = None  # bpe / unigram: tokens in all, special tokens included
    path: str | None = None  # file: a tokenizer.json (e.g. GPT-2's)
    eos_token: str = "<|endoftext|>"  # the document separator (added to a loaded tokenizer if absent)
    min_frequency: int = 2  # bpe: a merge needs a pair seen at least this often
    max_train_chars: int | None = None  # bpe / unigram: train on this many characters at most

    def __post_init__(self) -> None:
        trained = self.type in ("bpe", "unigram")
        if trained and self.vocab_size is None:
            raise ValueError(f"tokenizer type {self.type!r} needs vocab_size")
        if self.type == "bpe" and self.vocab_size is not None and self.vocab_size < MIN_BPE_VOCAB:
            raise ValueError(f"a byte-level BPE needs vocab_size >= {MIN_BPE_VOCAB}, got {self.vocab_size}")
        if self.type == "unigram" and self.vocab_size is not None and self.vocab_size < 3:
            raise ValueError(f"a Unigram tokenizer needs vocab_size >= 3, got {self.vocab_size}")
        if not trained and self.vocab_size is not None:
            raise ValueError(f"vocab_size applies to trained tokenizers (bpe, unigram), not {self.type!r}")
        if (self.type == "file") != (self.path is not None):
            raise ValueError("tokenizer type 'file' needs path (a tokenizer.json); other types take none")
        if self.min_frequency < 1 or (self.max_train_chars is not None and self.max_train_chars < 1):
            raise ValueError("min_frequency and max_train_chars must be >= 1")
        if not self.eos_token:
            raise ValueError("eos_token must be a non-empty string")


class Codec(Protocol):
    """Text <-> ids, the same for characters and subwords."""

    unit: str  # the likelihood unit of one id: bits_per_char or bits_per_token
    eos_id: int | None  # the document separator, if the encoding has one

    def __len__(self) -> int: ...
    def encode(self, text: str) -> np.ndarray: ...
    def decode(self, ids: np.ndarray) -> str: ...
    def count_chars(self, ids: np.ndarray) -> int: ...
    def state_dict(self) -> dict: ...


class SubwordTokenizer:
    """A ``tokenizers.Tokenizer`` as a :class:`Codec`; ids that are ``<unk>`` raise unless ``allow_unk``."""

    unit = "bits_per_token"

    def __init__(
        self, tokenizer, *, eos_token: str, allow_unk: bool = False, json_text: str | None = None
    ) -> None:
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        self.size = tokenizer.get_vocab_size(with_added_tokens=True)
        if not vocab or max(vocab.values()) + 1 != self.size or len(set(vocab.values())) != self.size:
            raise DataError(f"the tokenizer's ids are not 0..{self.size - 1} without gaps")
        self.eos_id = tokenizer.token_to_id(eos_token)
        if self.eos_id is None:
            raise DataError(f"the tokenizer has no {eos_token!r} token (data.tokenizer.eos_token)")
        self.tokenizer, self.eos_token, self.allow_unk = tokenizer, eos_token, allow_unk
        self.json = json_text or tokenizer.to_str()  # a restored tokenizer keeps its saved text exactly
        model = json.loads(self.json).get(
            "model", {}
        )  # Unigram names its unk by id, BPE and WordPiece by token
        unk_token = model.get("unk_token")
        self.unk_id = model.get("unk_id") if unk_token is None else tokenizer.token_to_id(unk_token)
        self.sha256 = hashlib.sha256(self.json.encode("utf-8")).hexdigest()

    def __len__(self) -> int:
        return self.size

    def encode(self, text: str) -> np.ndarray:
        """``text`` -> ``(n,)`` int64 ids (no special tokens added)."""
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        """Each text -> its ids, encoded in parallel."""
        out = []
        for text, enc in zip(texts, self.tokenizer.encode_batch(texts, add_special_tokens=False)):
            ids = np.asarray(enc.ids, dtype=np.int64)
            if self.unk_id is not None and not self.allow_unk and (ids == self.unk_id).any():
                spans = [enc.offsets[i] for i in np.flatnonzero(ids == self.unk_id)]
                shown = sorted({text[a:b] for a, b in spans[: 100 * UNKNOWN_SHOWN]})[:UNKNOWN_SHOWN]
                raise DataError(
                    f"{len(spans)} piece(s) of text are not in the tokenizer's vocabulary (<unk>): "
                    f"{', '.join(repr(s) for s in shown)}; set data.unk: true to score them as <unk>"
                )
            out.append(ids)
        return out

    def _checked(self, ids: np.ndarray) -> list[int]:
        ids = np.asarray(ids).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.size):
            raise ValueError(f"ids must lie in [0, {self.size}), got [{ids.min()}, {ids.max()}]")
        return ids.tolist()

    def decode(self, ids: np.ndarray) -> str:
        """``(L,)`` ids -> text, special tokens (EOS) shown."""
        return self.tokenizer.decode(self._checked(ids), skip_special_tokens=False)

    def count_chars(self, ids: np.ndarray) -> int:
        """Characters of the text that ``(L,)`` ids decode to, special tokens left out (a partial
        UTF-8 sequence at an edge counts as replacement characters)."""
        return len(self.tokenizer.decode(self._checked(ids), skip_special_tokens=True))

    def state_dict(self) -> dict:
        return {"tokenizer": self.json, "eos_token": self.eos_token}

    def save(self, path: Path) -> None:
        """Write the tokenizer as a ``tokenizer.json`` any ``tokenizers`` user can load."""
        Path(path).write_text(self.json, encoding="utf-8")


def tokenizer_from_state(state: dict, *, allow_unk: bool) -> SubwordTokenizer:
    """The tokenizer saved by :meth:`SubwordTokenizer.state_dict`."""
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_str(state["tokenizer"])
    except Exception as err:  # tokenizers raises a bare Exception on a bad JSON
        raise DataError(f"the saved tokenizer cannot be read ({err})") from None
    eos = state.get("eos_token", "<|endoftext|>")
    return SubwordTokenizer(tokenizer, eos_token=eos, allow_unk=allow_unk, json_text=state["tokenizer"])


def load_tokenizer_file(config: TokenizerConfig, *, allow_unk: bool) -> SubwordTokenizer:
    """A user's ``tokenizer.json``; the EOS token is added when it lacks one."""
    from tokenizers import Tokenizer

    path = Path(config.path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"data.tokenizer.path: {path} not found (GPT-2's: wget "
            "https://huggingface.co/openai-community/gpt2/resolve/main/tokenizer.json)"
        )
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception on a bad file
        raise DataError(f"data.tokenizer.path: {path} is not a tokenizer.json ({err})") from None
    if tokenizer.token_to_id(config.eos_token) is None:
        tokenizer.add_special_tokens([config.eos_token])
    return SubwordTokenizer(tokenizer, eos_token=config.eos_token, allow_unk=allow_unk)


def train_tokenizer(
    config: TokenizerConfig, texts: Iterable[str], *, allow_unk: bool, progress: bool = False
) -> SubwordTokenizer:
    """Train a ``bpe`` or ``unigram`` tokenizer of ``config.vocab_size`` on ``texts`` (the training
    split), on at most ``config.max_train_chars`` of its characters."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if config.type == "bpe":
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=config.vocab_size,
            min_frequency=config.min_frequency,
            special_tokens=[config.eos_token],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=progress,
        )
    else:  # "never" keeps chunks exact: no word marker is prepended to a chunk that starts mid-line
        tokenizer = Tokenizer(models.Unigram())
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")
        tokenizer.decoder = decoders.Metaspace(prepend_scheme="never")
        trainer = trainers.UnigramTrainer(
            vocab_size=config.vocab_size,
            special_tokens=[config.eos_token, "<unk>"],
            unk_token="<unk>",
            show_progress=progress,
        )
    tokenizer.train_from_iterator(_capped(texts, config.max_train_chars), trainer)
    return SubwordTokenizer(tokenizer, eos_token=config.eos_token, allow_unk=allow_unk)


def _capped(texts: Iterable[str], limit: int | None) -> Iterable[str]:
    """``texts`` up to ``limit`` characters in all (the last one cut)."""
    if limit is None:
        yield from texts
        return
    left = limit
    for text in texts:
        if left <= 0:
            return
        yield text[:left]
        left -= len(text)
