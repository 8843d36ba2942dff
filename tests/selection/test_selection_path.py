"""Optimal transfer path (eq. 8-9) against a brute-force enumerator."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Collection

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqtransfer.core.errors import ConfigError
from seqtransfer.selection import (
    DEFAULT_C_SEARCH,
    PathResult,
    SelectionError,
    is_feasible,
    optimal_path,
    path_objective,
)

# ---------------------------------------------------------------------------------------------
# Independent reference: enumerate every candidate path, check eq. 9 by hand, evaluate eq. 8.


def reference_feasible(graph: nx.Graph, path: tuple[str, ...], sources: Collection[str], max_length: int) -> bool:
    length = len(path) - 1
    if not 1 <= length <= max_length or len(set(path)) != len(path):
        return False
    if not all(v in sources for v in path[1:-1]):
        return False
    if not all(graph.has_edge(a, b) for a, b in itertools.pairwise(path)):
        return False
    if length == 1:
        return True
    direct = graph[path[0]][path[-1]]["weight"]
    return all(graph[a][b]["weight"] < direct for a, b in itertools.pairwise(path))


def reference_objective(graph: nx.Graph, path: tuple[str, ...], lam: float, c_search: float) -> float:
    steps = [graph[a][b]["weight"] for a, b in itertools.pairwise(path)]
    length = len(steps)
    return lam * math.fsum(steps) / length + (1 - lam) * length * c_search


def brute_force_paths(
    graph: nx.Graph, landmark: str, target: str, sources: Collection[str], max_length: int
) -> list[tuple[str, ...]]:
    """Every feasible path, in (number of steps, name order) order."""
    middle = sorted(set(sources) - {landmark, target})
    found = []
    for k in range(max_length):
        for inner in itertools.permutations(middle, k):
            path = (landmark, *inner, target)
            if reference_feasible(graph, path, sources, max_length):
                found.append(path)
    return found


def brute_force_optimal_path(
    graph: nx.Graph, landmark: str, target: str, sources: Collection[str], lam: float, c_search: float, max_length: int
) -> tuple[float, list[tuple[str, ...]]]:
    """The least objective and every feasible path, each with its objective."""
    paths = brute_force_paths(graph, landmark, target, sources, max_length)
    best = min(reference_objective(graph, p, lam, c_search) for p in paths)
    return best, paths


# ---------------------------------------------------------------------------------------------
# Random graphs.

WEIGHT_GRID = [0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 1.0]


@st.composite
def path_problems(draw: st.DrawFn) -> dict:
    n = draw(st.integers(5, 10))
    # Names in a shuffled order, so name order and insertion order differ.
    names = draw(st.permutations([f"t{i}" for i in range(n)]))
    edge_probability = draw(st.floats(0.15, 1.0))
    weight_kind = draw(st.sampled_from(["grid", "uniform", "near_ties"]))
    if weight_kind == "grid":  # many exact ties of sums
        weight = st.sampled_from(WEIGHT_GRID)
    elif weight_kind == "uniform":
        weight = st.floats(0.0, 2.0, allow_nan=False)
    else:  # distinct by a few ulps to 1e-9
        base = draw(st.floats(0.1, 1.0))
        weight = st.builds(lambda k, eps: base + k * eps, st.integers(-3, 3), st.sampled_from([1e-15, 1e-12, 1e-9]))
    graph = nx.Graph()
    graph.add_nodes_from(names)
    for a, b in itertools.combinations(names, 2):
        if draw(st.floats(0.0, 1.0)) < edge_probability:
            graph.add_edge(a, b, weight=draw(weight))
    landmark, target = names[0], names[1]
    if draw(st.booleans()):  # a heavy direct jump, so that chains are feasible and often win
        heavy = {"grid": st.just(max(WEIGHT_GRID)), "uniform": st.floats(1.0, 2.0)}.get(weight_kind, weight)
        graph.add_edge(landmark, target, weight=draw(heavy))
    elif not graph.has_edge(landmark, target):
        graph.add_edge(landmark, target, weight=draw(weight))
    others = names[2:]
    if draw(st.booleans()):
        chosen = others
    else:
        chosen = draw(st.lists(st.sampled_from(others), unique=True, max_size=len(others)))
    sources = {landmark, *chosen}
    return {
        "graph": graph,
        "landmark": landmark,
        "target": target,
        "sources": sources,
        "lam": draw(st.one_of(st.floats(0.0, 1.0), st.just(1.0))),
        "c_search": draw(st.one_of(st.floats(0.0, 0.5), st.floats(0.0, 0.05), st.just(0.0))),
        "max_length": draw(st.integers(1, 5)),
    }


def check_result(problem: dict, result: PathResult) -> None:
    graph, sources, max_length = problem["graph"], problem["sources"], problem["max_length"]
    lam, c_search = problem["lam"], problem["c_search"]
    best, paths = brute_force_optimal_path(
        graph, problem["landmark"], problem["target"], sources, lam, c_search, max_length
    )
    assert result.path[0] == problem["landmark"] and result.path[-1] == problem["target"]
    assert result.path in paths
    assert is_feasible(graph, result.path, sources, max_length)
    assert set(result.path[1:-1]) <= sources
    assert result.length == len(result.path) - 1 <= max_length
    assert result.step_weights == tuple(graph[a][b]["weight"] for a, b in itertools.pairwise(result.path))
    assert result.objective == path_objective(graph, result.path, lam, c_search)
    assert abs(result.objective - best) <= 1e-12
    # Tie-break: the first path, by (steps, name order), within the package's tie tolerance.
    threshold = best + 1e-13 * max(1.0, abs(best))
    assert result.path == next(p for p in paths if reference_objective(graph, p, lam, c_search) <= threshold)


@settings(max_examples=400, deadline=None)
@given(path_problems())
def test_optimal_path_matches_brute_force(problem: dict) -> None:
    graph = problem["graph"]
    result = optimal_path(
        graph,
        problem["landmark"],
        problem["target"],
        problem["sources"],
        lam=problem["lam"],
        c_search=problem["c_search"],
        max_length=problem["max_length"],
    )
    check_result(problem, result)
    # is_feasible agrees with the reference on every candidate of the full search space.
    middle = sorted(set(graph) - {problem["landmark"], problem["target"]})
    for k in range(min(problem["max_length"], 3)):
        for inner in itertools.permutations(middle, k):
            path = (problem["landmark"], *inner, problem["target"])
            assert is_feasible(graph, path, problem["sources"], problem["max_length"]) == reference_feasible(
                graph, path, problem["sources"], problem["max_length"]
            )


@settings(max_examples=100, deadline=None)
@given(path_problems(), st.floats(0.0, 0.5))
def test_lambda_zero_is_direct(problem: dict, c_search: float) -> None:
    result = optimal_path(
        problem["graph"],
        problem["landmark"],
        problem["target"],
        problem["sources"],
        lam=0.0,
        c_search=c_search,
        max_length=problem["max_length"],
    )
    assert result.path == (problem["landmark"], problem["target"])
    assert result.length == 1


@settings(max_examples=150, deadline=None)
@given(path_problems())
def test_lambda_one_minimises_mean_step_weight(problem: dict) -> None:
    graph = problem["graph"]
    result = optimal_path(
        graph,
        problem["landmark"],
        problem["target"],
        problem["sources"],
        lam=1.0,
        c_search=0.0,
        max_length=problem["max_length"],
    )
    paths = brute_force_paths(graph, problem["landmark"], problem["target"], problem["sources"], problem["max_length"])
    least_mean = min(np.mean([graph[a][b]["weight"] for a, b in itertools.pairwise(p)]) for p in paths)
    assert result.objective == pytest.approx(least_mean, abs=1e-12)
    assert np.mean(result.step_weights) == pytest.approx(least_mean, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Constructions.


def chain_graph() -> nx.Graph:
    """L-T direct 1.0; L-B-T has a heavy last step; L-C-T is a fair chain; X is not a source."""
    g = nx.Graph()
    g.add_edge("L", "T", weight=1.0)
    g.add_edge("L", "B", weight=0.05)
    g.add_edge("B", "T", weight=1.2)  # heavier than the direct jump: L-B-T violates eq. 9
    g.add_edge("L", "C", weight=0.5)
    g.add_edge("C", "T", weight=0.5)
    g.add_edge("L", "X", weight=0.1)
    g.add_edge("X", "T", weight=0.1)
    return g


def test_edge_constraint_rejects_heavy_step() -> None:
    g = chain_graph()
    g["C"]["T"]["weight"] = 0.9  # L-C-T mean 0.7; without eq. 9, L-B-T (mean 0.625) would win
    assert not is_feasible(g, ("L", "B", "T"), {"B", "C"}, 5)
    result = optimal_path(g, "L", "T", {"B", "C"}, lam=1.0, c_search=0.0)
    assert result.path == ("L", "C", "T")
    assert result.objective == pytest.approx(0.7)
    # A step equal to the direct weight is not strictly below it.
    g["B"]["T"]["weight"] = 1.0
    assert not is_feasible(g, ("L", "B", "T"), {"B", "C"}, 5)
    assert optimal_path(g, "L", "T", {"B", "C"}, lam=1.0, c_search=0.0).path == ("L", "C", "T")


def test_intermediates_only_from_sources() -> None:
    g = chain_graph()
    # X gives the best chain (mean 0.1) but is not a source.
    result = optimal_path(g, "L", "T", {"L", "B", "C"}, lam=1.0, c_search=0.0)
    assert result.path == ("L", "C", "T")
    assert optimal_path(g, "L", "T", {"L", "B", "C", "X"}, lam=1.0, c_search=0.0).path == ("L", "X", "T")
    assert optimal_path(g, "L", "T", set(), lam=1.0, c_search=0.0).path == ("L", "T")


def test_max_length_respected() -> None:
    g = nx.Graph()
    g.add_edge("L", "T", weight=1.0)
    g.add_edge("L", "A", weight=0.9)
    g.add_edge("A", "T", weight=0.9)
    chain = ["L", "a", "b", "c", "d", "T"]
    for u, v in itertools.pairwise(chain):
        g.add_edge(u, v, weight=0.1)
    sources = {"A", "a", "b", "c", "d"}
    assert optimal_path(g, "L", "T", sources, lam=1.0, c_search=0.0, max_length=5).path == tuple(chain)
    assert optimal_path(g, "L", "T", sources, lam=1.0, c_search=0.0, max_length=4).path == ("L", "A", "T")
    assert optimal_path(g, "L", "T", sources, lam=1.0, c_search=0.0, max_length=1).path == ("L", "T")
    assert not is_feasible(g, tuple(chain), sources, 4)


def test_default_c_search_threshold() -> None:
    """With lambda = 0.4 and C = 0.1 a two-step chain needs a mean 0.15 below the direct weight."""
    assert DEFAULT_C_SEARCH == 0.1

    def two_step(mean_gap: float) -> tuple[str, ...]:
        g = nx.Graph()
        g.add_edge("L", "T", weight=0.8)
        g.add_edge("L", "M", weight=0.8 - mean_gap)
        g.add_edge("M", "T", weight=0.8 - mean_gap)
        return optimal_path(g, "L", "T", {"M"}).path

    assert two_step(0.16) == ("L", "M", "T")
    assert two_step(0.14) == ("L", "T")


def test_path_objective_by_hand() -> None:
    g = chain_graph()
    assert path_objective(g, ("L", "C", "T"), 0.4, 0.1) == pytest.approx(0.4 * 0.5 + 0.6 * 2 * 0.1)
    assert path_objective(g, ("L", "T"), 0.4, 0.1) == pytest.approx(0.4 * 1.0 + 0.6 * 0.1)
    with pytest.raises(SelectionError):
        path_objective(g, ("L",), 0.4, 0.1)
    with pytest.raises(SelectionError):
        path_objective(g, ("B", "C"), 0.4, 0.1)


def test_is_feasible_cases() -> None:
    g = chain_graph()
    sources = {"B", "C", "X"}
    assert is_feasible(g, ("L", "T"), set(), 1)
    assert is_feasible(g, ("L", "C", "T"), sources, 2)
    assert not is_feasible(g, ("L", "C", "T"), sources, 1)  # too long
    assert not is_feasible(g, ("L", "C", "T"), {"B"}, 5)  # C not a source
    assert not is_feasible(g, ("L", "C", "L", "T"), sources | {"L"}, 5)  # not simple
    assert not is_feasible(g, ("L", "C", "B", "T"), sources, 5)  # C-B is not an edge
    assert not is_feasible(g, ("L",), sources, 5)
    assert not is_feasible(g, ("L", "Q", "T"), sources | {"Q"}, 5)  # Q not in graph
    g.remove_edge("L", "T")
    assert not is_feasible(g, ("L", "C", "T"), sources, 5)  # no direct weight to compare with


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lam": -0.1},
        {"lam": 1.5},
        {"lam": math.nan},
        {"lam": True},
        {"c_search": -0.01},
        {"c_search": math.inf},
        {"max_length": 0},
        {"max_length": 2.5},
        {"max_length": True},
    ],
)
def test_bad_parameters(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        optimal_path(chain_graph(), "L", "T", {"C"}, **kwargs)


def test_bad_nodes() -> None:
    g = chain_graph()
    g.add_node("Z")
    with pytest.raises(SelectionError, match="'Q'"):
        optimal_path(g, "Q", "T", {"C"})
    with pytest.raises(SelectionError, match="'Q'"):
        optimal_path(g, "L", "Q", {"C"})
    with pytest.raises(SelectionError, match="no edge"):
        optimal_path(g, "Z", "T", {"C"})
    with pytest.raises(SelectionError, match="same task"):
        optimal_path(g, "L", "L", {"C"})
    with pytest.raises(SelectionError, match="own sources"):
        optimal_path(g, "L", "T", {"C", "T"})
    with pytest.raises(SelectionError, match="'Q'"):
        optimal_path(g, "L", "T", {"C", "Q"})
    g.add_edge("C", "X", weight=-1.0)
    with pytest.raises(SelectionError, match="weight"):
        optimal_path(g, "L", "T", {"C", "X"})


# ---------------------------------------------------------------------------------------------
# A dense graph of the size of the paper's source graph.


def dense_graph(n: int, seed: int) -> nx.Graph:
    rng = np.random.default_rng(seed)
    names = [f"task{i:03d}" for i in range(n)]
    weights = rng.uniform(0.2, 1.2, size=(n, n))
    g = nx.Graph()
    for i, j in itertools.combinations(range(n), 2):
        if rng.random() < 0.9:
            g.add_edge(names[i], names[j], weight=float(weights[i, j]))
    return g


@pytest.mark.parametrize(("lam", "c_search"), [(0.4, 0.1), (1.0, 0.0), (0.7, 0.02)])
def test_dense_graph(lam: float, c_search: float) -> None:
    g = dense_graph(150, seed=3)
    names = sorted(g)
    target = names[-1]
    sources = set(names[:-1])
    landmark = max((s for s in sources if g.has_edge(s, target)), key=lambda s: g[s][target]["weight"])
    start = time.perf_counter()
    result = optimal_path(g, landmark, target, sources, lam=lam, c_search=c_search, max_length=5)
    elapsed = time.perf_counter() - start
    print(f"dense 150 nodes, lam={lam}, c={c_search}: {result.length} steps in {elapsed * 1000:.1f} ms")
    assert is_feasible(g, result.path, sources, 5)
    assert result.objective <= path_objective(g, (landmark, target), lam, c_search)
