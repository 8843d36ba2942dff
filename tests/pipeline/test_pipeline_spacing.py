"""The training grid written as text (``--spacing``)."""

from __future__ import annotations

import pytest

from seqtransfer.core.errors import ConfigError
from seqtransfer.pipeline.workspace import parse_spacing


@pytest.mark.parametrize(
    ("text", "preset", "expected"),
    [
        ("auto", "cpu", None),
        ("auto", "nnunet", "median"),
        (" Cube ", "nnunet", None),
        ("median", "cpu", "median"),
        ("1.5", "cpu", (1.5, 1.5, 1.5)),
        ("3,1,0.5", "nnunet", (3.0, 1.0, 0.5)),
    ],
)
def test_spacings(text: str, preset: str, expected: object) -> None:
    assert parse_spacing(text, preset) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("fine", "must be auto, cube, median"), ("1,2", "one or three numbers"), ("1,2,3,4", "one or three numbers")],
)
def test_bad_spacings_are_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_spacing(text, "cpu")
