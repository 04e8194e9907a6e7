"""Crash safety of run directories (issue 18): the save protocol under a crash at every step,
fallback to the newest intact checkpoint, one writer per run, metrics.jsonl after resume, and a
full disk."""

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import types

import pytest
import torch

from bad_inputs import dead_pid
from discodiff.build import build_data, build_method
from discodiff.cli import main
from discodiff.errors import CheckpointError
from discodiff.run import train_run
from discodiff.runconfig import TrainConfig
from discodiff.train import checkpoint, rundir
from discodiff.train.checkpoint import (
    Checkpoint,
    load_checkpoint,
    load_newest,
    read_latest,
    remove_temporary,
    save_checkpoint,
    step_dirs,
)
from discodiff.train.loop import Trainer
from discodiff.train.rundir import MetricsLog, RunLock
from runs import tiny, tiny_config, write_config


class Crash(BaseException):
    """Stands in for SIGKILL: no handler of the code under test catches it."""


def ckpt(step: int) -> Checkpoint:
    return Checkpoint(step, {"model": {"w": torch.full((4,), float(step))}}, {})


def crash_on_call(monkeypatch, k: int) -> list[int]:
    """Make the k-th file-system mutation of save_checkpoint (os.replace, os.unlink,
    shutil.rmtree) raise Crash; returns the call counter."""
    calls = [0]

    def counted(fn):
        def wrapper(*args, **kwargs):
            calls[0] += 1
            if calls[0] == k:
                raise Crash
            return fn(*args, **kwargs)

        return wrapper

    fake_os = types.SimpleNamespace(
        **{n: getattr(os, n) for n in ("getpid", "open", "close", "fsync", "O_RDONLY")},
        replace=counted(os.replace),
        unlink=counted(os.unlink),
    )
    fake_shutil = types.SimpleNamespace(rmtree=counted(shutil.rmtree), disk_usage=shutil.disk_usage)
    monkeypatch.setattr(checkpoint, "os", fake_os)
    monkeypatch.setattr(checkpoint, "shutil", fake_shutil)
    return calls


SCENARIOS = {
    "new_step": ([10], None, 20),  # existing steps, a pre-existing latest (None: the newest), step saved
    "rewrite_latest": ([10, 20], None, 20),
    "rewrite_only_checkpoint": ([20], None, 20),
    "after_abandoned_future": ([10, 30], "step_00000010", 20),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_crash_anywhere_in_a_save_never_leaves_latest_naming_a_gap(tmp_path, monkeypatch, scenario):
    steps, latest, new = SCENARIOS[scenario]
    k = 1
    while True:
        root = tmp_path / f"crash{k}" / "checkpoints"
        for s in steps:
            save_checkpoint(root, ckpt(s), keep=5)
        if latest:
            (root / "latest").write_text(latest + "\n")
        calls = crash_on_call(monkeypatch, k)
        try:
            save_checkpoint(root, ckpt(new), keep=2)
            crashed = False
        except Crash:
            crashed = True
        monkeypatch.undo()
        name = read_latest(root)
        if name is not None:  # the invariant: latest names an intact directory of this run
            assert load_checkpoint(root / name).step in {*steps, new}, (k, name)
        remove_temporary(root)  # what the next writer does first
        save_checkpoint(root, ckpt(new), keep=2)
        _, loaded = load_newest(root)
        assert loaded.step == new and float(loaded.group("model")["w"][0]) == new
        assert [p.name for p in step_dirs(root)] == [
            f"step_{s:08d}" for s in sorted({*steps, new}) if s <= new
        ][-2:]
        assert not [p for p in root.iterdir() if p.name.startswith(".")], list(root.iterdir())
        if not crashed:
            break
        k += 1
    assert calls[0] >= 3  # the save did pass through the crash points


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """A tiny run stopped at step 10 (checkpoints at 5 and 10), not yet finished (steps: 20)."""
    run = tmp_path_factory.mktemp("short") / "run"
    cfg = tiny_config(train={"ckpt_every": 5}, eval={"num_samples": 0})
    train_run(cfg, run, max_steps=10, progress=False)
    return run, cfg


def copy_of(short_run, tmp_path):
    run, cfg = short_run
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run", cfg


def train_records(run):
    return [r for r in MetricsLog(run / "metrics.jsonl").records() if r["kind"] == "train"]


def test_resume_falls_back_to_the_newest_intact_checkpoint_and_repoints_latest(short_run, tmp_path):
    run, cfg = copy_of(short_run, tmp_path)
    (run / "checkpoints" / "step_00000010" / "state.json").write_text("{torn")
    with pytest.warns(checkpoint.CheckpointWarning, match=r"step_00000010.*not valid JSON.*step_00000005"):
        train_run(cfg, run, resume=True, max_steps=2, progress=False)
    assert read_latest(run / "checkpoints") == "step_00000007"
    assert [r["step"] for r in train_records(run)] == [5, 7]  # records of steps 6-10 were superseded


def test_metrics_hold_each_step_once_after_resume(short_run, tmp_path):
    """A killed writer logged past its last checkpoint and tore its last line; after resume (and a
    second resume of the finished run) every step appears once, in order."""
    run, cfg = copy_of(short_run, tmp_path)
    with open(run / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"kind": "train", "step": 13, "loss": 1.0}) + "\n")  # off the log grid
        f.write('{"kind": "train", "step": 1')  # torn by the kill
    train_run(cfg, run, resume=True, progress=False)
    train_run(cfg, run, resume=True, progress=False)  # already finished: evaluates again
    records = MetricsLog(run / "metrics.jsonl").records()
    assert len(records) == len((run / "metrics.jsonl").read_text().splitlines())
    assert [r["step"] for r in records if r["kind"] == "train"] == [5, 10, 15, 20]
    assert [r["step"] for r in records if r["kind"] == "eval"] == [10, 20]


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path):
    """Another process holds the lock: train is refused naming its pid; once it is killed, its
    lock file is stale and taken over."""
    run = tmp_path / "run"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the first writer
        try:
            RunLock(run).acquire()
            os.write(write, b"held")
            time.sleep(60)
        finally:
            os._exit(0)
    try:
        assert os.read(read, 4) == b"held"
        with pytest.raises(CheckpointError, match=rf"in use by another training \(pid {pid} on host"):
            train_run(tiny_config(), run, progress=False)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    with RunLock(run) as lock:
        assert lock.stale and lock.stale["pid"] == pid


def test_pid_file_lock_without_flock(tmp_path, monkeypatch):
    """Where flock is missing: a live pid on this host refuses, a dead one is stale."""
    monkeypatch.setattr(rundir, "fcntl", None)
    with RunLock(tmp_path / "run"):
        with pytest.raises(CheckpointError, match=rf"pid {os.getpid()}"):
            RunLock(tmp_path / "run").acquire()
    dead = dead_pid()
    lock_file = tmp_path / "run" / ".lock"
    lock_file.parent.mkdir(exist_ok=True)
    lock_file.write_text(json.dumps({"pid": dead, "host": socket.gethostname(), "started": 0}))
    with RunLock(tmp_path / "run") as lock:
        assert lock.stale["pid"] == dead
    assert not lock_file.exists()


def failing_writer(monkeypatch):
    """safetensors' writer that fills the disk halfway through the file."""

    def save_file(tensors, path):
        with open(path, "wb") as f:
            f.write(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", save_file)


def test_disk_full_on_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    data = build_data(tiny_config())
    method = build_method(tiny_config(), data)
    cfg = TrainConfig(steps=20, batch_size=16, ckpt_every=5)
    trainer = Trainer(method, data, cfg, tmp_path, seed=0, device=torch.device("cpu"))
    trainer.fit(max_steps=5, progress=False)
    failing_writer(monkeypatch)
    with pytest.raises(CheckpointError) as err:
        trainer.fit(max_steps=5, progress=False)
    message = str(err.value)
    assert "No space left on device" in message and "needs about" in message and "free" in message
    assert "step_00000005 is intact" in message and "\n" not in message
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_00000005"]  # nothing partial
    assert load_newest(root)[1].step == 5


def test_disk_full_from_the_command_line(tmp_path, monkeypatch, capsys):
    failing_writer(monkeypatch)
    cfg = write_config(tmp_path / "c.yaml", tiny(eval={"num_samples": 0}))
    assert main(["train", cfg, "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("discodiff train: error: could not write checkpoint step_00000010") and "\n" not in err
    )
    assert "No space left on device" in err and "no earlier checkpoint exists" in err


def mount_tmpfs(path, size: int) -> bool:
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return done.returncode == 0


def test_disk_full_on_a_real_small_tmpfs(short_run, tmp_path):
    """A tmpfs with room for the run and one checkpoint: the second save fails with ENOSPC."""
    run, cfg = short_run
    size = sum(f.stat().st_size for f in (run / "checkpoints" / "step_00000010").iterdir())
    disk = tmp_path / "disk"
    if not mount_tmpfs(disk, 64 * 1024 + int(1.5 * size)):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        with pytest.raises(CheckpointError, match=r"No space left on device.*needs about"):
            train_run(cfg, disk / "run", progress=False)
        root = disk / "run" / "checkpoints"
        assert [p.name for p in step_dirs(root)] == ["step_00000005"]
        assert not [p for p in root.iterdir() if p.name.startswith(".")]
        assert load_newest(root)[1].step == 5
    finally:
        subprocess.run(["umount", str(disk)], check=True)
