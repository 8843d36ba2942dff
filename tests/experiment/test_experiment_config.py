"""Experiment TOML: defaults, validation with one-line errors, relative paths."""

from pathlib import Path

import pytest

from seqtransfer.core.errors import ConfigError
from seqtransfer.experiment.config import METHODS, config_from_dict, load_config


def test_defaults_and_relative_dataset_paths(tmp_path: Path) -> None:
    (tmp_path / "exp.toml").write_text('seed = 3\n[data]\ndatasets = ["d1", "/abs/d2"]\n[finetune]\nsteps = 5\n')
    config = load_config(tmp_path / "exp.toml")
    assert config.seed == 3 and config.graph.seed == 3 and config.finetune.steps == 5
    assert config.data.datasets == (str((tmp_path / "d1").resolve()), "/abs/d2")
    assert config.protocol.methods == METHODS and config.protocol.draws == 3
    assert config.to_dict()["network"]["patch_size"] == [32, 32, 32]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"bogus": 1}, "unknown key"),
        ({"protocol": {"draws": 0}}, "draws"),
        ({"protocol": {"draws": "3"}}, "integer"),
        ({"protocol": {"lambdas": [0.4, 1.5]}}, "lambdas"),
        ({"protocol": {"methods": ["ours", "magic"]}}, "magic"),
        ({"protocol": {"quality_draws": 0, "methods": ["calibrated"]}}, "calibrated"),
        ({"finetune": {"lr": -1.0}}, "lr"),
        ({"finetune": {"augment": "yes"}}, "true or false"),
        ({"zoo": {"steps": 0}}, "zoo.steps"),
        ({"data": {"datasets": ["x"], "benchmark": True}}, "either"),
        ({"graph": {"alpha": "x"}}, "alpha"),
        ({"network": {"preset": "huge"}}, "preset"),
        ({"protocol": []}, "table"),
        ({"seed": -1}, "seed"),
    ],
)
def test_invalid_configs_are_one_line_config_errors(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        config_from_dict(data, "exp.toml")
    assert "\n" not in str(info.value) and str(info.value).startswith("exp.toml: ")


def test_unreadable_and_invalid_toml_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("seed = = 1\n")
    with pytest.raises(ConfigError, match="bad.toml: invalid TOML"):
        load_config(tmp_path / "bad.toml")
