"""Hypothesis strategies that break valid run configs and data files, and a runner that checks
what ``discodiff train`` does with them (used by ``tests/test_property_inputs.py`` and
``benchmarks/robustness.py --property N``).

A mutated case starts from one of three small valid runs (toy 2D data; an array file; a text
file) and applies one to three mutations: a config value replaced (wrong types, negative, zero,
fractions, non-finite, huge sizes for the size keys, strings, lists, mappings, YAML tags), a key
deleted or added, the YAML text cut short or a line duplicated, or the data file rewritten (rows,
columns, dtypes incl. complex/strings/objects, NaN/inf/1e300 entries, a truncated or mislabelled
.npy, random bytes, text of any characters). Huge values go only to the size keys
(``batch_size``, ``hidden``, ``width``, ``seq_len``): a huge step or sample count is a long job,
not an error.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from hypothesis import strategies as st

from bad_inputs import ARRAY_NET, BASE_TEXT, BASE_TOY, replaced

SIZE_KEYS = {"batch_size", "hidden", "width", "seq_len"}
HUGE = 10**12
SMALL_TOY = {**BASE_TOY, "eval": {"nll_examples": 20, "num_samples": 0, "batch_size": 20}}
SMALL_TEXT = {**BASE_TEXT, "eval": {"nll_examples": 2, "num_samples": 0, "batch_size": 2}}

PLAIN_VALUES = [
    -1,
    0,
    1,
    2,
    3,
    17,
    -0.5,
    0.0,
    0.5,
    1.5,
    1e30,
    math.nan,
    math.inf,
    -math.inf,
    "",
    "abc",
    "1e-3",
    "auto",
    None,
    True,
    False,
    [],
    [1, 2],
    {},
    {"name": "x"},
]
TAGS = ["!!python/name:os.system", "!!python/object/apply:os.getcwd []", "!!binary AAAA", "!!set {a}"]


@dataclass
class Mutated:
    """A broken run: the config (dict, or raw YAML text) and the data file to write."""

    base: str
    config: dict | str
    data_file: tuple[str, bytes] | None = None
    mutations: list[str] = field(default_factory=list)


def _leaf_paths(cfg: dict, prefix: tuple = ()) -> list[tuple]:
    paths = []
    for key, value in cfg.items():
        paths.append((*prefix, key))
        if isinstance(value, dict):
            paths += _leaf_paths(value, (*prefix, key))
    return paths


def _set(cfg: dict, path: tuple, value) -> None:
    node = cfg
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value


def _delete(cfg: dict, path: tuple) -> None:
    node = cfg
    for key in path[:-1]:
        node = node[key]
    node.pop(path[-1], None)


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


VALID_ARRAY = ("data.npy", _npy_bytes(np.random.default_rng(0).normal(size=(40, 2))))
VALID_TEXT = b"To be, or not to be, that is the question:\n" * 4


@st.composite
def array_file(draw) -> tuple[str, bytes]:
    if draw(st.integers(0, 3)) == 0:
        return VALID_ARRAY
    rows = draw(st.sampled_from([0, 1, 2, 3, 8, 40]))
    cols = draw(st.sampled_from([0, 1, 2, 3]))
    arr = np.random.default_rng(draw(st.integers(0, 9))).normal(size=(rows, cols))
    special = draw(st.sampled_from([None, math.nan, math.inf, 1e300, 1e39, -1e39]))
    if special is not None and arr.size:
        arr.flat[draw(st.integers(0, arr.size - 1))] = special
    dtype = draw(st.sampled_from(["float64", "float32", "int64", "bool", "complex128", "str", "object"]))
    arr = arr.astype(dtype) if dtype != "complex128" else arr + 1j * arr
    form = draw(st.sampled_from(["npy", "npy", "csv", "csv_header", "truncated_npy", "text_as_npy", "bytes"]))
    if form == "npy":
        return "data.npy", _npy_bytes(arr)
    if form == "truncated_npy":
        raw = _npy_bytes(arr)
        return "data.npy", raw[: draw(st.integers(0, max(len(raw) - 1, 0)))]
    if form == "bytes":
        return draw(st.sampled_from(["data.npy", "data.csv"])), draw(st.binary(max_size=200))
    text = "\n".join(",".join(str(v) for v in row) for row in np.atleast_2d(arr).tolist())
    if form == "csv_header":
        text = "a,b,c\n" + text
    return ("data.npy" if form == "text_as_npy" else "data.csv"), text.encode()


@st.composite
def text_file(draw) -> bytes:
    kind = draw(st.sampled_from(["valid", "binary", "text"]))
    if kind == "valid":
        return VALID_TEXT
    if kind == "binary":
        return draw(st.binary(max_size=400))
    return draw(st.text(min_size=0, max_size=400)).encode("utf-8", errors="surrogatepass")


@st.composite
def config_mutation(draw, cfg: dict) -> str:
    """Mutate ``cfg`` in place; return what was done."""
    paths = _leaf_paths(cfg)
    kind = draw(st.sampled_from(["set", "set", "set", "delete", "add"]))
    path = draw(st.sampled_from(paths))
    if kind == "delete":
        _delete(cfg, path)
        return f"delete {'.'.join(map(str, path))}"
    if kind == "add":
        path = (*path[:-1], draw(st.sampled_from(["lrr", "name", "extra", "steps"])))
    values = PLAIN_VALUES + ([HUGE] if path[-1] in SIZE_KEYS else [])
    value = draw(st.sampled_from(values))
    _set(cfg, path, value)
    return f"set {'.'.join(map(str, path))}={value!r}"


def _yaml_text_mutation(draw, text: str) -> tuple[str, str]:
    lines = text.splitlines()
    kind = draw(st.sampled_from(["cut", "duplicate_line", "tag"]))
    i = draw(st.integers(0, max(len(lines) - 1, 0)))
    if kind == "cut":
        at = int(len(text) * draw(st.sampled_from([0.2, 0.5, 0.8, 0.95])))
        return text[:at], f"cut at {at}"
    if kind == "duplicate_line":
        return "\n".join(lines[: i + 1] + lines[i:]), f"duplicate line {i}"
    key, _, _ = lines[i].partition(":")
    tag = draw(st.sampled_from(TAGS))
    lines[i] = f"{key}: {tag}"
    return "\n".join(lines), f"tag {tag} on line {i}"


@st.composite
def mutated_runs(draw) -> Mutated:
    base = draw(st.sampled_from(["toy", "array", "text"]))
    data_file = None
    if base == "toy":
        cfg = copy.deepcopy(SMALL_TOY)
    elif base == "array":
        data_file = draw(array_file())
        data = {"name": "array", "path": data_file[0]}
        data["label_column"] = draw(st.sampled_from([None, 0, -1, 5]))
        data["standardize"] = draw(st.booleans())
        cfg = replaced(SMALL_TOY, data=data, **ARRAY_NET)
    else:
        data_file = ("corpus.txt", draw(text_file()))
        data = {"name": "text", "path": "corpus.txt", "seq_len": draw(st.sampled_from([1, 4, 8, 64]))}
        data["format"] = draw(st.sampled_from(["chars", "text8"]))
        cfg = replaced(SMALL_TEXT, data=data)
    done = [f"base {base}"]
    for _ in range(draw(st.integers(0 if data_file else 1, 1))):
        done.append(draw(config_mutation(cfg)))
    config: dict | str = cfg
    if draw(st.integers(0, 4)) == 0:
        config, what = _yaml_text_mutation(draw, yaml.safe_dump(cfg))
        done.append(what)
    return Mutated(base, config, data_file, done)


def run_mutated(case: Mutated, work: Path) -> tuple[str, str]:
    """Write ``case`` into ``work`` and run ``discodiff train`` on it in this process; returns
    (outcome, stderr): ``trained``, ``clear`` (exit 2 and one ``discodiff train: error:`` line),
    ``unclear`` or ``traceback``."""
    from discodiff.cli import main

    work.mkdir(parents=True, exist_ok=True)
    if case.data_file is not None:
        (work / case.data_file[0]).write_bytes(case.data_file[1])
    text = case.config if isinstance(case.config, str) else yaml.safe_dump(case.config)
    (work / "config.yaml").write_text(text)
    err = io.StringIO()
    argv = ["train", "config.yaml", "--out", "run", "--no-progress", "--max-steps", "2"]
    cwd = os.getcwd()
    os.chdir(work)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)
    except Exception:
        return "traceback", traceback.format_exc()
    finally:
        os.chdir(cwd)
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    if code == 0:
        return "trained", err.getvalue()
    if code == 2 and len(lines) == 1 and lines[0].startswith("discodiff train: error: "):
        return "clear", lines[0]
    return "unclear", err.getvalue()
