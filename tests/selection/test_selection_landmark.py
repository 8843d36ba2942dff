"""Landmark source selection (eq. 6-7) against hand and numpy computations."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest

from seqtransfer.core.errors import ConfigError, SeqTransferError
from seqtransfer.selection import (
    LandmarkScore,
    SelectionError,
    default_w_c,
    density,
    informativeness,
    landmark_scores,
    select_landmark,
)


def four_task_graph() -> nx.Graph:
    """Target T with sources A, B, C; C has no edge to T.

    Source graph: A-B 0.5, B-C 1.0. Target edges: A-T 0.4, B-T 0.8.
    """
    g = nx.Graph()
    g.add_node("A", n_train=10, dice=0.8)
    g.add_node("B", n_train=20, dice=0.5)
    g.add_node("C", n_train=40, dice=0.9)
    g.add_node("T", n_train=3)
    g.add_edge("A", "B", weight=0.5)
    g.add_edge("B", "C", weight=1.0)
    g.add_edge("A", "T", weight=0.4)
    g.add_edge("B", "T", weight=0.8)
    return g


SOURCES = {"A", "B", "C"}


def test_scores_by_hand() -> None:
    g = four_task_graph()
    scores = landmark_scores(g, "T", SOURCES, w_c=0.5)
    assert set(scores) == {"A", "B"}  # C is not connected to T
    rho_a = math.exp(-1.0)  # (0.5 / 0.5)^2 = 1
    rho_b = math.exp(-1.0) + math.exp(-4.0)  # A at 0.5, C at 1.0
    a, b = scores["A"], scores["B"]
    assert a == LandmarkScore(
        source="A",
        w=0.4,
        zeta=10.0,
        rho=pytest.approx(rho_a),
        O=0.8,
        gamma=pytest.approx(rho_a * 0.8),
        score=pytest.approx(0.4 / (10 * rho_a * 0.8)),
    )
    assert b.w == 0.8 and b.zeta == 20.0 and b.O == 0.5
    assert b.rho == pytest.approx(rho_b, rel=1e-15)
    assert b.gamma == pytest.approx(rho_b * 0.5, rel=1e-15)
    assert b.score == pytest.approx(0.8 / (20 * rho_b * 0.5), rel=1e-15)
    # A: 0.4 / (10 * 0.3679 * 0.8) = 0.136; B: 0.8 / (20 * 0.3862 * 0.5) = 0.207
    landmark, again = select_landmark(g, "T", SOURCES, w_c=0.5)
    assert landmark == "A"
    assert again == scores


def test_the_leep_score_puts_the_transferability_where_o_was() -> None:
    g = four_task_graph()
    rho_a = math.exp(-1.0)
    rho_b = math.exp(-1.0) + math.exp(-4.0)
    # A: 0.4 / (10 rho_a 0.2) = 0.544; B: 0.8 / (20 rho_b 0.9) = 0.115 -> B, where the paper's O chose A
    t = {"A": 0.2, "B": 0.9}
    landmark, scores = select_landmark(g, "T", SOURCES, w_c=0.5, transferability=t)
    assert landmark == "B"
    assert scores["A"].score == pytest.approx(0.4 / (10 * rho_a * 0.2), rel=1e-12) and scores["A"].T == 0.2
    assert scores["B"].gamma == pytest.approx(rho_b * 0.9, rel=1e-12) and scores["B"].O == 0.5  # O kept for "learned"
    g.nodes["B"]["dice"] = 0.01  # a model that learned nothing stays out, whatever its T
    assert select_landmark(g, "T", SOURCES, w_c=0.5, transferability=t)[0] == "A"
    for bad in ({"A": 0.2}, {"A": 0.2, "B": 1.5}, {"A": 0.2, "B": float("nan")}):
        with pytest.raises(SelectionError, match="transferability"):
            select_landmark(g, "T", SOURCES, w_c=0.5, transferability=bad)


def test_default_w_c_is_median_of_source_edges() -> None:
    g = four_task_graph()
    assert default_w_c(g, SOURCES) == pytest.approx(0.75)  # median of 0.5 and 1.0, not the T edges
    assert default_w_c(g) == pytest.approx(np.median([0.5, 1.0, 0.4, 0.8]))
    scores = landmark_scores(g, "T", SOURCES)
    assert scores["A"].rho == pytest.approx(math.exp(-((0.5 / 0.75) ** 2)))
    with pytest.raises(ConfigError):
        default_w_c(g, {"A", "C"})  # no edge between them


def test_density_matches_numpy() -> None:
    rng = np.random.default_rng(7)
    n = 12
    names = [f"s{i:02d}" for i in range(n)]
    weights = rng.uniform(0.05, 2.0, size=(n, n))
    weights = (weights + weights.T) / 2
    present = np.triu(rng.random((n, n)) < 0.6, k=1)
    present = present | present.T
    g = nx.Graph()
    g.add_nodes_from(names)
    for i in range(n):
        for j in range(i + 1, n):
            if present[i, j]:
                g.add_edge(names[i], names[j], weight=float(weights[i, j]))
    among_mask = rng.random(n) < 0.7
    among = {names[i] for i in range(n) if among_mask[i]}
    kernel = np.where(present, np.exp(-((weights / 0.6) ** 2)), 0.0)
    for i, name in enumerate(names):
        assert density(g, name, 0.6) == pytest.approx(kernel[i].sum(), rel=1e-12)
        assert density(g, name, 0.6, among=among) == pytest.approx(kernel[i][among_mask].sum(), rel=1e-12)


def test_density_ignores_self_loops_and_isolated_is_zero() -> None:
    g = nx.Graph()
    g.add_edge("A", "A", weight=0.0)
    g.add_node("B")
    assert density(g, "A", 1.0) == 0.0
    assert density(g, "B", 1.0) == 0.0


def test_tie_break_by_name() -> None:
    g = nx.Graph()
    for name in ("B", "A", "C"):
        g.add_node(name, n_train=5, dice=0.7)
    g.add_node("T", n_train=3)
    g.add_edge("A", "B", weight=0.5)
    g.add_edge("B", "C", weight=0.5)
    g.add_edge("A", "C", weight=0.5)
    for name in ("B", "A", "C"):
        g.add_edge(name, "T", weight=0.3)
    landmark, scores = select_landmark(g, "T", ["C", "B", "A"])
    assert scores["A"].score == scores["B"].score == scores["C"].score
    assert landmark == "A"


def test_performance_mapping_overrides_dice() -> None:
    g = four_task_graph()
    landmark, scores = select_landmark(g, "T", SOURCES, performance={"A": 0.1, "B": 0.9}, w_c=0.5)
    assert scores["A"].O == 0.1 and scores["B"].O == 0.9
    assert landmark == "B"  # A: 0.4 / (10 * 0.368 * 0.1) = 1.09; B: 0.8 / (20 * 0.386 * 0.9) = 0.115


def test_missing_performance_names_the_source() -> None:
    g = four_task_graph()
    del g.nodes["B"]["dice"]
    with pytest.raises(SelectionError, match="'B'"):
        landmark_scores(g, "T", SOURCES)
    with pytest.raises(SelectionError, match="'A'"):
        landmark_scores(four_task_graph(), "T", SOURCES, performance={"B": 0.5})
    # C is not connected to T: its O is never needed.
    assert set(landmark_scores(four_task_graph(), "T", SOURCES, performance={"A": 0.5, "B": 0.5})) == {"A", "B"}


@pytest.mark.parametrize(
    ("change", "expected_inf"),
    [
        (lambda g: g.nodes["A"].update(n_train=0), "A"),
        (lambda g: g.nodes["A"].update(dice=0.0), "A"),
        (lambda g: g.remove_edge("A", "B"), "A"),  # A loses its only source neighbour
    ],
)
def test_zero_denominator_gives_inf(change, expected_inf: str) -> None:
    g = four_task_graph()
    change(g)
    scores = landmark_scores(g, "T", SOURCES, w_c=0.5)
    assert scores[expected_inf].score == math.inf
    assert math.isfinite(scores["B"].score)
    assert select_landmark(g, "T", SOURCES, w_c=0.5)[0] == "B"


def test_single_source_without_source_edges() -> None:
    g = four_task_graph()
    scores = landmark_scores(g, "T", {"A"})  # no source-source edge: densities are 0, no w_c needed
    assert scores["A"].rho == 0.0 and scores["A"].score == math.inf
    assert select_landmark(g, "T", {"A"})[0] == "A"


def test_target_side_errors() -> None:
    g = four_task_graph()
    with pytest.raises(SelectionError, match="'X'"):
        landmark_scores(g, "X", SOURCES)
    with pytest.raises(SelectionError, match="'Z'"):
        landmark_scores(g, "T", SOURCES | {"Z"})
    with pytest.raises(SelectionError, match="own sources"):
        landmark_scores(g, "T", SOURCES | {"T"})
    assert landmark_scores(g, "T", {"C"}) == {}
    with pytest.raises(SelectionError, match="no edge to any"):
        select_landmark(g, "T", {"C"})
    assert issubclass(SelectionError, SeqTransferError)


@pytest.mark.parametrize("w_c", [0.0, -1.0, math.nan, math.inf, True])
def test_bad_w_c(w_c) -> None:
    with pytest.raises(ConfigError):
        landmark_scores(four_task_graph(), "T", SOURCES, w_c=w_c)
    with pytest.raises(ConfigError):
        density(four_task_graph(), "A", w_c)


def test_informativeness_and_bad_attributes() -> None:
    g = four_task_graph()
    assert informativeness(g, "C") == 40.0
    g.nodes["A"]["n_train"] = -1
    with pytest.raises(SelectionError, match="'A'"):
        informativeness(g, "A")
    del g.nodes["A"]["n_train"]
    with pytest.raises(SelectionError, match="n_train"):
        landmark_scores(g, "T", SOURCES)
    g = four_task_graph()
    g.edges["A", "T"]["weight"] = math.nan
    with pytest.raises(SelectionError, match="weight"):
        landmark_scores(g, "T", SOURCES)
