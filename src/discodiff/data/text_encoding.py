"""From a text config to encoded splits: the encoding (characters or a tokenizer trained, loaded
or restored), the splits encoded in memory or read from a prepared directory, and ``prepare``.

In memory and prepared, the same code reads the corpus and encodes it
(:func:`~discodiff.data.token_store.encode_corpus`), so ``data.prepared`` changes where the ids
live, never what they are.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import DataError
from .corpus import BUILTIN_CORPUS, SPLITS, Corpus, corpus_source, split_bounds
from .text_config import TextConfig
from .token_store import (
    CODEC,
    TokenSink,
    check_config,
    encode_corpus,
    memory_dtype,
    open_prepared,
    read_meta,
    verify_prepared,
    write_prepared,
)
from .tokenizer import Codec, load_tokenizer_file, tokenizer_from_state, train_tokenizer
from .vocab import TEXT8_ALPHABET, CharVocab


def corpus_of(config: TextConfig) -> Corpus:
    return Corpus(config.path, documents=config.documents, jsonl_key=config.jsonl_key, format=config.format)


def fingerprint(config: TextConfig) -> dict:
    """What a prepared directory must have been made from to serve ``config`` (the corpus files
    need not exist any more: a prepared directory serves without them)."""
    tokenizer = asdict(config.tokenizer)
    if tokenizer["path"] is not None:
        tokenizer["path"] = str(Path(tokenizer["path"]).expanduser().resolve())
    return {
        "path": corpus_source(config.path),
        "documents": config.documents,
        "jsonl_key": config.jsonl_key,
        "format": config.format,
        "val_fraction": config.val_fraction,
        "test_fraction": config.test_fraction,
        "vocab_from": config.vocab_from,
        "unk": config.unk,
        "packing": "eos" if config.eos_packing else "wrap",
        "tokenizer": tokenizer,
    }


def codec_from_state(config: TextConfig, state: dict) -> Codec:
    """The encoding a run saved (its vocabulary or tokenizer), checked against the config."""
    subword = "tokenizer" in state
    if subword != (config.tokenizer.type != "chars"):
        saved = "a subword tokenizer" if subword else "a character vocabulary"
        raise DataError(
            f"the saved run encodes with {saved}, but data.tokenizer.type is {config.tokenizer.type!r}"
        )
    if subword:
        return tokenizer_from_state(state, allow_unk=config.unk)
    vocab = CharVocab.from_state(state)
    if config.unk and not vocab.unk:
        raise DataError(
            "data.unk: true, but the saved run's vocabulary has no <unk> (it was trained without)"
        )
    return vocab


def build_codec(
    config: TextConfig, corpus: Corpus, bounds: tuple[int, int], *, progress: bool = False
) -> Codec:
    """A new encoding: characters of the training text (or all of it), or a tokenizer loaded from
    a file or trained on the training text."""
    kind = config.tokenizer.type
    if kind == "file":
        return load_tokenizer_file(config.tokenizer, allow_unk=config.unk)
    splits = ("train",) if config.vocab_from == "train" or kind != "chars" else SPLITS
    texts = (piece.text for piece in corpus.pieces(bounds, splits=splits))
    if kind == "chars":
        if config.format == "text8":
            return CharVocab(TEXT8_ALPHABET, unk=config.unk)
        chars: set[str] = set()
        for text in texts:
            chars.update(text)
        return CharVocab("".join(sorted(chars)), unk=config.unk)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        raise DataError(
            f"training a tokenizer in each of {world} processes could give them different tokenizers; "
            "set data.prepared and run `discodiff prepare CONFIG` once before a multi-process run"
        )
    return train_tokenizer(config.tokenizer, texts, allow_unk=config.unk, progress=progress)


def _encode(config: TextConfig, corpus: Corpus, bounds, codec: Codec, sinks, *, saved: bool, **kw) -> None:
    """Encode into ``sinks``; an unknown character's error says where the encoding came from."""
    try:
        encode_corpus(corpus, bounds, codec, sinks, eos=config.eos_packing, **kw)
    except ValueError as err:
        if config.unk or not isinstance(codec, CharVocab):
            raise
        origin = (
            "the saved run"
            if saved
            else "the training text (set data.vocab_from: all to use the whole file, or data.unk: true)"
        )
        raise DataError(f"{err}; the vocabulary comes from {origin}") from None


def check_part_lengths(config: TextConfig, n: int, train_end: int, val_end: int) -> None:
    """Each part of the text must hold at least one window (checked before the vocabulary, which
    an empty training part cannot give)."""
    parts = {"train": train_end, "val": val_end - train_end}
    if config.test_fraction > 0:
        parts["test"] = n - val_end
    source = f"data.path: {config.path}" if config.path else f"the built-in {BUILTIN_CORPUS}"
    for name, length in parts.items():
        if length < config.seq_len:
            raise DataError(
                f"{source} has {n} characters; its {name} part has {length}, fewer than "
                f"seq_len={config.seq_len}; use a shorter data.seq_len or a longer text"
            )


def encode_in_memory(config: TextConfig, state: dict | None) -> tuple[dict[str, np.ndarray], dict, Codec]:
    """Encode the corpus in memory: (ids per split, document starts per split, encoding)."""
    corpus = corpus_of(config)
    n = corpus.count_chars()
    bounds = split_bounds(n, config.val_fraction, config.test_fraction)
    check_part_lengths(config, n, *bounds)
    codec = codec_from_state(config, state) if state else build_codec(config, corpus, bounds)
    sinks = {split: TokenSink(memory_dtype(len(codec))) for split in SPLITS}
    _encode(config, corpus, bounds, codec, sinks, saved=bool(state))
    arrays = {split: sink.arrays() for split, sink in sinks.items()}
    return {s: a[0] for s, a in arrays.items()}, {s: a[1] for s, a in arrays.items()}, codec


def load_prepared(config: TextConfig, state: dict | None) -> tuple[dict, dict, Codec, Path]:
    """Memory-map a prepared directory checked against the config and (when restoring a run) the
    run's saved encoding: (ids per split, document starts per split, encoding, directory)."""
    directory = Path(config.prepared).expanduser()
    meta = read_meta(directory)
    check_config(directory, meta, fingerprint(config))
    current = _signature(config)
    if current is not None and meta.get("corpus", current) != current:
        made = meta["corpus"]
        raise DataError(
            f"data.prepared: {directory} is stale: the corpus files at data.path changed since it was "
            f"prepared ({made['files']} files of {made['bytes']:,} bytes then, {current['files']} of "
            f"{current['bytes']:,} now, or edited since); run `discodiff prepare CONFIG` to write it again"
        )
    saved = _read_codec_state(directory)
    if state and state != saved:
        raise DataError(
            f"data.prepared: {directory} was encoded with another vocabulary or tokenizer than this run's; "
            "prepare it with the run's data config"
        )
    codec = codec_from_state(config, saved)
    parts, documents = open_prepared(directory, meta, codec)
    return parts, documents, codec, directory


def _signature(config: TextConfig) -> dict | None:
    """The corpus files' signature, or None when they are gone (a prepared directory serves alone)."""
    try:
        return corpus_of(config).signature()
    except FileNotFoundError:
        return None


def _read_codec_state(directory: Path) -> dict:
    try:
        return json.loads((directory / CODEC).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"data.prepared: {directory / CODEC} is missing or corrupted ({err})") from None


def prepare_text(config: TextConfig, *, force: bool = False, progress: bool = True) -> dict:
    """Encode the corpus once into ``config.prepared`` (see :mod:`~discodiff.data.token_store`);
    an existing directory made from the same config and corpus files (their signature: names,
    sizes, modification times) is verified and kept unless ``force``; changed files rewrite it.
    Returns a report: directory, status, seconds, bytes and ``meta.json``."""
    if config.prepared is None:
        raise DataError(
            "data.prepared is not set: name the directory to write, e.g. data.prepared=prepared/NAME"
        )
    directory = Path(config.prepared).expanduser()
    wanted = fingerprint(config)
    start = time.perf_counter()
    status = "written"
    if directory.exists() and not force:  # kept if made from this config and these files
        meta = read_meta(directory)
        check_config(directory, meta, wanted)
        current = _signature(config)
        stale = current is not None and meta.get("corpus", current) != current
        status = "written again (the corpus files changed)" if stale else "up to date (verified)"
        if not stale:
            verify_prepared(directory, meta, progress=progress)
    if status != "up to date (verified)":
        corpus = corpus_of(config)
        signature = corpus.signature()
        total = corpus.count_chars(progress=progress)
        bounds = split_bounds(total, config.val_fraction, config.test_fraction)
        codec = build_codec(config, corpus, bounds, progress=progress)
        meta = write_prepared(
            directory,
            meta={"config": wanted, "corpus": signature},
            codec=codec,
            encode=lambda sinks: _encode(
                config, corpus, bounds, codec, sinks, saved=False, progress=progress, total_chars=total
            ),
        )
    size = sum(f.stat().st_size for f in directory.iterdir() if f.is_file())
    seconds = time.perf_counter() - start
    return {"directory": str(directory), "status": status, "seconds": seconds, "bytes": size, "meta": meta}
