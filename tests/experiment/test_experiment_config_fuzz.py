"""Fuzzing the experiment configuration: any parsed TOML is accepted or refused with a ConfigError."""

import tomllib

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seqtransfer.core.errors import ConfigError
from seqtransfer.experiment.config import config_from_dict

scalars = st.one_of(
    st.integers(-5, 500),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=8),
    st.lists(st.one_of(st.integers(-2, 5), st.floats(-1, 2), st.text(max_size=5)), max_size=4),
)
KEYS = {
    "data": ["datasets", "benchmark", "benchmark_size", "benchmark_cases", "benchmark_tumour_sites", "groups", "bogus"],
    "protocol": [
        "targets",
        "draws",
        "methods",
        "lambdas",
        "random_landmarks",
        "top_k",
        "max_sources",
        "quality_draws",
        "score_voxels",
        "scratch_steps",
        "calibration_trials",
        "bogus",
    ],
    "zoo": ["steps", "max_train", "augment"],
    "finetune": ["steps", "lr", "lambda_ewc", "augment"],
    "graph": ["size", "volumes_per_task", "alpha", "beta", "mode", "seed"],
    "network": ["preset", "patch_size", "filters", "architecture", "in_channels"],
}
sections = st.fixed_dictionaries(
    {},
    optional={
        name: st.one_of(scalars, st.dictionaries(st.sampled_from(keys), scalars, max_size=4))
        for name, keys in KEYS.items()
    },
)
configs = st.one_of(
    sections, st.dictionaries(st.text(max_size=6), scalars, max_size=3), sections.map(lambda d: {**d, "seed": 3})
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_any_configuration_is_accepted_or_refused_with_one_line(data: dict) -> None:
    try:
        config = config_from_dict(data, "fuzz.toml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.toml: ") and "\n" not in str(exc)
        return
    assert 1 <= config.protocol.draws <= 3 and config.finetune.lr > 0
    assert all(0.0 <= v <= 1.0 for v in config.protocol.lambdas)


@settings(max_examples=50, deadline=None)
@given(sections)
def test_what_toml_can_write_parses_back_the_same(data: dict) -> None:
    clean = {k: v for k, v in data.items() if isinstance(v, dict)}
    try:
        text = tomli_w.dumps(clean)
    except (TypeError, ValueError):
        return  # not representable in TOML (e.g. NaN inside lists of mixed types)
    back = tomllib.loads(text)
    try:
        original = config_from_dict(clean, "x")
    except ConfigError:
        with pytest.raises(ConfigError):  # what is refused before the round trip is refused after it
            config_from_dict(back, "x")
        return
    assert config_from_dict(back, "x") == original  # the TOML text means what the dict meant
