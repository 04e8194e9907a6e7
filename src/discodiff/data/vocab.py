"""Character vocabularies and text8's normalization.

A :class:`CharVocab` maps characters to ids in the order of its character string; built from a
corpus, that order is the sorted set of its characters (char-rnn's and nanoGPT's convention), so
the same text always gives the same ids. Encoding runs in numpy: one table lookup for ASCII text,
a sorted search over code points otherwise.

text8 (Mahoney 2006) is English Wikipedia reduced to the 27 characters ``a-z`` and space by the
Perl script ``wikifil.pl``. After removing markup, its last steps are, per line: lowercase ``A-Z``;
spell each digit as a word between spaces (``1`` -> `` one ``); turn every character outside
``a-z`` into a space and squeeze runs of spaces into one (``tr/a-z/ /cs``). :func:`to_text8` applies
exactly these steps (markup removal aside), so non-ASCII letters such as ``é`` become spaces, as
they do in text8.
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import DataError

TEXT8_ALPHABET = " abcdefghijklmnopqrstuvwxyz"
"""text8's 27 characters; as a vocabulary, space is id 0 and ``a``..``z`` are ids 1..26."""

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
"""How ``wikifil.pl`` spells digits."""

_ASCII_UPPER_TO_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_NOT_LETTERS = re.compile(r"[^a-z]+")
_DIGIT = re.compile(r"[0-9]")
UNKNOWN_SHOWN = 10
"""How many unknown characters an encoding error lists."""


def to_text8(text: str) -> str:
    """Map any text to text8's alphabet the way ``wikifil.pl`` does (see the module docstring)."""
    text = text.translate(_ASCII_UPPER_TO_LOWER)
    text = _DIGIT.sub(lambda m: f" {DIGIT_WORDS[int(m.group())]} ", text)
    return _NOT_LETTERS.sub(" ", text)


class CharVocab:
    """Characters <-> integer ids; id i is ``chars[i]``."""

    def __init__(self, chars: str) -> None:
        if not chars:
            raise DataError("a vocabulary needs at least one character")
        if len(set(chars)) != len(chars):
            raise DataError("vocabulary characters must be distinct")
        self.chars = chars
        codes = np.array([ord(c) for c in chars], dtype=np.int64)
        self._order = np.argsort(codes)
        self._sorted_codes = codes[self._order]
        self._ascii_table = np.full(128, -1, dtype=np.int64)
        ascii_ids = np.flatnonzero(codes < 128)
        self._ascii_table[codes[ascii_ids]] = ascii_ids
        self._char_array = np.array(list(chars))

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        """The sorted set of the characters of ``text``."""
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    @property
    def id_dtype(self) -> np.dtype:
        """The smallest unsigned dtype holding every id (uint8 up to 256 characters)."""
        return np.dtype(np.uint8) if len(self) <= 256 else np.dtype(np.int32)

    def encode(self, text: str) -> np.ndarray:
        """``text`` -> ``(len(text),)`` ids in :attr:`id_dtype`; unknown characters raise."""
        if text.isascii():
            ids = self._ascii_table[np.frombuffer(text.encode("ascii"), dtype=np.uint8)]
            unknown = ids < 0
        else:
            codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
            pos = np.minimum(np.searchsorted(self._sorted_codes, codes), len(self) - 1)
            unknown = self._sorted_codes[pos] != codes
            ids = self._order[pos]
        if unknown.any():
            first = np.flatnonzero(unknown)
            chars = sorted({text[i] for i in first[: 100 * UNKNOWN_SHOWN]})[:UNKNOWN_SHOWN]
            raise DataError(
                f"{len(first)} character(s) are not in the vocabulary of {len(self)}, first at "
                f"index {int(first[0])}: {', '.join(repr(c) for c in chars)}"
            )
        return ids.astype(self.id_dtype)

    def decode(self, ids: np.ndarray) -> str:
        """``(L,)`` ids -> text."""
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise ValueError(f"ids must lie in [0, {len(self)}), got [{ids.min()}, {ids.max()}]")
        return "".join(self._char_array[ids.astype(np.int64)].tolist())
