"""``build_graph_folder``: what ``seqtransfer graph build`` does, callable from Python."""

from __future__ import annotations

from pathlib import Path

import pytest

from seqtransfer.core.errors import ConfigError, StoreError
from seqtransfer.graph.service import build_graph_folder


def test_a_failed_build_leaves_no_folder_it_created(tmp_path: Path) -> None:
    out = tmp_path / "new" / "graph"
    with pytest.raises(ConfigError, match="unknown target"):
        build_graph_folder([], out, targets=["Nope-T1-x"])
    assert not out.exists()


def test_a_failed_build_leaves_an_existing_folder_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "graph"
    out.mkdir()
    (out / "kept.txt").write_text("earlier")
    with pytest.raises(ConfigError, match="unknown target"):
        build_graph_folder([], out, targets=["Nope-T1-x"])
    assert (out / "kept.txt").read_text() == "earlier"


def test_adding_needs_targets_and_a_stored_graph(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least one --target"):
        build_graph_folder([], tmp_path / "g", add=True)
    with pytest.raises(StoreError, match="not found"):
        build_graph_folder([], tmp_path / "g", targets=["X"], add=True)
    assert not (tmp_path / "g").exists()
