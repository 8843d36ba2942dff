"""An output folder a command creates is probed before any work and removed when the command fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from seqtransfer.core.atomic import prepare_output_folder, removed_on_failure
from seqtransfer.core.errors import ConfigError, StoreError


def test_a_created_folder_is_removed_when_the_block_fails(tmp_path: Path) -> None:
    out = tmp_path / "a" / "out"
    created = prepare_output_folder(out)
    assert created and out.is_dir() and list(out.iterdir()) == []  # the probe file is gone
    with pytest.raises(StoreError), removed_on_failure(out, created):
        (out / "half.json").write_text("{")
        raise StoreError("disk full")
    assert not out.exists()


def test_an_existing_folder_and_a_success_are_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.json").write_text("{}")
    created = prepare_output_folder(out)
    assert not created
    with pytest.raises(OSError), removed_on_failure(out, created):
        raise OSError("no space left")
    assert (out / "earlier.json").exists()
    fresh = tmp_path / "fresh"
    with removed_on_failure(fresh, prepare_output_folder(fresh)):
        (fresh / "result.json").write_text("{}")
    assert (fresh / "result.json").exists()


def test_only_if_empty_keeps_what_was_written_and_a_bug_is_not_cleaned_up(tmp_path: Path) -> None:
    out = tmp_path / "out"
    created = prepare_output_folder(out)
    with pytest.raises(ConfigError), removed_on_failure(out, created, only_if_empty=True):
        (out / "predictions").mkdir()
        raise ConfigError("bad target")
    assert (out / "predictions").is_dir()
    other = tmp_path / "other"
    with pytest.raises(ZeroDivisionError), removed_on_failure(other, prepare_output_folder(other)):
        _ = 1 / 0
    assert other.is_dir()  # a programming error stays loud and leaves the evidence


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_an_unwritable_place_is_a_one_line_config_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(ConfigError, match="cannot write"):
        prepare_output_folder(locked / "out")
    assert not (locked / "out").exists()
