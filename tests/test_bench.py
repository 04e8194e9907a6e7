"""``discodiff bench``: suites parse, the bench never names a method, and one small end-to-end run
writes rows with provenance, a leaderboard and plots."""

import json
import re
from pathlib import Path

import pytest

from discodiff.base import SamplerInfo
from discodiff.bench.measure import evenly_spaced, step_grid
from discodiff.bench.suite import load_suite, select_methods
from discodiff.build import METHODS
from discodiff.cli import main
from discodiff.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SUITES = sorted((ROOT / "configs" / "bench").glob("*.yaml"))
BENCH_CODE = sorted((ROOT / "src" / "discodiff" / "bench").glob("*.py"))


def test_bench_code_names_no_method():
    """Method names (registered, and every suite's method keys) appear only in the suite files."""
    names = set(METHODS.names())
    for path in SUITES:
        text = path.read_text()
        names |= set(re.findall(r"^  (\w+):\s*$", text.split("\nmethods:", 1)[-1], flags=re.M))
    assert "ar" in names and "gaussian" in names
    for path in BENCH_CODE:
        code = path.read_text()
        for name in names:
            assert not re.search(rf"[\"']{re.escape(name)}[\"']", code), f"{path.name} names method {name!r}"


@pytest.mark.parametrize("path", SUITES, ids=lambda p: p.stem)
def test_suites_parse(path):
    """Every suite file builds a run config for each of its methods (data files aside)."""
    text = path.read_text()
    if "../shared/data" in text and not (ROOT / ".." / "shared" / "data").is_dir():
        pytest.skip("shared data absent")
    try:
        suite = load_suite(str(path))
    except ConfigError as err:  # graphs / molecules suites before those methods are merged
        if "unknown method" in str(err) or "unknown data set" in str(err):
            pytest.skip(f"{path.stem}: {err}")
        raise
    for name in suite.methods:
        cfg = suite.run_config(name, steps=100, budget_s=10.0)
        assert cfg.train.steps == 100 and cfg.train.time_budget_s == 10.0
        assert cfg.net.name == suite.net["name"]  # one network for every method


def test_suite_refuses_per_method_net(tmp_path):
    suite = (ROOT / "configs" / "bench" / "toy2d.yaml").read_text()
    bad = suite.replace("      sampler: ancestral\n", "      sampler: ancestral\n    net: {name: mlp}\n", 1)
    (tmp_path / "bad.yaml").write_text(bad)
    with pytest.raises(ConfigError, match="shares the suite's data and net"):
        load_suite(str(tmp_path / "bad.yaml"))
    with pytest.raises(ConfigError, match="not in suite"):
        select_methods(load_suite("toy2d"), "nope")


def test_reference_method_runs_first():
    suite = load_suite("text")
    assert select_methods(suite, "mdlm,ar") == ["ar", "mdlm"]


def test_schedule_is_sized_to_the_planned_steps():
    """The learning-rate schedule spans the planned steps, and a warm-up longer than a tenth of
    them is cut to a tenth (a 200-step warm-up in a 150-step run never reaches the peak rate)."""
    suite = load_suite("text")
    warmup = suite.train["warmup_steps"]
    short, long = (
        suite.run_config("mdlm", steps=150, budget_s=60),
        suite.run_config("mdlm", steps=10**5, budget_s=60),
    )
    assert (short.train.steps, short.train.warmup_steps) == (150, 15)
    assert (long.train.steps, long.train.warmup_steps) == (10**5, warmup)
    assert short.train.time_budget_s == 60


def test_evenly_spaced_covers_the_split():
    idx = evenly_spaced(101, 5)
    assert idx.tolist() == [0, 25, 50, 75, 100]
    assert evenly_spaced(7, 0).tolist() == list(range(7))


class _Fake:
    def __init__(self, info):
        self.info = info

    def sampler_info(self, name):
        return self.info


def test_step_grid_follows_sampler_info():
    grid = [10, 100, 1000]
    assert step_grid(_Fake(SamplerInfo("a", 1.0, 50, max_steps=100)), "a", grid) == [10, 100]
    assert step_grid(_Fake(SamplerInfo("b", 1.0, 256, min_steps=256, max_steps=256)), "b", grid) == [256]
    assert step_grid(_Fake(SamplerInfo("c", None, 30)), "c", grid) == [30]


def test_bench_end_to_end(tmp_path, capsys):
    """The toy2d suite with one method and a small budget: rows with provenance, leaderboard,
    plots; a second run into the same directory is refused (nothing merged across runs)."""
    out = tmp_path / "bench"
    sets = [
        "--set=quality.samples=300",
        "--set=quality.draws=2",
        "--set=quality.steps=[5,20]",
        "--set=data.eval_size=300",
        "--set=likelihood.curve_points=2",
        "--set=likelihood.examples=100",
        "--set=methods.ddpm.method.timesteps=50",
        "--set=likelihood.curve_examples=100",
        "--set=methods.ddpm.samplers=[ancestral,ode_euler]",
    ]
    assert main(["bench", "toy2d", "--budget", "4", "--methods", "ddpm", "--out", str(out), *sets]) == 0
    rows = json.loads((out / "results.json").read_text())
    kinds = {r["kind"] for r in rows}
    assert kinds == {"train", "curve", "likelihood", "sampling", "data"}
    for r in rows:
        assert r["budget_s"] == 4.0 and r["seed"] == 0 and r["commit"]
        assert {"cpu", "cores", "torch", "threads"} <= set(r["machine"])
        if r["kind"] != "data":
            assert r["method"] == "ddpm" and len(r["config_hash"]) == 12
    train = next(r for r in rows if r["kind"] == "train")
    assert train["planned_steps"] >= 1 and train["stopped_by"] in ("steps", "time_budget")
    assert train["train_seconds"] <= 4.0 + 2.0  # the budget is a hard stop (one step may overrun)
    estimators = {r["estimator"] for r in rows if r["kind"] == "likelihood"}
    assert estimators == {"bound", "ode"}
    samp = [r for r in rows if r["kind"] == "sampling"]
    assert {(r["sampler"], r["steps"]) for r in samp} == {
        ("ancestral", 5),
        ("ancestral", 20),
        ("ode_euler", 5),
        ("ode_euler", 20),
    }
    for r in samp:
        w2 = r["metrics"]["w2"]
        assert w2["mean"] > 0 and w2["sd"] >= 0 and r["seconds_per_example"] > 0
    board = (out / "leaderboard.md").read_text()
    assert "ddpm" in board and "w2" in board and train["commit"] in board
    assert "Partial" not in board and "finished" in json.loads((out / "meta.json").read_text())
    assert (out / "likelihood_vs_time.png").stat().st_size > 0
    assert (out / "quality_vs_time.png").stat().st_size > 0
    assert main(["bench", "toy2d", "--budget", "4", "--methods", "ddpm", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


SMALL_TWO_METHOD_RUN = [
    "--set=quality.samples=100",
    "--set=quality.draws=1",
    "--set=quality.steps=[5]",
    "--set=data.eval_size=100",
    "--set=likelihood.curve_points=1",
    "--set=likelihood.examples=50",
    "--set=likelihood.curve_examples=50",
    "--set=methods.ddpm.method.timesteps=20",
    "--set=methods.ddpm.samplers=[ancestral]",
    "--set=methods.ddpm.estimators=[bound]",
]


def _bench_with_sde_vp_raising(error: Exception, tmp_path, monkeypatch) -> tuple[list[str], Path]:
    """Arguments of a 2 s toy2d run of sde_vp and ddpm, with sde_vp's training raising ``error``."""
    from discodiff.bench import command

    real = command.train_method

    def train_method(suite, name, *args, **kwargs):
        if name == "sde_vp":
            raise error
        return real(suite, name, *args, **kwargs)

    monkeypatch.setattr(command, "train_method", train_method)
    out = tmp_path / "bench"
    args = ["bench", "toy2d", "--budget", "2", "--methods", "sde_vp,ddpm", "--out", str(out)]
    return args + SMALL_TWO_METHOD_RUN, out


def test_a_failed_method_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    """A method whose training stops on a non-finite value gets a ``failed`` row and a line in the
    leaderboard, and the next method is still trained and measured (fails if the bench lets the
    TrainingError end the run, or drops the row)."""
    from discodiff.errors import TrainingError

    error = TrainingError("gradient norm became nan at step 7; training stopped")
    args, out = _bench_with_sde_vp_raising(error, tmp_path, monkeypatch)
    assert main(args) == 0
    rows = json.loads((out / "results.json").read_text())
    failed = [r for r in rows if r["kind"] == "failed"]
    assert [r["method"] for r in failed] == ["sde_vp"] and "step 7" in failed[0]["error"]
    assert {r["method"] for r in rows if r["kind"] == "sampling"} == {"ddpm"}
    board = (out / "leaderboard.md").read_text()
    assert "Training failed" in board and "sde_vp: gradient norm became nan at step 7" in board


def test_a_stopped_run_keeps_a_partial_leaderboard(tmp_path, monkeypatch):
    """The leaderboard is rewritten after each method and says it is partial until the run
    finishes: a run that stops at its second method (here a bug, which keeps its traceback) still
    has the first method's leaderboard. Fails if the report is written only at the end."""
    args, out = _bench_with_sde_vp_raising(RuntimeError("a bug"), tmp_path, monkeypatch)
    with pytest.raises(RuntimeError, match="a bug"):
        main(args)
    board = (out / "leaderboard.md").read_text()
    assert "Partial results" in board and "1 of 2 methods measured (ddpm)" in board
    assert "finished" not in json.loads((out / "meta.json").read_text())
