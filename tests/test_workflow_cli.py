"""The user's workflow on the command line, through real subprocesses (stderr is not a terminal):
train with plain progress lines, sample from a prompt / suffix / infill template with a record
beside the samples, export a bundle, list what methods declare, --version, --print-config, no
abbreviated options. One tiny text run is shared by the module."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import discodiff
from discodiff.cli import main
from discodiff.data.vocab import CharVocab

SRC = Path(__file__).resolve().parents[1] / "src"

TINY_TEXT = {
    "seed": 0,
    "data": {"name": "text", "seq_len": 32, "eval_windows": 4},
    "method": {"name": "mdlm", "sample_steps": 8},
    "net": {"name": "transformer", "width": 32, "depth": 1, "heads": 2},
    "train": {"steps": 8, "batch_size": 8, "log_every": 4, "ckpt_every": 100, "warmup_steps": 2},
    "eval": {"batch_size": 4, "nll_examples": 4, "num_samples": 2},
}


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "discodiff", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workflow")
    cfg = tmp / "tiny_text.yaml"
    cfg.write_text(yaml.safe_dump(TINY_TEXT))
    proc = cli("train", cfg, "--out", tmp / "run")
    assert proc.returncode == 0, proc.stderr
    return tmp / "run", proc


def test_train_without_terminal_writes_plain_lines_and_run_record(text_run):
    run, proc = text_run
    lines = [line for line in proc.stderr.splitlines() if line.startswith("step ")]
    assert [line.split(" | ")[0] for line in lines] == ["step 4/8", "step 8/8"]
    assert "\r" not in proc.stderr  # no tqdm redraws in a log
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["planned_steps"] == 8 and metrics["step"] == 8 and metrics["stopped_by"] == "steps"
    assert metrics["train_seconds"] > 0 and len(metrics["commit"].split("-")[0]) == 40
    assert metrics["bits_per_char_stderr"] > 0  # the bound is a Monte Carlo estimate


def test_sample_prompt_and_suffix_with_record(text_run, tmp_path):
    run, _ = text_run
    proc = cli("sample", run, "--num", 3, "--prompt", "ROMEO:", "--suffix", "end.", "--no-progress",
               "--out", tmp_path / "p.txt", "--seed", 5)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # --no-progress: nothing on stderr
    assert "known values: exact conditioning" in proc.stdout  # masked diffusion's declaration
    texts = (tmp_path / "p.txt").read_text().split("=== sample ")[1:]
    assert len(texts) == 3
    for block in texts:
        body = block.split("===\n", 1)[1][:-1]
        assert len(body) == 32 and body.startswith("ROMEO:") and body.endswith("end.")
    record = json.loads((tmp_path / "p.json").read_text())
    assert record["sampler"] == "caching" and record["steps"] == 8 and record["seed"] == 5
    assert record["known"] == {"prompt": "ROMEO:", "suffix": "end."}
    assert record["guidance_scale"] == 1.0 and record["nfe"] > 0 and record["seconds"] > 0


def test_sample_infill_template(text_run, tmp_path):
    run, _ = text_run
    template = "ROMEO:\n____ is ________ light"
    (tmp_path / "t.txt").write_text(template + "\n")
    argv = [
        "sample",
        str(run),
        "--num",
        "2",
        "--infill",
        str(tmp_path / "t.txt"),
        "--out",
        str(tmp_path / "i.txt"),
    ]
    assert main(argv) == 0  # in-process: the prompt test above runs the command as a subprocess
    for block in (tmp_path / "i.txt").read_text().split("=== sample ")[1:]:
        body = block.split("===\n", 1)[1][:-1]
        assert all(b == t for b, t in zip(body, template) if t != "_")
        assert all(c != "_" for c in body)


def test_unknown_prompt_characters_are_named(text_run, capsys):
    run, _ = text_run
    assert main(["sample", str(run), "--prompt", "Roméo"]) == 2
    err = capsys.readouterr().err
    assert "--prompt: 1 character(s) are not in the vocabulary" in err and "'é'" in err
    assert "Traceback" not in err


def test_export_bundle_loads_like_the_run(text_run, tmp_path):
    run, _ = text_run
    proc = cli("export", run, tmp_path / "bundle")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "bundle").iterdir()) == [
        "config.json",
        "data.json",
        "model.safetensors",
    ]
    from_run, from_bundle = (
        discodiff.load(run, device="cpu"),
        discodiff.load(tmp_path / "bundle", device="cpu"),
    )
    assert not from_run.training and from_bundle.data_state == from_run.data_state
    outs = [
        m.sample(2, steps=8, generator=torch.Generator().manual_seed(1)).x for m in (from_run, from_bundle)
    ]
    assert torch.equal(*outs)
    text = CharVocab(from_bundle.data_state["chars"]).decode(outs[0][0].numpy())
    assert len(text) == 32
    raw = discodiff.load(run, device="cpu", ema=False)
    assert any(
        not torch.equal(a, b) for a, b in zip(raw.state_dict().values(), from_run.state_dict().values())
    )


def test_list_samplers_from_declarations():
    proc = cli("list", "samplers", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    d3pm = {r["sampler"]: r for r in rows if r["method"] == "d3pm"}
    assert d3pm.keys() == {"ancestral", "argmax"}
    assert d3pm["ancestral"]["max_steps"] == 1000 and d3pm["argmax"]["deterministic"] == "yes"
    assert {r["method"] for r in rows} >= {"gaussian", "mdlm", "ar", "sedd"}
    assert next(r for r in rows if r["method"] == "ar")["steps"] == "L"  # one step per token


def test_print_config_resolves_every_default(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(TINY_TEXT))
    printed = cli("train", cfg, "--print-config", "train.lr=0.0005", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    resolved = yaml.safe_load(printed.stdout)
    assert resolved["train"]["lr"] == 0.0005 and resolved["train"]["beta2"] == 0.999  # a default
    assert resolved["method"]["schedule"]["name"] == "loglinear"  # the method's default schedule
    assert resolved["eval"]["precision"] is None  # None: evaluate in the training precision
    assert not (tmp_path / "runs").exists()  # nothing trained


def test_version_and_no_abbreviated_options(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"discodiff {discodiff.__version__}")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(tmp_path / "c.yaml"), "--max-step", "3"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --max-step" in capsys.readouterr().err


def test_readme_notebook_example_runs(text_run, capsys):
    """The README's "sample in a notebook" example, on this module's run."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.S) if "discodiff.load(" in b)
    run, _ = text_run
    exec(compile(block.replace('"runs/demo-mdlm"', repr(str(run))), "README.md", "exec"), {})
    assert capsys.readouterr().out.startswith("ROMEO:")


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("methods", {"gaussian", "mdlm", "d3pm", "sedd", "ar"}),
        ("datasets", {"toy2d", "array", "text", "digits"}),
        ("schedules", {"linear", "cosine", "loglinear", "geometric"}),
        ("nets", {"mlp", "transformer", "unet"}),
    ],
)
def test_list_registries(kind, expected, capsys):
    assert main(["list", kind, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = {r.get("name", r.get("method")) for r in rows}
    assert names >= expected
    assert all(r["description"] for r in rows)  # every entry says what it is


def test_list_configs_names_method_and_data(capsys):
    assert main(["list", "configs", "--json"]) == 0
    rows = {
        Path(r["config"]).as_posix().split("configs/", 1)[1]: r for r in json.loads(capsys.readouterr().out)
    }
    assert rows["toy2d/ddpm.yaml"]["method"] == "gaussian" and rows["toy2d/ddpm.yaml"]["data"] == "toy2d"
    assert rows["shakespeare/mdlm_demo.yaml"]["method"] == "mdlm"
    assert main(["list", "configs"]) == 0
    assert max(len(line) for line in capsys.readouterr().out.splitlines()) < 200  # long text clipped
