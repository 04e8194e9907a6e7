"""The README's workflow promises: sample and evaluate commands for both demo runs, a table of
what to expect, the glossary of names users know, and a main job that does not depend on the
machine's speed."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _bash_lines() -> list[str]:
    return [
        line for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S) for line in block.splitlines()
    ]


def test_sample_and_eval_commands_for_both_demo_runs():
    lines = _bash_lines()
    for run in ("runs/demo-ddpm", "runs/demo-mdlm"):
        assert any(line.startswith(f"discodiff sample {run}") for line in lines), run
        assert any(line.startswith(f"discodiff eval {run}") for line in lines), run
    assert any("--prompt" in line for line in lines if line.startswith("discodiff sample runs/demo-mdlm"))


def test_what_you_should_see_table():
    section = README.split("What you should see", 1)[1].split("\n## ", 1)[0]
    rows = [r for r in section.splitlines() if r.startswith("|")]
    assert rows[0].startswith("| run | metric | value | time on 2 cores")
    body = "\n".join(rows[2:])
    for metric in ("W2", "bits/dim", "bits/char"):
        assert metric in body, metric


def test_glossary_maps_the_names_users_know():
    glossary = README.split("## Names you may know", 1)[1].split("\n## ", 1)[0]
    for name in (
        "prediction_type",
        "beta_schedule",
        "beta_start",
        "beta_end",
        "num_inference_steps",
        "parameterization",
        "ddpm_cache",
        "`T`",
        "semi_ar",
        "graph.type",
        "noise.type",
        "sampling.predictor",
    ):
        assert name in glossary, name


def test_main_job_runs_on_a_step_budget():
    """The main job must print the same numbers on a slow machine: no time budget in its configs."""
    main_job = re.findall(r"```bash\n(.*?)```", README, flags=re.S)[0]
    configs = re.findall(r"discodiff train (\S+\.yaml)", main_job)
    assert len(configs) == 2
    for config in configs:
        train = yaml.safe_load((ROOT / config).read_text()).get("train", {})
        assert train.get("time_budget_s") is None, config


def test_main_job_benchmark_rewrites_the_table(tmp_path, monkeypatch):
    """``benchmarks/main_job.py --readme`` replaces the table's rows and leaves the rest alone."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("main_job", ROOT / "benchmarks" / "main_job.py")
    main_job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(main_job)
    readme = tmp_path / "README.md"
    readme.write_text(README)
    metrics = {
        "w2": 0.5,
        "bits_per_dim": 3.1,
        "bits_per_dim_ode": 2.9,
        "bits_per_char": 2.5,
        "sample_nfe": 100.0,
    }
    result = {
        "normal": {name: {"seconds": 60.0, "metrics": metrics} for name in main_job.RUNS},
        "references": {"w2": "floor 0.5"},
    }
    main_job.update_readme(result, readme)
    new = readme.read_text()
    section = new.split("What you should see", 1)[1].split("\n## ", 1)[0]
    rows = [r for r in section.splitlines() if r.startswith("|")]
    assert rows[0] == main_job.README_TABLE_HEADER and len(rows) == 2 + 5
    assert (
        "| demo-ddpm | W2, 2,000 samples vs test points | 0.5 | 60 s (train + evaluation) | floor 0.5 |"
        in rows
    )
    assert new.split("What you should see", 1)[0] == README.split("What you should see", 1)[0]
    assert new.split("\n## Features", 1)[1] == README.split("\n## Features", 1)[1]
