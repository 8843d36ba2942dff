"""A stored selection (``selections/TARGET.json``) reads back as the Selection that was saved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seqtransfer.core.atomic import write_json
from seqtransfer.core.errors import ConfigError
from seqtransfer.graph.store import GraphStore
from seqtransfer.selection.run import Selection, stored_selection


def _selection() -> Selection:
    return Selection(
        target="T",
        landmark="A",
        path=["A", "B", "T"],
        objective=0.31,
        step_weights=[0.2, 0.3],
        direct_weight=0.6,
        lam=0.4,
        c_search=0.1,
        max_length=5,
        w_c=0.5,
        performance_source="uniform",
        landmark_scores=[{"source": "A", "score": 0.7}],
        score="leep",
    )


def test_a_saved_selection_reads_back(tmp_path: Path) -> None:
    assert stored_selection(tmp_path, "T") is None
    saved = _selection()
    write_json(GraphStore(tmp_path).selection_path("T"), saved.to_dict())
    assert stored_selection(tmp_path, "T") == saved


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "corrupt selection"),
        ("[]", "must be a JSON object"),
        ('{"landmark": "A"}', "selection without"),
        ("BAD_PATH", "task names"),
    ],
)
def test_a_corrupt_selection_is_named(tmp_path: Path, text: str, message: str) -> None:
    path = GraphStore(tmp_path).selection_path("T")
    path.parent.mkdir(parents=True)
    if text == "BAD_PATH":
        text = json.dumps({**_selection().to_dict(), "path": "A,T"})
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        stored_selection(tmp_path, "T")
    assert str(info.value).startswith(f"{path}: corrupt selection")
