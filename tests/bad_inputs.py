"""A catalogue of bad inputs and damaged run directories (issue 18), shared by
``tests/test_bad_inputs.py`` and ``benchmarks/robustness.py``.

Each :class:`Case` prepares files in its own directory (a config, a data file, or a copy of a
small trained run with checkpoints at steps 10 and 20, then damaged) and returns the command line
to run. ``expect`` is ``error`` (one clear error line whose text matches ``pattern``: the field or
file at fault), ``warn`` (succeeds with one warning line matching ``pattern``) or ``ok``.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

BASE_TOY = {
    "seed": 0,
    "data": {"name": "toy2d", "dataset": "moons", "eval_size": 200},
    "method": {"name": "gaussian", "timesteps": 20},
    "net": {"name": "mlp", "hidden": 32, "depth": 1},
    "train": {"steps": 20, "batch_size": 32, "warmup_steps": 2, "ckpt_every": 10, "log_every": 5},
    "eval": {"nll_examples": 50, "num_samples": 0, "batch_size": 50},
}
"""The tiny toy run every config case mutates (a few seconds of work)."""

BASE_TEXT = {
    "seed": 0,
    "data": {"name": "text", "seq_len": 32, "eval_windows": 4},
    "method": {"name": "mdlm", "nll_time_samples": 1, "sample_steps": 4},
    "net": {"name": "transformer", "width": 32, "depth": 1, "heads": 2, "cond_dim": 16, "time_dim": 16},
    "train": {"steps": 20, "batch_size": 4, "warmup_steps": 2, "ckpt_every": 10, "log_every": 5},
    "eval": {"nll_examples": 4, "num_samples": 2, "batch_size": 4},
}
"""A tiny character-level text run (tiny-shakespeare, built in)."""

ARRAY_NET = {
    "method": {"name": "gaussian", "timesteps": 20},
    "net": {"name": "mlp", "hidden": 16, "depth": 1},
}

Setup = Callable[[Path, Path], "tuple[list[str], Callable[[], None] | None]"]


@dataclass
class Case:
    name: str
    group: str  # the heading: traceback | silent | misleading | checkpoint | lock | extra
    expect: str  # error | warn | ok
    pattern: str  # regex the error (or warning) line must match
    setup: Setup
    timeout: float | None = None


def merged(base: dict, **sections) -> dict:
    """``base`` with some sections' keys replaced (a non-mapping value replaces the section)."""
    cfg = copy.deepcopy(base)
    for name, values in sections.items():
        cfg[name] = {**cfg.get(name, {}), **values} if isinstance(values, dict) else values
    return cfg


def replaced(base: dict, **sections) -> dict:
    """``base`` with whole sections replaced."""
    return copy.deepcopy({**base, **sections})


def train_argv(case_dir: Path, cfg: dict | str, *extra: str) -> list[str]:
    """``train`` for 2 steps on ``cfg`` (a dict, or raw YAML text)."""
    path = case_dir / "config.yaml"
    path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
    return ["train", str(path), "--out", str(case_dir / "run"), "--no-progress", "--max-steps", "2", *extra]


def config_case(name: str, group: str, pattern: str, cfg: dict | str, *extra: str, **kw) -> Case:
    return Case(name, group, "error", pattern, lambda d, run: (train_argv(d, cfg, *extra), None), **kw)


def array_case(name: str, group: str, pattern: str, write: Callable[[Path], Path], **data) -> Case:
    def setup(case_dir: Path, run: Path):
        path = write(case_dir)
        cfg = replaced(BASE_TOY, data={"name": "array", "path": str(path), **data}, **ARRAY_NET)
        return train_argv(case_dir, cfg), None

    return Case(name, group, "error", pattern, setup)


def npy(name: str, arr: np.ndarray) -> Callable[[Path], Path]:
    def write(case_dir: Path) -> Path:
        np.save(case_dir / name, arr)
        return case_dir / name

    return write


def raw(name: str, content: bytes) -> Callable[[Path], Path]:
    def write(case_dir: Path) -> Path:
        (case_dir / name).write_bytes(content)
        return case_dir / name

    return write


def text_case(name: str, group: str, pattern: str, content: bytes, **data) -> Case:
    def setup(case_dir: Path, run: Path):
        path = raw("corpus.txt", content)(case_dir)
        cfg = merged(BASE_TEXT, data={"name": "text", "path": str(path), "seq_len": 8, **data})
        return train_argv(case_dir, cfg), None

    return Case(name, group, "error", pattern, setup)


# ---- damaged run directories ----------------------------------------------------------------


def copy_run(case_dir: Path, run: Path) -> Path:
    dst = case_dir / "run"
    shutil.copytree(run, dst)
    return dst


def flip_byte(step_dir: Path) -> None:
    tensors = step_dir / "tensors.safetensors"
    data = bytearray(tensors.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tensors.write_bytes(bytes(data))


def poison_weights(step_dir: Path) -> None:
    """Write NaN into every model and EMA weight and re-seal the checksum: a checkpoint that is
    intact as a file but holds non-finite weights."""
    import hashlib

    import torch
    from safetensors.torch import load_file, save_file

    tensors = step_dir / "tensors.safetensors"
    flat = load_file(str(tensors))
    for key, t in flat.items():
        if key.startswith(("model.", "ema.")) and t.is_floating_point():
            flat[key] = torch.full_like(t, float("nan"))
    save_file(flat, str(tensors))
    state = json.loads((step_dir / "state.json").read_text())
    state["sha256"] = hashlib.sha256(tensors.read_bytes()).hexdigest()
    (step_dir / "state.json").write_text(json.dumps(state))


def run_case(
    name: str,
    group: str,
    expect: str,
    pattern: str,
    damage: Callable[[Path], None],
    command: str = "eval",
) -> Case:
    """Copy the trained run, ``damage(run_dir)`` it, then run ``command`` on it."""

    def setup(case_dir: Path, run: Path):
        dst = copy_run(case_dir, run)
        damage(dst)
        argv = {
            "eval": ["eval", str(dst), "--json", "eval.num_samples=10"],
            "sample": ["sample", str(dst), "--num", "4", "--steps", "5", "--out", str(case_dir / "s")],
            "resume": ["train", str(dst / "config.yaml"), "--out", str(dst), "--resume", "--no-progress"],
            "train": ["train", str(dst / "config.yaml"), "--out", str(dst), "--no-progress"],
        }[command]
        if command in ("resume", "train"):
            argv += ["--max-steps", "2"]
        return argv, None

    return Case(name, group, expect, pattern, setup)


def ckpt(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step_{step:08d}"


def set_latest(text: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        (run / "checkpoints" / "latest").write_text(text)

    return damage


def both(*fns: Callable[[Path], None]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        for fn in fns:
            fn(run)

    return damage


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def write_lock(run: Path, pid: int) -> Path:
    lock = run / ".lock"
    lock.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": int(time.time())}))
    return lock


def held_lock_case(name: str, command: str) -> Case:
    """Another live writer holds the run's lock (this process holds it while the case runs)."""

    def setup(case_dir: Path, run: Path):
        import fcntl

        dst = copy_run(case_dir, run)
        lock = write_lock(dst, os.getpid())
        fd = os.open(lock, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        argv = ["train", str(dst / "config.yaml"), "--out", str(dst), "--no-progress", "--max-steps", "2"]
        return argv + (["--resume"] if command == "resume" else []), lambda: os.close(fd)

    return Case(name, "lock", "error", rf"in use.*pid {os.getpid()}|pid \d+", setup)


def stale_lock(run: Path) -> None:
    write_lock(run, dead_pid())


def stale_tmp(run: Path) -> None:
    tmp = run / "checkpoints" / ".tmp-step_00000030-999999"
    tmp.mkdir()
    (tmp / "tensors.safetensors").write_bytes(b"\0" * 4096)


def remove_latest(run: Path) -> None:
    (run / "checkpoints" / "latest").unlink()


def yaml_tag_in_run_config(run: Path) -> None:
    cfg = run / "config.yaml"
    cfg.write_text(cfg.read_text().replace("seed: 0", 'seed: !!python/object/apply:os.system ["echo pwned"]'))


def outside_latest(run: Path) -> None:
    other = run.parent / "other"
    shutil.copytree(run / "checkpoints", other)
    (run / "checkpoints" / "latest").write_text("../../other/step_00000020\n")


def symlinked_latest(run: Path) -> None:
    """``latest`` names a step directory that is a link to a checkpoint outside the run."""
    shutil.copytree(run / "checkpoints" / "step_00000020", run.parent / "elsewhere")
    shutil.rmtree(run / "checkpoints" / "step_00000020")
    (run / "checkpoints" / "step_00000020").symlink_to(run.parent / "elsewhere")


def bad_data_state(run: Path) -> None:
    (run / "data_state.json").write_text("{not json")


def changed_net(run: Path) -> None:
    cfg = run / "config.yaml"
    cfg.write_text(cfg.read_text().replace("hidden: 32", "hidden: 48"))


# ---- the catalogue ----------------------------------------------------------------------------

T, W = BASE_TOY, BASE_TEXT
ROWS = np.random.default_rng(0).normal(size=(64, 3))

CASES: list[Case] = [
    # "Tracebacks instead of messages"
    config_case(
        "device_cuda_without_cuda", "traceback", r"train\.device", merged(T, train={"device": "cuda"})
    ),
    config_case("method_as_list", "traceback", r"config\.method", merged(T, method=["gaussian"])),
    config_case(
        "method_name_as_list", "traceback", r"method\.name", merged(T, method={"name": ["gaussian"]})
    ),
    config_case("net_hidden_1e9", "traceback", r"net|memory", merged(T, net={"hidden": 1_000_000_000})),
    config_case(
        "batch_size_1e11", "traceback", r"train\.batch_size", merged(T, train={"batch_size": 100_000_000_000})
    ),
    config_case(
        "yaml_tag_in_config",
        "traceback",
        r"config\.yaml",
        yaml.safe_dump(T).replace("seed: 0", 'seed: !!python/object/apply:os.system ["echo pwned"]'),
    ),
    config_case("yaml_tag_in_override", "traceback", r"train\.lr", T, "train.lr=!!python/name:os.system"),
    run_case("yaml_tag_in_run_config", "traceback", "error", r"config\.yaml", yaml_tag_in_run_config),
    run_case(
        "nan_weights_eval",
        "traceback",
        "error",
        r"non-finite|NaN",
        both(lambda r: poison_weights(ckpt(r, 10)), lambda r: poison_weights(ckpt(r, 20))),
    ),
    # "Silently accepted"
    config_case(
        "time_budget_negative", "silent", r"train\.time_budget_s", merged(T, train={"time_budget_s": -1})
    ),
    config_case(
        "duplicate_yaml_key",
        "silent",
        r"duplicate.*lr",
        yaml.safe_dump(T).replace("train:\n", "train:\n  lr: 0.1\n  lr: 0.2\n"),
    ),
    config_case("lr_inf", "silent", r"config\.train\.lr", merged(T, train={"lr": float("inf")})),
    array_case("array_values_1e300", "silent", r"data\.npy", npy("data.npy", ROWS * 1e300)),
    array_case("array_complex", "silent", r"data\.npy", npy("data.npy", ROWS + 1j * ROWS)),
    Case(
        "mnist_csv_10_columns",
        "silent",
        "error",
        r"digits\.csv.*785",
        lambda d, run: (
            train_argv(
                d,
                replaced(
                    T,
                    data={
                        "name": "mnist",
                        "train": str(
                            raw(
                                "digits.csv",
                                b"".join(b"%d,0,1,2,3,4,5,6,7,8\n" % (i % 10) for i in range(40)),
                            )(d)
                        ),
                        "val_size": 2,
                        "test_size": 2,
                    },
                    net={"name": "unet", "channels": 8},
                ),
            ),
            None,
        ),
    ),
    # "Misleading"
    array_case("array_two_rows", "misleading", r"data\.npy.*rows", npy("data.npy", ROWS[:2])),
    text_case("text_one_character", "misleading", r"corpus\.txt", b"a"),
    array_case(
        "text_file_named_npy", "misleading", r"data\.npy.*(NumPy|\.npy)", raw("data.npy", b"1,2,3\n4,5,6\n")
    ),
    array_case(
        "array_label_column_outside",
        "misleading",
        r"label_column.*data\.npy",
        npy("data.npy", ROWS),
        label_column=7,
    ),
    array_case(
        "array_labels_not_integers", "misleading", r"data\.npy.*label", npy("data.npy", ROWS), label_column=0
    ),
    array_case(
        "array_object_dtype",
        "misleading",
        r"data\.npy",
        npy("data.npy", np.array([{"a": 1}] * 8, dtype=object)),
    ),
    config_case(
        "seq_len_100000",
        "misleading",
        r"data\.seq_len",
        merged(  # configs/shakespeare/mdlm.yaml's sizes
            W,
            data={"seq_len": 100_000},
            net={"width": 256, "depth": 4, "heads": 4, "cond_dim": 128, "time_dim": 256},
            train={"batch_size": 32},
        ),
        timeout=120,
    ),
    config_case(
        "seq_len_beyond_memory",
        "misleading",
        r"data\.seq_len",
        merged(W, data={"seq_len": 10_000}, net={"width": 256}, train={"batch_size": 4096}),
    ),
    config_case(
        "seq_len_beyond_max_len",
        "misleading",
        r"max_len.*data\.seq_len",
        merged(W, net={"positions": "learned", "max_len": 16}),
    ),
    # Checkpoints: fallback to the newest intact one, and the pointer's target
    run_case(
        "latest_damaged_eval",
        "checkpoint",
        "warn",
        r"step_00000020.*step_00000010",
        lambda r: flip_byte(ckpt(r, 20)),
    ),
    run_case(
        "latest_damaged_sample",
        "checkpoint",
        "warn",
        r"step_00000020.*step_00000010",
        lambda r: flip_byte(ckpt(r, 20)),
        "sample",
    ),
    run_case(
        "latest_damaged_resume",
        "checkpoint",
        "warn",
        r"step_00000020.*step_00000010",
        lambda r: flip_byte(ckpt(r, 20)),
        "resume",
    ),
    run_case(
        "latest_names_missing_dir",
        "checkpoint",
        "warn",
        r"step_00000030.*step_00000020",
        set_latest("step_00000030\n"),
    ),
    run_case(
        "latest_nan_weights",
        "checkpoint",
        "warn",
        r"step_00000020.*step_00000010",
        lambda r: poison_weights(ckpt(r, 20)),
    ),
    run_case("latest_outside_run", "checkpoint", "error", r"latest", outside_latest),
    run_case("latest_absolute_path", "checkpoint", "error", r"latest", set_latest("/etc\n")),
    run_case("latest_names_a_link", "checkpoint", "error", r"latest.*not a link", symlinked_latest),
    run_case(
        "all_checkpoints_damaged",
        "checkpoint",
        "error",
        r"step_00000020.*step_00000010|no intact",
        both(lambda r: flip_byte(ckpt(r, 20)), lambda r: flip_byte(ckpt(r, 10))),
    ),
    run_case(
        "latest_missing_resume", "checkpoint", "warn", r"latest.*step_00000020", remove_latest, "resume"
    ),
    run_case("stale_tmp_dirs_removed", "checkpoint", "warn", r"\.tmp-step_00000030", stale_tmp, "resume"),
    # One writer per run directory
    held_lock_case("second_train_resume", "resume"),
    held_lock_case("second_train_same_out", "train"),
    run_case("step_dirs_without_latest", "lock", "error", r"latest|--resume", remove_latest, "train"),
    run_case("stale_lock_taken_over", "lock", "warn", r"stale lock.*pid \d+", stale_lock, "resume"),
    # More of the same kinds
    config_case("lr_nan", "extra", r"config\.train\.lr", merged(T, train={"lr": float("nan")})),
    config_case("device_cuda_7", "extra", r"train\.device", merged(T, train={"device": "cuda:7"})),
    config_case("device_unknown", "extra", r"train\.device", merged(T, train={"device": "tpu"})),
    config_case("beta1_above_one", "extra", r"train\.beta1", merged(T, train={"beta1": 1.5})),
    config_case(
        "estimators_as_string", "extra", r"eval\.estimators", merged(T, eval={"estimators": "bound"})
    ),
    config_case("steps_as_word", "extra", r"train\.steps", T, "train.steps=abc"),
    config_case("yaml_tag_in_eval_override", "extra", r"eval\.seed", T, "eval.seed=!!python/tuple [1]"),
    config_case("yaml_syntax_error", "extra", r"config\.yaml", "seed: [0\ntrain: {"),
    config_case("config_not_a_mapping", "extra", r"config\.yaml", "- 1\n- 2\n"),
    array_case(
        "array_float32_overflow", "extra", r"data\.npy", npy("data.npy", ROWS * 1e39), standardize=False
    ),
    array_case("array_strings", "extra", r"data\.npy", npy("data.npy", ROWS.astype(str))),
    array_case("array_3d", "extra", r"data\.npy", npy("data.npy", np.zeros((8, 2, 2)))),
    array_case("csv_header_not_skipped", "extra", r"data\.csv", raw("data.csv", b"a,b\n1,2\n3,4\n5,6\n")),
    array_case("csv_empty", "extra", r"data\.csv", raw("data.csv", b"")),
    text_case("text_not_utf8", "extra", r"corpus\.txt", b"\xff\xfe\x00abc" * 10),
    text_case("text_empty", "extra", r"corpus\.txt", b""),
    text_case("text_shorter_than_seq_len", "extra", r"seq_len", b"abcdefghij" * 2, seq_len=64),
    run_case("data_state_not_json", "extra", "error", r"data_state\.json", bad_data_state),
    run_case("checkpoint_of_another_net", "extra", "error", r"does not fit", changed_net),
]

assert len({c.name for c in CASES}) == len(CASES), "case names must be unique"


def classify(case: Case, command: str, code: int | None, stderr: str) -> str:
    """The outcome of ``case``: ``clear`` / ``ok`` when it behaved as expected; otherwise
    ``traceback`` (``code`` None: an exception escaped), ``accepted``, ``unclear`` (not exactly one
    error line), ``misleading`` (the line does not match the pattern), ``failed``, or a warning
    problem. Progress-bar lines on stderr are ignored."""
    lines = [
        line for line in stderr.splitlines() if line.strip() and "\r" not in line and "it/s]" not in line
    ]
    if code is None or "Traceback" in stderr:
        return "traceback"
    prefix = f"discodiff {command}: "
    if case.expect == "error":
        if code == 0:
            return "accepted"
        errors = [line for line in lines if line.startswith(prefix + "error: ")]
        if code != 2 or len(errors) != 1 or len(lines) != 1:
            return "unclear"
        return "clear" if re.search(case.pattern, errors[0]) else "misleading"
    if code != 0:
        return "failed"
    warnings = [line for line in lines if line.startswith(prefix + "warning: ")]
    if case.expect == "ok":
        return "ok" if not warnings else "unexpected warning"
    return "ok" if len(warnings) == 1 and re.search(case.pattern, warnings[0]) else "no clear warning"
