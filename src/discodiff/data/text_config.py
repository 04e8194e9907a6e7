"""The ``text`` and ``text8`` data configs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from ..errors import ConfigError
from .tokenizer import TokenizerConfig


@dataclass
class TextConfig:
    """``data: {name: text}`` (built-in tiny-shakespeare, characters), ``{name: text, path:
    corpus.txt}``, or subwords: ``{name: text, path: "works/*.txt", tokenizer: {type: bpe,
    vocab_size: 4096}, prepared: DIR}``."""

    path: str | None = None  # a UTF-8 file, a directory or a glob; None: the built-in tiny-shakespeare
    seq_len: int = 256  # tokens (characters or subwords) per example
    format: Literal["chars", "text8"] = "chars"  # text8: map to a-z and space as text8 does
    val_fraction: float = 0.1  # share of the text after the training text
    test_fraction: float = 0.0  # share at the end; 0: no test text, "test" gives the val windows
    vocab_from: Literal["train", "all"] = "train"  # characters that form a character vocabulary
    eval_windows: int | None = None  # at most this many (evenly spaced) val/test windows
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)  # chars, bpe, unigram, file
    documents: Literal["file", "jsonl"] = "file"  # a document per file, or per JSON line
    jsonl_key: str = "text"  # documents: jsonl: the field holding each document's text
    packing: Literal["auto", "eos", "wrap"] = "auto"  # eos: EOS after each document; wrap: none
    prepared: str | None = None  # a directory written by `discodiff prepare`; None: encode in memory
    unk: bool = False  # encode unknown characters as <unk> instead of refusing them

    eval_keys: ClassVar[tuple[str, ...]] = (
        "path",
        "documents",
        "jsonl_key",
        "val_fraction",
        "test_fraction",
        "eval_windows",
        "prepared",
    )
    """Keys that choose the text, not its encoding: ``discodiff eval RUN data.path=OTHER`` may change them."""
    corpus_keys: ClassVar[tuple[str, ...]] = ("path", "documents", "jsonl_key")
    """Keys that name the corpus: changing one at evaluation drops the :attr:`cache_keys` not given."""
    cache_keys: ClassVar[tuple[str, ...]] = ("prepared",)
    """Keys naming a copy derived from the corpus (its prepared ids)."""

    def __post_init__(self) -> None:
        _check_common(self.seq_len, self.eval_windows)
        if not 0 < self.val_fraction < 1 or not 0 <= self.test_fraction < 1:
            raise ValueError(
                f"val_fraction must be in (0, 1) and test_fraction in [0, 1), got "
                f"{self.val_fraction} and {self.test_fraction}"
            )
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError("val_fraction + test_fraction must leave training text (sum < 1)")
        if self.packing == "eos" and self.tokenizer.type == "chars":
            raise ValueError("packing: eos needs a tokenizer with an EOS token; characters use packing: wrap")

    @property
    def eos_packing(self) -> bool:
        """Whether an EOS follows each document: ``auto`` means yes for subwords (MDLM's packing),
        no for characters (their vocabulary has no separator)."""
        return self.packing == "eos" or (self.packing == "auto" and self.tokenizer.type != "chars")


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
