"""The one loader from a parsed TOML table or JSON object to a configuration dataclass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from seqtransfer.core.config import config_from_mapping, require
from seqtransfer.core.errors import ConfigError
from seqtransfer.graph.config import GraphConfig
from seqtransfer.pipeline.config import FinetuneConfig, ZooConfig
from seqtransfer.selection.config import SelectionConfig
from seqtransfer.training.config import NetworkConfig, TrainConfig


@dataclass(frozen=True)
class Inner:
    rate: float = 0.5
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        require([(0 <= self.rate <= 1, f"rate must be in [0, 1], got {self.rate}")])


@dataclass(frozen=True)
class Outer:
    steps: int = 3
    flag: bool = False
    label: str | None = None
    size: tuple[int, int] = (1, 2)
    inner: Inner = field(default_factory=Inner)


def test_values_are_coerced_to_their_annotations() -> None:
    built = config_from_mapping(
        Outer, {"steps": 5, "flag": True, "size": [3, 4], "inner": {"rate": 1, "names": ["a", "b"]}}, "outer"
    )
    assert built == Outer(steps=5, flag=True, size=(3, 4), inner=Inner(rate=1.0, names=("a", "b")))
    assert isinstance(built.inner.rate, float) and isinstance(built.size, tuple)
    assert config_from_mapping(Outer, {}, "outer") == Outer()
    assert config_from_mapping(Outer, {"label": None}, "outer").label is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"stepz": 1, "flag": True}, "unknown outer parameter(s): stepz"),
        ({"steps": True}, "outer.steps must be an integer, got True"),
        ({"steps": 2.5}, "outer.steps must be an integer, got 2.5"),
        ({"flag": 1}, "outer.flag must be true or false, got 1"),
        ({"label": 3}, "outer.label must be a string, got 3"),
        ({"size": 3}, "outer.size must be a list"),
        ({"size": [1, 2, 3]}, "outer.size must be a list of 2"),
        ({"size": [1, "x"]}, "outer.size[1] must be an integer, got 'x'"),
        ({"inner": 3}, "[outer.inner] must be a table"),
        ({"inner": {"bogus": 1}}, "unknown outer.inner parameter(s): bogus"),
        ({"inner": {"rate": "x"}}, "outer.inner.rate must be a number, got 'x'"),
        ({"inner": {"rate": 2}}, "outer.inner.rate must be in [0, 1], got 2.0"),
        ({"inner": {"names": ["a", 1]}}, "outer.inner.names[1] must be a string, got 1"),
        ({"bad\nkey": 1}, "unknown outer parameter(s): 'bad\\nkey'"),
    ],
)
def test_a_bad_table_is_one_line_naming_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_mapping(Outer, data, "outer")
    assert str(info.value) == message and "\n" not in str(info.value)


def test_a_table_may_be_restricted_to_some_fields() -> None:
    assert config_from_mapping(Outer, {"steps": 4}, "outer", allowed=("steps",)).steps == 4
    with pytest.raises(ConfigError, match=r"^unknown outer parameter\(s\): flag$"):
        config_from_mapping(Outer, {"flag": True}, "outer", allowed=("steps",))
    not_a_table: Any = [1]
    with pytest.raises(ConfigError, match="must be a table"):
        config_from_mapping(Outer, not_a_table, "outer")


@pytest.mark.parametrize(
    "config",
    [
        GraphConfig(size=16, alpha=0.3, beta=0.7, mode="official"),
        NetworkConfig(preset="nnunet", spacing=(3.0, 1.0, 1.0)),
        NetworkConfig(patch_size=(16, 16, 16), filters=(4, 8, 16)),
        NetworkConfig(
            preset="nnunet",
            patch_size=(16, 16, 8),
            filters=(4, 8, 16),
            kernel_sizes=((3, 3, 1), (3, 3, 3), (3, 3, 3)),
            strides=((1, 1, 1), (2, 2, 1), (2, 2, 2)),
            trans_bias=True,
        ),
        TrainConfig(steps=7, lr=0.003, batch_dice=True),
        ZooConfig(
            network=NetworkConfig(patch_size=(16, 16, 16)),
            train=TrainConfig(steps=2, augment=False),
            max_train=4,
            seed=3,
        ),
        SelectionConfig(lam=0.3, max_length=2, c_search=0.0),
    ],
)
def test_every_configuration_reads_back_what_it_records(config: object) -> None:
    recorded = json.loads(json.dumps(config.to_dict() if hasattr(config, "to_dict") else config.__dict__))
    assert type(config).from_dict(recorded) == config


def test_the_defaults_are_written_once() -> None:
    from seqtransfer.experiment.config import ExperimentConfig, ZooSection
    from seqtransfer.selection.path import DEFAULT_C_SEARCH, DEFAULT_LAMBDA, DEFAULT_MAX_LENGTH

    experiment = ExperimentConfig()
    assert experiment.selection == SelectionConfig() and (DEFAULT_LAMBDA, DEFAULT_MAX_LENGTH, DEFAULT_C_SEARCH) == (
        0.4,
        5,
        0.1,
    )
    assert experiment.finetune == FinetuneConfig()
    assert experiment.zoo.zoo_config(experiment.network, experiment.seed) == ZooConfig(network=experiment.network)
    # what the experiment's [zoo] does not set is ZooConfig's (its lr among them)
    zoo = ZooSection(steps=5, max_train=7).zoo_config(NetworkConfig(), 2)
    assert zoo.train == TrainConfig(steps=5, lr=0.01, seed=2) and zoo.seed == 2 and zoo.max_train == 7


def test_the_configurations_import_no_deep_learning_stack() -> None:
    import seqtransfer

    src = str(Path(seqtransfer.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    modules = [
        "seqtransfer.training.config",
        "seqtransfer.pipeline.config",
        "seqtransfer.selection.config",
        "seqtransfer.graph.config",
        "seqtransfer.cli",
    ]
    heavy = ("torch", "monai")
    code = (
        f"import sys, json\nfor m in {modules!r}: __import__(m)\nprint(json.dumps([n for n in {heavy!r} if n in "
        "sys.modules]))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, timeout=120
    )
    assert json.loads(proc.stdout) == []
