"""Where a result came from: the package version and, for a git checkout, its commit."""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

from . import __version__

GIT_TIMEOUT_S = 5.0
"""A git call that takes longer than this (a hung network file system) is given up."""

PACKAGE_DIR = Path(__file__).resolve().parent


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(PACKAGE_DIR), *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


@cache
def git_commit() -> str | None:
    """The commit of the discodiff sources when they are a git checkout (an editable install),
    with ``-dirty`` appended when tracked files of the package differ from it; ``None`` for an
    installed wheel (or without git). A checkout that merely *contains* an installed copy (a
    virtual environment inside a project's repository) does not count."""
    top = _git("rev-parse", "--show-toplevel")
    if not top or Path(top).resolve() / "src" / "discodiff" != PACKAGE_DIR:
        return None
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return None
    changes = _git("status", "--porcelain", "--untracked-files=no", "--", str(PACKAGE_DIR))
    return commit + ("-dirty" if changes else "")


def version_string() -> str:
    """``discodiff 0.1.0`` plus the commit when known."""
    commit = git_commit()
    return f"discodiff {__version__}" + (f" (commit {commit})" if commit else "")
