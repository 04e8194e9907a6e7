"""The README's promises: its test command is what CI runs, and its Python example runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_readme_opens_with_two_commands_and_ci_runs_the_second():
    bash = _blocks("bash")
    main_job, tests = bash[0].strip(), bash[1].strip()
    assert main_job.startswith("pip install torch==2.13.0 && pip install -e . && discodiff train")
    assert "pytest" in tests
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci.splitlines()


def test_python_example_runs():
    code = _blocks("python")[0].replace("range(2000)", "range(3)").replace('"moons", 500)', '"moons", 20)')
    exec(compile(code, "README.md", "exec"), {})
