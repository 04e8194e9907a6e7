"""Kill -9 and resume (issue 18): a run killed again and again (mid-step, while writing the
tensor file, between the directory rename and the ``latest`` swap, after the swap, while
appending to metrics.jsonl) and resumed each time ends byte-identical to an uninterrupted run,
with each metrics record once and no temporary files left.

The default test forks the test process for each attempt (no interpreter start-up) and places
its SIGKILLs deterministically; the slow one starts ``python -m discodiff train --resume`` 20
times and kills it at random moments, with a checkpoint after every step so that many kills land
in a save.
"""

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import pytest

from bad_inputs import BASE_TEXT, merged
from discodiff.cli import main
from discodiff.run import train_run
from discodiff.runconfig import parse_config
from discodiff.train import checkpoint, loop, rundir
from discodiff.train.checkpoint import TEMPORARY, latest_checkpoint, step_dirs
from discodiff.train.rundir import MetricsLog
from runs import tiny, tiny_config, write_config

TIMING_KEYS = {"examples_per_s", "elapsed_s", "sample_seconds_per_example", "train_seconds"}
CFG = {
    "train": {"steps": 24, "ckpt_every": 3, "log_every": 2},
    "eval": {"num_samples": 0, "nll_examples": 20},
}
KILLS = ["step:3", "tensors:1", "metrics:2", "commit:1", "step:6", "committed:1"]


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def countdown(n: int):
    left = [n]

    def tick() -> bool:
        left[0] -= 1
        return left[0] == 0

    return tick


def arm(kill: str) -> None:
    """In the child: SIGKILL this process at the n-th event of the named kind."""
    kind, n = kill.split(":")
    tick = countdown(int(n))
    if kind == "step":
        real_step = loop.Trainer.train_step

        def train_step(self):
            out = real_step(self)
            if tick():
                die()
            return out

        loop.Trainer.train_step = train_step
    elif kind == "tensors":
        real_save = checkpoint.save_file

        def save_file(tensors, path):
            real_save(tensors, path)
            if tick():  # leave half a tensor file behind
                data = Path(path).read_bytes()
                Path(path).write_bytes(data[: len(data) // 2])
                die()

        checkpoint.save_file = save_file
    elif kind == "metrics":
        real_append = rundir.MetricsLog.append

        def append(self, record):
            if tick():
                with open(self.path, "a") as f:
                    f.write('{"kind": "train", "st')  # a torn line
                die()
            real_append(self, record)

        rundir.MetricsLog.append = append
    else:  # commit: before the latest swap; committed: right after it (old ones not yet pruned)
        real_replace = os.replace

        def replace(src, dst):
            if Path(dst).name == "latest" and kind == "commit" and tick():
                die()
            real_replace(src, dst)
            if Path(dst).name == "latest" and kind == "committed" and tick():
                die()

        checkpoint.os = type("os_with_kill", (), {"__getattr__": lambda _, name: getattr(os, name)})()
        checkpoint.os.replace = replace


def attempt(cfg_path: str, run: Path, kill: str | None) -> int:
    """One forked ``discodiff train`` (with --resume once a checkpoint exists); returns the wait status."""
    resume = bool(step_dirs(run / "checkpoints"))
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            if kill:
                arm(kill)
            argv = ["train", cfg_path, "--out", str(run), "--no-progress", *(["--resume"] if resume else [])]
            code = main(argv)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def clean_records(run: Path) -> list[dict]:
    return [
        {k: v for k, v in r.items() if k not in TIMING_KEYS}
        for r in MetricsLog(run / "metrics.jsonl").records()
    ]


def check_like_reference(run: Path, reference: Path) -> None:
    final, expected = latest_checkpoint(run / "checkpoints"), latest_checkpoint(reference / "checkpoints")
    assert final.name == expected.name
    assert sha256(final / "tensors.safetensors") == sha256(expected / "tensors.safetensors")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(clean_records(run)), "torn or foreign lines left in metrics.jsonl"
    assert clean_records(run) == clean_records(reference)
    leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(TEMPORARY)]
    leftovers += [p.name for p in run.iterdir() if p.name.startswith(".")]
    assert not leftovers


def test_kill_resume_is_byte_identical(tmp_path):
    cfg_path = write_config(tmp_path / "c.yaml", tiny(**CFG))
    reference = tmp_path / "reference"
    train_run(tiny_config(**CFG), reference, progress=False)
    run = tmp_path / "run"
    statuses = [attempt(cfg_path, run, kill) for kill in KILLS]
    killed = [os.WIFSIGNALED(s) and os.WTERMSIG(s) == signal.SIGKILL for s in statuses]
    assert sum(killed) >= 5, list(zip(KILLS, statuses))
    assert attempt(cfg_path, run, None) == 0
    check_like_reference(run, reference)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["toy", "text"])
def test_twenty_random_sigkills_of_the_real_command(tmp_path, kind):
    """20 ``python -m discodiff`` processes killed at random moments (seeded), then one to the end."""
    sections = {"train": {"steps": 30, "ckpt_every": 1, "log_every": 1}, "eval": {"num_samples": 0}}
    cfg = merged(BASE_TEXT, **sections) if kind == "text" else tiny(**sections)
    cfg_path = write_config(tmp_path / "c.yaml", cfg)
    reference = tmp_path / "reference"
    train_run(parse_config(cfg), reference, progress=False)
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    rng = random.Random(18)
    kills = 0
    command = [sys.executable, "-m", "discodiff", "train", cfg_path, "--out", str(run), "--no-progress"]
    for _ in range(20):
        argv = command + (["--resume"] if step_dirs(run / "checkpoints") else [])
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        start = time.perf_counter()
        while proc.poll() is None and not (run / ".lock").exists():  # wait until it holds the lock
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 1.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr.read()
        assert time.perf_counter() - start < 300
    done = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert kills >= 10
    check_like_reference(run, reference)
