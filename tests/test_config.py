"""Configuration errors name the key, what was given and what is allowed."""

import pytest

from discodiff.config import ConfigError, apply_overrides
from discodiff.runconfig import load_config, parse_config
from runs import tiny


def test_tiny_config_parses():
    cfg = parse_config(tiny())
    assert cfg.method.name == "gaussian" and cfg.method.config.timesteps == 20
    assert type(cfg.method.config.schedule).__name__ == "LinearSchedule"


@pytest.mark.parametrize(
    "sections,pattern",
    [
        ({"train": {"lrr": 1.0}}, r"unknown key 'config.train.lrr' \(did you mean 'lr'\?\)"),
        (
            {"method": {"name": "gaussian", "timestep": 10}},
            r"unknown key 'config.method.timestep' \(did you mean 'timesteps'\?\)",
        ),
        (
            {"method": {"name": "gausian"}},
            r"config.method.name: unknown method 'gausian' \(did you mean 'gaussian'\?\); allowed: .*",
        ),
        (
            {"method": {"name": "gaussian", "prediction": "noise"}},
            r"'config.method.prediction': got 'noise'; allowed: 'eps', 'x0', 'v', 'score'",
        ),
        (
            {"method": {"name": "gaussian", "schedule": "cosin"}},
            r"unknown schedule 'cosin' \(did you mean 'cosine'\?\)",
        ),
        (
            {"method": {"name": "gaussian", "schedule": {"name": "linear", "beta_max": "big"}}},
            r"'config.method.schedule.beta_max': expected a number, got 'big'",
        ),
        ({"train": {"steps": 1.5}}, r"'config.train.steps': expected an integer, got 1.5"),
        ({"train": {"steps": 0}}, r"train.steps must be >= 1"),
        (
            {"data": {"name": "toy2d", "dataset": "spirals"}},
            r"'config.data.dataset': got 'spirals'; allowed: '8gaussians'",
        ),
        ({"method": {"name": "gaussian", "sampler": "eulr"}}, r"unknown Gaussian sampler 'eulr'"),
        ({"eval": {"batch_size": True}}, r"'config.eval.batch_size': expected an integer, got True"),
    ],
)
def test_bad_configs_name_the_key(sections, pattern):
    cfg = tiny()
    for name, value in sections.items():
        cfg[name] = {**cfg[name], **value} if name != "method" or "name" not in value else value
    with pytest.raises(ConfigError, match=pattern):
        parse_config(cfg)


def test_missing_sections_and_files(tmp_path):
    cfg = tiny()
    del cfg["net"]
    with pytest.raises(ConfigError, match=r"missing required key 'config\.net'"):
        parse_config(cfg)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_overrides():
    out = apply_overrides(tiny(), ["train.lr=3e-4", "method.schedule.name=cosine", "method.prediction=v"])
    cfg = parse_config(out)
    assert cfg.train.lr == 3e-4
    assert type(cfg.method.config.schedule).__name__ == "CosineSchedule"
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(tiny(), ["train.lr"])


def test_builder_errors_name_the_component():
    from discodiff.build import build_run

    cfg = parse_config(
        tiny(method={"name": "gaussian", "timesteps": 20, "sample_steps": 50}, eval={"sampler": "ddim"})
    )
    _, method = build_run(cfg)
    with pytest.raises(ValueError, match=r"steps \(50\) cannot exceed the model's timesteps \(20\)"):
        method.sample(4)
    cfg = parse_config(tiny(eval={"estimators": ["bound", "exact"]}))
    with pytest.raises(ConfigError, match=r"eval\.estimators: 'exact' is not supported.*allowed: bound, ode"):
        build_run(cfg)
