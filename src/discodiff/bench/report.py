"""The leaderboard (markdown) and plots of one bench run, from its rows only."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .suite import Suite


def _num(v: float, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}g}"


def _pm(mean: float, sd: float, digits: int = 4) -> str:
    return _num(mean, digits) if sd is None or math.isnan(sd) else f"{_num(mean, digits)} ± {_num(sd, 2)}"


def _estimator(row: dict) -> str:
    """``bound``, ``exact``, or the estimator's name with what it is (``ode, exact``)."""
    kind = "exact" if row["exact"] else "bound"
    return row["estimator"] if row["estimator"] == kind else f"{row['estimator']}, {kind}"


def quality_metrics(rows: list[dict], suite: Suite) -> list[str]:
    """The metric keys of the sampling rows, the suite's ranked metric first."""
    keys: list[str] = []
    for r in rows:
        if r["kind"] in ("sampling", "data"):
            keys += [k for k in r["metrics"] if k not in keys]
    first = suite.quality.metric
    return [first, *[k for k in keys if k != first]] if first in keys else keys


def leaderboard(rows: list[dict], meta: dict, suite: Suite) -> str:
    m = meta["machine"]
    train = [r for r in rows if r["kind"] == "train"]
    lik = [r for r in rows if r["kind"] == "likelihood"]
    sign = 1 if suite.quality.lower_is_better else -1
    lines = [
        f"# {meta['description']}",
        "",
        f"Suite `{meta['suite_file']}`, {meta['budget_s']:g} s of training per method, seed {meta['seed']}, "
        f"commit `{meta['commit']}`, {meta['started']}.",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['threads']} threads"
        + (f", load average {m['load_average']:.1f} at the start" if "load_average" in m else "")
        + ".",
        "",
        f"Command: `{meta['command']}`",
        "",
    ]
    if "finished" not in meta:
        done = sorted({r["method"] for r in rows if r["kind"] in ("train", "failed")})
        lines += [
            f"**Partial results**: the run has not finished (or was stopped): {len(done)} of "
            f"{len(meta['methods'])} methods measured ({', '.join(done) or 'none'}).",
            "",
        ]
    if lik:
        unit = lik[0]["unit"]
        lines += [
            f"## Likelihood ({unit}, {lik[0]['examples']} examples of the {lik[0]['split']} split; "
            "lower is better)",
            "",
            "Each estimator's mean ± standard error over examples; *exact* is the exact NLL, *bound* an "
            "upper bound. Steps: trained / planned from the calibration (the length of the "
            "learning-rate schedule).",
            "",
            "| method | likelihood | steps | stopped by | train s | examples/s | parameters |",
            "|---|---|---|---|---|---|---|",
        ]
        best = {}
        for r in lik:
            best[r["method"]] = min(best.get(r["method"], math.inf), r["value"])
        for t in sorted(train, key=lambda t: best.get(t["method"], math.inf)):
            cells = [
                f"{_pm(r['value'], r['stderr'])} ({_estimator(r)})" for r in lik if r["method"] == t["method"]
            ]
            lines.append(
                f"| {t['method']} | {'<br>'.join(cells)} | {t['train_steps']} / {t['planned_steps']} | "
                f"{t['stopped_by']} | {t['train_seconds']:.0f} | {t['examples_per_s']:.0f} | "
                f"{t['parameters']:,} |"
            )
        lines.append("")
    samp = [r for r in rows if r["kind"] in ("sampling", "data")]
    if samp:
        keys = quality_metrics(rows, suite)
        q = suite.quality
        lines += [
            f"## Sample quality ({q.samples} samples per draw, mean ± sd over {q.draws} draws)",
            "",
            f"Ranked by `{keys[0] if keys else '-'}` "
            f"({'lower' if q.lower_is_better else 'higher'} is better) "
            "within each method. NFE: network calls per sample (guidance counts two). The data row scores "
            "the split itself: the floor of each metric at this sample size.",
            "",
            "| method | sampler | steps | guidance | NFE | ms / example | " + " | ".join(keys) + " |",
            "|---|---|---|---|---|---|" + "---|" * len(keys),
        ]

        def rank(r: dict) -> float:
            v = r["metrics"].get(keys[0], {}).get("mean", math.inf) if keys else 0.0
            return sign * v if math.isfinite(v) else math.inf

        for r in sorted(samp, key=lambda r: (r["kind"] == "data", r["method"], rank(r))):
            cells = [
                _pm(r["metrics"][k]["mean"], r["metrics"][k]["sd"]) if k in r["metrics"] else "-"
                for k in keys
            ]
            if r["kind"] == "data":
                head = f"| {r['method']} | - | - | - | - | - |"
            else:
                head = (
                    f"| {r['method']} | {r['sampler']} | {r['steps']} | {r['guidance']:g} | {r['nfe']} | "
                    f"{1000 * r['seconds_per_example']:.3g} |"
                )
            lines.append(head + " " + " | ".join(cells) + " |")
        lines.append("")
    failed = [r for r in rows if r["kind"] == "failed"]
    if failed:
        lines += ["## Training failed (no likelihood or samples)", ""]
        lines += [f"- {r['method']}: {r['error']}" for r in failed] + [""]
    lines += ["Plots: `likelihood_vs_time.png`, `quality_vs_time.png`; rows: `results.json`.", ""]
    return "\n".join(lines)


def plot_likelihood(rows: list[dict], path: Path) -> Path | None:
    curves = [r for r in rows if r["kind"] == "curve"]
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name in dict.fromkeys(r["method"] for r in curves):
        pts = [r for r in curves if r["method"] == name]
        ax.plot(
            [p["train_seconds"] for p in pts],
            [p["value"] for p in pts],
            "o-",
            label=f"{name} ({pts[0]['estimator']})",
        )
    ax.set_xlabel("training time (s)")
    ax.set_ylabel(f"{curves[0]['unit']} ({curves[0]['examples']} {curves[0].get('split', '')} examples)")
    ax.set_title("likelihood during training (lower is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_quality(rows: list[dict], suite: Suite, path: Path) -> Path | None:
    keys = quality_metrics(rows, suite)
    samp = [r for r in rows if r["kind"] == "sampling" and keys and keys[0] in r["metrics"]]
    if not samp:
        return None
    metric, g0 = keys[0], suite.quality.guidance[0]
    samp = [r for r in samp if r["guidance"] == g0] or samp
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ref = suite.quality.reference
    for key in dict.fromkeys((r["method"], r["sampler"]) for r in samp):
        pts = sorted(
            (r for r in samp if (r["method"], r["sampler"]) == key), key=lambda r: r["seconds_per_example"]
        )
        xs = [1000 * p["seconds_per_example"] for p in pts]
        ys = [p["metrics"][metric]["mean"] for p in pts]
        sds = [0.0 if math.isnan(p["metrics"][metric]["sd"]) else p["metrics"][metric]["sd"] for p in pts]
        if key[0] == ref:  # the reference model: a line across the plot, marked at its own time
            line = ax.axhline(ys[0], ls="--", color="k", lw=1, label=f"{key[0]} ({key[1]}, reference)")
            ax.plot(xs[:1], ys[:1], "s", color=line.get_color())
        else:
            ax.errorbar(xs, ys, yerr=sds, fmt="o-", capsize=2, label=f"{key[0]} ({key[1]})")
        for x, y, p in zip(xs, ys, pts):  # each point's step count
            ax.annotate(str(p["steps"]), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6)
    for r in rows:
        if r["kind"] == "data" and metric in r["metrics"]:
            ax.axhline(r["metrics"][metric]["mean"], ls=":", color="grey", label=r["method"])
    ax.set_xscale("log")
    ax.set_xlabel("sampling time per example (ms)")
    ax.set_ylabel(metric)
    better = "lower" if suite.quality.lower_is_better else "higher"
    ax.set_title(f"sample quality vs sampling time ({better} is better; guidance {g0:g})")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(out: Path, rows: list[dict], meta: dict, suite: Suite) -> None:
    (out / "leaderboard.md").write_text(leaderboard(rows, meta, suite), encoding="utf-8")
    plot_likelihood(rows, out / "likelihood_vs_time.png")
    plot_quality(rows, suite, out / "quality_vs_time.png")
