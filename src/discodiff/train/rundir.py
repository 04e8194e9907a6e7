"""One writer per run directory, and a metrics log that survives crashes.

:class:`RunLock` is held by the process that trains into a run directory. It is an exclusive
``flock`` on ``RUN_DIR/.lock``, a file holding the writer's pid, host and start time: the kernel
drops the lock when its process dies, so a lock file left by a killed writer is stale and is taken
over (with a warning naming that pid), while a second ``train`` into a directory in use is refused
with the holder's pid. Where ``flock`` is unavailable the lock falls back to an exclusively created
file and a liveness check of the pid it names (on the same host).

:class:`MetricsLog` is ``metrics.jsonl``: one JSON record per line, each ``(kind, step)`` at most
once. When training (re)starts at step S, records past S (written after the checkpoint it resumes
from, or by a run that started over) and torn lines of a killed writer are dropped; a record
logged again for the same kind and step supersedes the earlier one.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from ..errors import CheckpointError, TrainingError

try:
    import fcntl
except ImportError:  # not POSIX: pid-file locking only
    fcntl = None

LOCK_FILE = ".lock"


def _describe(holder: dict) -> str:
    since = holder.get("started")
    when = time.strftime(", since %Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, int) else ""
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}{when}"


def _read_holder(path: Path) -> dict:
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """The exclusive right to write into ``run_dir`` (see the module docstring); a context manager."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.stale: dict | None = None  # the dead writer's lock this one took over, if any
        self._fd: int | None = None
        self._created_dir = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _content(self) -> str:
        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": int(time.time())})

    def _refuse(self, holder: dict) -> CheckpointError:
        return CheckpointError(
            f"{self.run_dir} is in use by another training ({_describe(holder)}); wait for it to "
            f"finish or choose another --out (if that process is gone, delete {self.path})"
        )

    def acquire(self) -> None:
        self._created_dir = not self.run_dir.exists()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if fcntl is not None:
            for _ in range(10):  # retry if the file is replaced between open and flock
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    raise self._refuse(_read_holder(self.path)) from None
                except OSError:  # the file system has no flock
                    os.close(fd)
                    break
                try:
                    current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    current = False
                if not current:
                    os.close(fd)
                    continue
                self._take(fd, _read_holder(self.path))
                return
        self._acquire_pid_file()

    def _take(self, fd: int, stale: dict) -> None:
        """Write this process's details into the lock file ``fd`` (now held)."""
        self.stale = stale or None
        os.ftruncate(fd, 0)
        os.pwrite(fd, self._content().encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def _acquire_pid_file(self) -> None:
        stale: dict = {}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = _read_holder(self.path)
                if holder.get("host") != socket.gethostname() or _pid_alive(holder.get("pid")):
                    raise self._refuse(holder) from None
                self.path.unlink(missing_ok=True)
                stale = holder
                continue
            self._take(fd, stale)
            return
        raise self._refuse(_read_holder(self.path))

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
        if self._created_dir and self.run_dir.is_dir() and not any(self.run_dir.iterdir()):
            self.run_dir.rmdir()

    def stale_message(self) -> str | None:
        """A one-line note about the stale lock taken over, if any."""
        if not self.stale:
            return None
        return f"removed the stale lock of {_describe(self.stale)}, which is no longer running"


class MetricsLog:
    """``metrics.jsonl`` (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._keys: set[tuple] | None = None

    def records(self) -> list[dict]:
        """Every complete record, in order (torn or foreign lines skipped)."""
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    @staticmethod
    def _key(rec: dict) -> tuple:
        return (rec.get("kind"), rec.get("step"))

    def _rewrite(self, records: list[dict]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        try:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
            os.replace(tmp, self.path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise TrainingError(f"could not rewrite {self.path}: {err}") from None
        self._keys = {self._key(r) for r in records}

    def truncate(self, step: int) -> None:
        """Keep only the records of steps up to ``step`` (training goes on from there)."""
        records = self.records()
        kept = [r for r in records if not (isinstance(r.get("step"), int) and r["step"] > step)]
        if self.path.is_file() and (len(kept) != len(records) or self._torn()):
            self._rewrite(kept)
        self._keys = {self._key(r) for r in kept}

    def _torn(self) -> bool:
        text = self.path.read_text(errors="replace")
        return bool(text) and (not text.endswith("\n") or len(self.records()) != len(text.splitlines()))

    def append(self, record: dict) -> None:
        """Add ``record``; an earlier record of the same kind and step is replaced."""
        if self._keys is None:
            self._keys = {self._key(r) for r in self.records()}
        key = self._key(record)
        if key in self._keys:
            self._rewrite([r for r in self.records() if self._key(r) != key])
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as err:
            raise TrainingError(f"could not append to {self.path}: {err}") from None
        self._keys.add(key)
