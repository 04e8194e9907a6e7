"""Every shipped config parses strictly and builds its data set, network and method."""

from pathlib import Path

import pytest

from discodiff.build import build_run
from discodiff.runconfig import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(
    p for p in (ROOT / "configs").rglob("*.yaml") if p.parent.name != "bench"
)  # suites: test_bench


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(ROOT / "configs")) for p in CONFIGS])
def test_config_builds(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # data paths in configs are relative to the repository root
    cfg = load_config(path)
    if cfg.data.name == "mnist" and not (ROOT / cfg.data.config.train).exists():
        pytest.skip("shared MNIST files are not present")
    if getattr(cfg.data.config, "prepared", None):
        pytest.skip("reads a prepared corpus: built in tests/test_text_configs.py")
    path_field = getattr(cfg.data.config, "path", "") or ""
    if "../shared/" in str(path_field) and not (ROOT / path_field).exists():
        pytest.skip(f"shared data {path_field} is not present")
    data, method = build_run(cfg)
    assert method.event_shape == data.info.event_shape
