"""Bad inputs and damaged runs, tried as a user would: count clear errors, tracebacks, silent
acceptance and hangs.

Each case writes a config, a data file or a damaged run directory, then runs one ``discodiff``
command in a forked child (``discodiff.cli.main``, so the package is imported once) with a time
limit. Outcomes:

- ``clear``: exit status 2, one ``discodiff <cmd>: error: ...`` line on stderr, no traceback, and
  the line names what the case expects (the field or the file);
- ``misleading``: a clear-looking error line that does not name it;
- ``traceback``: an exception escaped the command;
- ``accepted``: exit status 0 although the input is wrong;
- ``hang``: still running at the time limit (killed);
- ``ok``: a case that should succeed did, with the single warning line it expects.

    PYTHONPATH=src python benchmarks/robustness.py [--only NAME ...] [--timeout 90] [--out benchmarks/results]

Writes ``robustness.json`` and ``robustness.md`` under ``--out``; ``--label`` tags the run (e.g.
``before``/``after``) and results of earlier labels in the JSON file are kept beside it. About
two minutes on two idle cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bad_inputs import BASE_TOY, CASES, classify  # the catalogue, shared with the tests

ROOT = Path(__file__).resolve().parents[1]
TRACEBACK_EXIT = 99


@dataclass
class Outcome:
    name: str
    group: str
    expect: str
    result: str
    seconds: float
    stderr: str


def _preload() -> None:
    """Import what the commands use once, before forking, so that no child pays for it."""
    import torch

    import discodiff.build
    import discodiff.cli
    import discodiff.run  # noqa: F401  (imports the plots, matplotlib included)

    torch.set_num_threads(1)


def _run_child(argv: list[str], cwd: Path, timeout: float) -> tuple[str, int | None, str, float]:
    """Run ``discodiff.cli.main(argv)`` in a forked child; returns (status, exit code, stderr, s)."""
    from discodiff.cli import main

    err_path = cwd / ".stderr"
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child
        code = TRACEBACK_EXIT
        try:
            os.chdir(cwd)
            fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            sys.stderr = os.fdopen(2, "w", buffering=1)
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = TRACEBACK_EXIT
        finally:
            sys.stderr.flush()
            os._exit(code)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.perf_counter() - start > timeout:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "hang", None, err_path.read_text(errors="replace"), time.perf_counter() - start
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    stderr = err_path.read_text(errors="replace") if err_path.exists() else ""
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}", None, stderr, seconds
    return "exited", os.WEXITSTATUS(status), stderr, seconds


def classify_child(case, command: str, status: str, code: int | None, stderr: str) -> str:
    if status != "exited":
        return "hang" if status == "hang" else "crash"
    return classify(case, command, code if code != TRACEBACK_EXIT else None, stderr)


def base_run(work: Path, timeout: float) -> Path:
    """A tiny trained run (checkpoints at steps 10 and 20) that run-directory cases copy."""
    cfg = work / "base.yaml"
    cfg.write_text(yaml.safe_dump(BASE_TOY))
    run = work / "base_run"
    status, code, stderr, _ = _run_child(
        ["train", str(cfg), "--out", str(run), "--no-progress"], work, timeout
    )
    if code != 0:
        raise SystemExit(f"could not train the base run: {status} {code}\n{stderr}")
    return run


def run_cases(names: list[str] | None, timeout: float) -> list[Outcome]:
    _preload()
    outcomes = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        run = base_run(work, timeout)
        for case in CASES:
            if names and case.name not in names:
                continue
            case_dir = work / case.name
            case_dir.mkdir()
            argv, holder = case.setup(case_dir, run)
            status, code, stderr, seconds = _run_child(argv, case_dir, case.timeout or timeout)
            if holder is not None:
                holder()
            result = classify_child(case, argv[0], status, code, stderr)
            outcomes.append(Outcome(case.name, case.group, case.expect, result, seconds, stderr.strip()))
            print(f"{case.name:40s} {result:12s} {seconds:6.1f}s  {_last_line(stderr)}", flush=True)
    return outcomes


def run_property(n: int, timeout: float) -> list[dict]:
    """``n`` mutated runs (tests/mutations.py, derandomized), each in a forked child."""
    from hypothesis import HealthCheck, given, settings

    from mutations import mutated_runs, run_mutated

    results = []

    @settings(
        max_examples=n,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=mutated_runs())
    def collect(case):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "outcome.json"
            start = time.perf_counter()
            pid = os.fork()
            if pid == 0:
                try:
                    outcome, detail = run_mutated(case, Path(tmp) / "work")
                    out.write_text(json.dumps([outcome, detail[-2000:]]))
                finally:
                    os._exit(0)
            while not os.waitpid(pid, os.WNOHANG)[0]:
                if time.perf_counter() - start > timeout:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.02)
            outcome, detail = json.loads(out.read_text()) if out.is_file() else ("hang or crash", "")
        results.append({"mutations": case.mutations, "outcome": outcome, "detail": detail})
        print(f"{len(results):4d} {outcome:10s} {'; '.join(case.mutations)[:90]}", flush=True)

    collect()
    return results


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else "")[:150]


def _commit() -> str:
    """The commit of the ``discodiff`` sources the cases ran (``PYTHONPATH`` may point at another
    checkout, e.g. main's for a ``before`` run), with ``+dirty`` for uncommitted changes."""
    import discodiff

    src = Path(discodiff.__file__).resolve().parent
    try:
        head = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=src, text=True).strip()
        dirty = subprocess.check_output(["git", "status", "--porcelain", "--", "."], cwd=src, text=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty.strip() else "")


def write_results(outcomes: list[Outcome], label: str, out: Path, command: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "robustness.json"
    runs = json.loads(path.read_text()) if path.is_file() else {}
    counts = Counter(o.result for o in outcomes)
    runs[label] = {
        "commit": _commit(),
        "source": str(Path(__import__("discodiff").__file__).resolve().parents[1]),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "command": command,
        "cases": len(outcomes),
        "counts": dict(counts),
        "outcomes": [o.__dict__ for o in outcomes],
    }
    path.write_text(json.dumps(runs, indent=1))
    lines = ["# Bad inputs and damaged runs (benchmarks/robustness.py)", ""]
    for name, run in runs.items():
        source = f" ({run['source']})" if "source" in run else ""
        lines += [
            f"## {name}: commit {run['commit']}{source}, {run['machine']}",
            "",
            f"`{run['command']}`",
            "",
        ]
        lines += [f"{run['cases']} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(run["counts"].items()))]
        lines += ["", "| case | group | expected | result |", "|---|---|---|---|"]
        lines += [f"| {o['name']} | {o['group']} | {o['expect']} | {o['result']} |" for o in run["outcomes"]]
        lines.append("")
    (out / "robustness.md").write_text("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", help="case names to run (default: all)")
    p.add_argument("--timeout", type=float, default=90.0, help="seconds before a case counts as a hang")
    p.add_argument("--label", default="after", help="name of this run in the results")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--property", type=int, default=0, help="also run this many mutated runs (hypothesis)")
    args = p.parse_args()
    pythonpath = os.environ.get("PYTHONPATH", "src").replace(str(ROOT) + "/", "")
    command = f"PYTHONPATH={pythonpath} python benchmarks/robustness.py " + " ".join(sys.argv[1:])
    if args.property:
        _preload()
        results = run_property(args.property, args.timeout)
        counts = Counter(r["outcome"] for r in results)
        print(f"{len(results)} mutated runs: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"robustness_property_{args.label}.json").write_text(
            json.dumps({"commit": _commit(), "command": command, "counts": counts, "runs": results}, indent=1)
        )
        return
    outcomes = run_cases(args.only, args.timeout)
    counts = Counter(o.result for o in outcomes)
    print(f"{len(outcomes)} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if not args.only:
        write_results(outcomes, args.label, args.out, command)


if __name__ == "__main__":
    main()
