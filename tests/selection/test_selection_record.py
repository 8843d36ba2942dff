"""A selection is saved as ``selections/TARGET.json`` in one layout and read back from it."""

from __future__ import annotations

import json

import networkx as nx
import pytest

from seqtransfer.core.errors import ConfigError
from seqtransfer.selection.run import Selection, select_in_graph

#: the keys of ``selections/TARGET.json`` as every selection before the typed record wrote them
SAVED_KEYS = {
    *(
        "target",
        "landmark",
        "path",
        "objective",
        "step_weights",
        "direct_weight",
        "lambda",
        "c_search",
        "max_length",
        "w_c",
    ),
    *(
        "performance_source",
        "landmark_scores",
        "min_source_dice",
        "target_affinity_cases",
        "target_labelled_cases",
        "score",
    ),
}


def _selection() -> Selection:
    g = nx.Graph()
    for name, n in (("a", 30), ("b", 10), ("c", 20)):
        g.add_node(name, role="source", site=name, n_train=n)
    g.add_node("t", role="target", site="t", affinity_cases=["x", "y", "z"], n_cases=12)
    for name, w in (("a", 1.0), ("b", 0.4), ("c", 0.7)):
        g.add_edge(name, "t", weight=w)
    g.add_edge("a", "b", weight=0.3)
    g.add_edge("b", "c", weight=0.5)
    # c learned nothing: its row keeps an infinite score, saved as null
    return select_in_graph(g, "t", lam=0.4, performance={"a": 0.8, "b": 0.6, "c": 0.0})


def test_a_selection_is_saved_in_its_old_layout_and_read_back() -> None:
    selection = _selection()
    saved = json.loads(json.dumps(selection.to_dict()))
    assert set(saved) == SAVED_KEYS and saved["lambda"] == 0.4
    assert any(row["score"] is None for row in saved["landmark_scores"])  # strict JSON: no Infinity
    again = Selection.from_dict(saved)
    assert again.lam == 0.4 and again.path == selection.path and again.landmark == selection.landmark
    assert again.to_dict() == saved


def test_an_older_selection_file_gets_the_defaults_and_a_broken_one_is_named() -> None:
    saved = _selection().to_dict()
    older = {k: v for k, v in saved.items() if k not in ("score", "target_affinity_cases", "target_labelled_cases")}
    assert Selection.from_dict(older).score == "paper"
    with pytest.raises(ConfigError, match="selection without path"):
        Selection.from_dict({k: v for k, v in saved.items() if k != "path"})
