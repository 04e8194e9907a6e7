"""Known values for sampling from the command line: text prompts, suffixes and infilling
templates, and image inpainting files, turned into ``(known, known_mask)`` for ``Method.sample``.

Text (a data set with ``encode`` / ``decode``):

- ``--prompt TEXT``: the sequence starts with TEXT (its first ``len(TEXT)`` positions are known);
- ``--suffix TEXT``: the sequence ends with TEXT;
- ``--infill FILE``: FILE is a template in which every :data:`INFILL_MARKER` (``_``, or the
  character given with ``--marker``) is one position to fill (one token: one character in a
  character-level run) and the text between markers is kept; positions after the end of the
  template are generated too. One newline at the end of the file (as editors write it) is not
  part of the template, and the marker always means a hole (choose another one with
  ``--marker`` for text that contains it).

Lengths count tokens, i.e. the ids the data set's ``encode`` gives (characters for character
vocabularies).

Images (a data set with ``encode_levels``): ``--inpaint FILE.npy`` holds one image ``(H, W)``
or several ``(N, H, W)`` / ``(N, 1, H, W)`` in the data's integer pixel levels (0..levels-1),
with NaN at every pixel to fill.

What conditioning on known values means depends on the method (its ``known_semantics``); see
:data:`SEMANTICS_NOTES`, printed with the samples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .data.base import DataSource
from .errors import DataError, UsageError

INFILL_MARKER = "_"
"""In an ``--infill`` template, each of these marks one character to generate."""

SEMANTICS_NOTES = {
    "exact": "exact conditioning: samples come from the model's distribution given the known values",
    "replacement": (
        "replacement: the known values, noised to each step's level, replace the sample's there "
        "(an approximation of conditioning; the rest may not fit the known part exactly)"
    ),
    "prefix": (
        "prefix forcing: decoding left to right is forced at the known positions; it conditions "
        "exactly on a prefix, but text before a known span does not see it"
    ),
    "none": "this method cannot condition on known values",
}
"""One line per ``known_semantics`` value, printed with samples drawn from known values."""


@dataclass
class Known:
    """Known values for ``num`` samples and what they came from (for sample.json)."""

    known: Tensor  # (N, *event_shape)
    mask: Tensor  # bool, same shape; True where known
    source: dict  # {"prompt": ..., "suffix": ..., "infill": path, "inpaint": path}


def _encode(data: DataSource, text: str, what: str) -> Tensor:
    try:
        return data.encode(text)  # type: ignore[attr-defined]
    except DataError as err:
        raise DataError(f"{what}: {err}") from None
    except ValueError as err:  # a vocabulary that raises ValueError
        raise DataError(f"{what}: {err}") from None


def _template_spans(data: DataSource, path: Path, marker: str) -> tuple[list[tuple[int, Tensor]], int]:
    """The known spans of an infill template and the number of positions it covers."""
    if len(marker) != 1:
        raise UsageError(f"--marker must be one character, got {marker!r}")
    if not path.is_file():
        raise UsageError(f"--infill: file not found: {path}")
    text = path.read_text(encoding="utf-8")
    text = text[:-1] if text.endswith("\n") else text
    spans, position = [], 0
    for segment in (s for s in re.split(f"({re.escape(marker)}+)", text) if s):
        if segment[0] == marker:  # a run of markers: that many positions to fill
            position += len(segment)
        else:
            ids = _encode(data, segment, f"--infill {path}")
            spans.append((position, ids))
            position += len(ids)
    if not spans:
        raise UsageError(f"--infill: {path} holds only {marker!r} markers: nothing is known")
    return spans, position


def text_known(
    data: DataSource,
    num: int,
    *,
    length: int | None = None,
    prompt: str | None = None,
    suffix: str | None = None,
    infill: Path | None = None,
    marker: str = INFILL_MARKER,
) -> Known:
    """``(num, L)`` known ids and mask from a prompt and/or suffix, or from an infill template;
    ``L`` is ``length`` or the data's sequence length."""
    if not hasattr(data, "encode"):
        raise UsageError(
            "--prompt, --suffix and --infill need a text run (its data set encodes text); "
            "this run's data set does not"
        )
    length = length or data.info.event_shape[0]
    spans: list[tuple[int, Tensor]] = []  # (first position, ids) of each known span
    source: dict = {}
    if infill is not None:
        if prompt is not None or suffix is not None:
            raise UsageError("--infill gives the whole template: use it without --prompt / --suffix")
        spans, total = _template_spans(data, infill, marker)
        what = f"--infill: {infill} spans"
        source["infill"] = str(infill)
    else:
        head = _encode(data, prompt, "--prompt") if prompt else None
        tail = _encode(data, suffix, "--suffix") if suffix else None
        spans = [(0, head)] if head is not None else []
        spans += [(length - len(tail), tail)] if tail is not None else []
        total, what = sum(len(ids) for _, ids in spans), "--prompt and --suffix have"
        source.update({k: v for k, v in (("prompt", prompt), ("suffix", suffix)) if v})
    if total > length:
        raise UsageError(f"{what} {total} tokens; this run's sequences have {length}")
    ids = torch.zeros(length, dtype=torch.long)
    mask = torch.zeros(length, dtype=torch.bool)
    for start, span in spans:
        ids[start : start + len(span)], mask[start : start + len(span)] = span, True
    return Known(ids.expand(num, length).clone(), mask.expand(num, length).clone(), source)


def image_known(data: DataSource, num: int | None, path: Path) -> Known:
    """Known pixels from an ``.npy`` of levels with NaN holes (see the module docstring)."""
    if not hasattr(data, "encode_levels"):
        raise UsageError("--inpaint needs an image run; this run's data set does not hold images")
    if path.suffix != ".npy" or not path.is_file():
        raise UsageError(f"--inpaint: expected an existing .npy file, got {path}")
    try:
        arr = np.load(path, allow_pickle=False).astype(np.float64)
    except ValueError as err:
        raise DataError(f"--inpaint: {path} is not a numeric .npy array ({err})") from None
    _, height, width = data.image_shape  # type: ignore[attr-defined]
    if arr.shape == (height, width):
        arr = arr[None]
    elif arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3 or arr.shape[1:] != (height, width):
        raise DataError(
            f"--inpaint: {path} has shape {arr.shape}; expected ({height}, {width}), (N, {height}, "
            f"{width}) or (N, 1, {height}, {width})"
        )
    holes = np.isnan(arr)
    values = arr[~holes]
    levels = data.levels  # type: ignore[attr-defined]
    if values.size == 0:
        raise DataError(f"--inpaint: {path} is all NaN: nothing is known")
    if np.any(values != np.round(values)) or values.min() < 0 or values.max() > levels - 1:
        raise DataError(
            f"--inpaint: {path} must hold integer pixel levels 0..{levels - 1} (NaN to fill), got "
            f"values in [{values.min():g}, {values.max():g}]"
        )
    if len(arr) == 1 and num is not None:
        arr, holes = np.repeat(arr, num, 0), np.repeat(holes, num, 0)
    elif num is not None and num != len(arr):
        raise UsageError(f"--inpaint: {path} holds {len(arr)} images but --num is {num}")
    k = torch.from_numpy(np.where(holes, 0, arr).astype(np.int64))
    known = data.encode_levels(k)  # type: ignore[attr-defined]
    mask = torch.from_numpy(~holes).reshape(len(k), 1, height, width)
    return Known(known, mask.reshape(known.shape), {"inpaint": str(path)})
