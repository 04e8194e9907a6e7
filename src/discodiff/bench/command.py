"""``discodiff bench SUITE [--budget SECONDS] [--methods a,b,...] [--out DIR] [--set key=value ...]``.

``DIR`` (default ``bench_results/SUITE-YYYYmmdd-HHMMSS``) must be new or empty: every run writes a
new directory and nothing is merged across runs. It receives

- ``results.json``: a list of rows (``kind``: ``train``, ``failed``, ``curve``, ``likelihood``, ``sampling``,
  ``data``), each with the suite, method, commit, config hash, machine, seed and budget;
- ``leaderboard.md``, ``likelihood_vs_time.png``, ``quality_vs_time.png``, rewritten after each
  method (until ``meta.json`` has ``finished``, the leaderboard says it is partial);
- ``runs/METHOD/``: each method's run directory (config, checkpoint, metrics log).
"""

from __future__ import annotations

import json
import math
import shlex
import sys
import time
from pathlib import Path

from ..config import ConfigError
from ..errors import TrainingError
from ..state import batch_size, index
from .measure import data_row, estimators_of, evenly_spaced, likelihood, sampling_rows, validation_set
from .provenance import commit, machine, utc_now
from .report import write_report
from .runner import train_method
from .suite import MethodEntry, Suite, load_suite, select_methods


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _out_dir(out: Path | None, suite: Suite) -> Path:
    if out is None:
        out = Path("bench_results") / f"{suite.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(
            f"--out {out} already exists and is not empty: every bench run writes a new directory"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def run_bench(
    suite_name: str,
    *,
    budget: float | None = None,
    methods: str | None = None,
    out: Path | None = None,
    overrides: list[str] | None = None,
    log=_log,
) -> Path:
    """Run a suite; returns the results directory."""
    suite = load_suite(suite_name, overrides)
    budget_s = suite.budget_s if budget is None else float(budget)
    if not budget_s > 0 or not math.isfinite(budget_s):
        raise ConfigError(f"--budget must be a positive number of seconds, got {budget}")
    names = select_methods(suite, methods)
    out = _out_dir(out, suite)
    common = {
        "suite": suite.name,
        "commit": commit(),
        "machine": machine(),
        "seed": suite.seed,
        "budget_s": budget_s,
        "started": utc_now(),
    }
    command_line = "discodiff bench " + shlex.join(
        [suite_name, "--budget", f"{budget_s:g}", "--methods", ",".join(names), "--out", str(out)]
        + [f"--set={s}" for s in overrides or []]
    )
    meta = {
        **common,
        "command": command_line,
        "suite_file": _relative(suite.path),
        "description": suite.description,
        "methods": names,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))  # "finished" is added at the end
    if methods and suite.quality.reference and suite.quality.reference not in methods.split(","):
        log(
            f"bench: also training {suite.quality.reference!r}, the suite's reference model "
            "(generative perplexity)"
        )
    rows: list[dict] = []
    reference = None
    lik = suite.likelihood
    for name in names:
        entry = suite.methods[name]
        prov = {**common, "method": name, "config_hash": suite.config_hash(name)}
        log(f"bench: {name}: training for {budget_s:g} s")

        run_dir = out / "runs" / name
        try:
            trained = train_method(
                suite, name, budget_s, run_dir, out / "artifacts", _curve_fn(suite, entry), log
            )
        except TrainingError as err:  # one diverged method must not end the comparison
            log(f"bench: {name}: training failed, the run goes on: {err}")
            rows.append({"kind": "failed", **prov, "error": str(err), "run_dir": str(run_dir)})
            _write_rows(out, rows)
            write_report(out, rows, meta, suite)
            continue
        method, data = trained.method, trained.data
        rows.append({"kind": "train", **prov, **trained.record, "run_dir": str(run_dir)})
        rows += [{"kind": "curve", **prov, **point} for point in trained.curve]
        x, cond = validation_set(data, lik.split, lik.examples)
        for est in estimators_of(method, entry):
            log(f"bench: {name}: likelihood ({est}) on {batch_size(x)} {lik.split} examples")
            t0 = time.perf_counter()
            res = likelihood(method, x, cond, est, batch=lik.batch_size, seed=suite.seed, unit=data.info.unit)
            rows.append(
                {"kind": "likelihood", **prov, "split": lik.split, **res, "seconds": time.perf_counter() - t0}
            )
        if name == suite.quality.reference:
            reference = method
        log(f"bench: {name}: sampling")
        rows += [{**prov, **row} for row in sampling_rows(method, data, entry, suite, reference)]
        _write_rows(out, rows)
        write_report(out, rows, meta, suite)  # a partial leaderboard, so a stopped run keeps one
    if suite.quality.data_row:
        rows.append({**common, "method": f"data ({lik.split} split)", **data_row(data, suite, reference)})
    _write_rows(out, rows)
    meta["finished"] = utc_now()
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    write_report(out, rows, meta, suite)
    return out


def _curve_fn(suite: Suite, entry: MethodEntry):
    """The likelihood at a curve point: the method's first estimator on ``curve_examples`` evenly
    spaced examples of the validation set."""
    lik = suite.likelihood

    def curve(model, data) -> dict:
        x, cond = validation_set(data, lik.split, lik.examples)
        idx = evenly_spaced(batch_size(x), lik.curve_examples)
        est = estimators_of(model, entry)[0]
        sub_cond = None if cond is None else cond[idx]
        unit = data.info.unit
        seed, batch = suite.seed, lik.batch_size
        res = likelihood(model, index(x, idx), sub_cond, est, batch=batch, seed=seed, unit=unit)
        return {"split": lik.split, **res}

    return curve


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _write_rows(out: Path, rows: list[dict]) -> None:
    tmp = out / "results.json.tmp"
    tmp.write_text(json.dumps(rows, indent=1, default=float))
    tmp.replace(out / "results.json")
