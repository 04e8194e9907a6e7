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
    rows = [r for r in section.splitlines() if r.startswith("| ")]
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
