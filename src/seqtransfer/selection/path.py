"""Optimal sequential transfer path (paper eq. 8-9, METHOD.md section 5).

A path ``P = (v_0 = landmark, v_1, ..., v_l = target)`` is a simple path of the task graph
with ``1 <= l <= L_max``. Its cost (eq. 8) trades the mean step affinity against the number
of transfer steps,

    L(P) = lambda * (1/l) * sum_{i<l} w(v_i, v_{i+1}) + (1 - lambda) * l * C_search,

under the constraint (eq. 9) that for ``l >= 2`` every step is strictly shorter than the
direct jump, ``w(v_i, v_{i+1}) < w(v_0, v_l)``; the direct transfer (``l = 1``) is always
feasible. Intermediate nodes must be sources (never a task of the target's site or
collection).

:func:`optimal_path` is exact. For a fixed ``l`` the cost is an increasing function of the
path sum, so the problem is a minimum-sum simple path with exactly ``l`` edges for each
``l``. Minimum-cost *walks* with exactly ``h`` edges to the target, computed by a layered
(node, hops-remaining) dynamic programme over the allowed edges, are a lower bound on every
simple completion; a depth-first branch and bound over simple paths prunes with that bound.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from itertools import pairwise

import networkx as nx
import numpy as np

from seqtransfer.core.errors import ConfigError
from seqtransfer.selection._graph import edge_weight, require_node, require_sources
from seqtransfer.selection.config import SelectionConfig
from seqtransfer.selection.errors import SelectionError

DEFAULT_LAMBDA: float = SelectionConfig.lam
"""lambda of eq. 8: the weight of the mean step affinity; 0.4 is the paper's best (Table III)."""

DEFAULT_MAX_LENGTH: int = SelectionConfig.max_length
"""L_max: the largest number of transfer steps of a path (METHOD.md section 5)."""

DEFAULT_C_SEARCH: float = SelectionConfig.c_search
"""C_search of eq. 8: the cost of one transfer step, in the units of the affinity w.

w is normalised so that typical edge weights are O(0.5-1): ``w = alpha * H / H_scale +
beta * (1 - R)`` with H_scale the median image distance H over the source graph and
``alpha + beta = 1`` by default (METHOD.md section 2), and ``1 - R`` in [0, 1].

A path with ``l`` steps and mean step weight ``m_l`` beats the direct transfer of weight
``w_0`` when

    lambda * m_l + (1 - lambda) * l * C  <  lambda * w_0 + (1 - lambda) * C
    <=>  lambda * (w_0 - m_l)  >  (1 - lambda) * (l - 1) * C
    <=>  w_0 - m_l  >  (l - 1) * (1 - lambda) / lambda * C.

With lambda = 0.4, ``(1 - lambda) / lambda = 1.5``: each extra step must lower the mean step
weight by ``1.5 * C = 0.15`` below the direct weight (0.15 for two steps, 0.30 for three),
i.e. 15-30 % of a typical weight: only a clearly closer chain is worth the extra training
steps, while a chain through near-identical tasks (same modality and objective at another
site) still wins.
"""

# Objectives within this relative distance of the optimum count as ties (resolved by fewer
# steps, then name order): it absorbs the rounding of sums taken in different orders
# (about 1e-15 relative) and nothing that could matter.
_TIE_RTOL = 1e-13


@dataclass(frozen=True)
class PathResult:
    """An optimal sequential transfer path.

    Attributes:
        path: task names from the landmark to the target, both included.
        objective: L(P) of eq. 8.
        length: number of transfer steps l = len(path) - 1.
        step_weights: w(v_i, v_{i+1}) of each step, in path order.
    """

    path: tuple[str, ...]
    objective: float
    length: int
    step_weights: tuple[float, ...]


def _check_parameters(lam: float, c_search: float) -> tuple[float, float]:
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not 0.0 <= lam <= 1.0:
        raise ConfigError(f"lambda must be a number in [0, 1], got {lam!r}")
    if (
        isinstance(c_search, bool)
        or not isinstance(c_search, numbers.Real)
        or not math.isfinite(c_search)
        or c_search < 0
    ):
        raise ConfigError(f"c_search must be a finite number >= 0, got {c_search!r}")
    return float(lam), float(c_search)


def _check_max_length(max_length: int) -> int:
    if isinstance(max_length, bool) or not isinstance(max_length, numbers.Integral) or max_length < 1:
        raise ConfigError(f"max_length must be an integer >= 1, got {max_length!r}")
    return int(max_length)


def _objective(total: float, length: int, lam: float, c_search: float) -> float:
    # The single place eq. 8 is evaluated, so the search and path_objective agree bit for bit.
    return lam * (total / length) + (1.0 - lam) * length * c_search


def _path_sum(weights: Sequence[float]) -> float:
    total = 0.0
    for w in weights:  # left to right, the order the search accumulates in
        total += w
    return total


def path_objective(graph: nx.Graph, path: Sequence[str], lam: float, c_search: float) -> float:
    """Cost of a transfer path (paper eq. 8).

    ``L(P) = lam * (1/l) * sum_i w(v_i, v_{i+1}) + (1 - lam) * l * c_search`` with
    ``l = len(path) - 1``. Feasibility (eq. 9) is not checked: see :func:`is_feasible`.

    Args:
        graph: task graph with edge ``weight`` = w.
        path: task names from the landmark to the target, at least two.
        lam: lambda in [0, 1].
        c_search: cost of one step, >= 0, in the units of w.

    Returns:
        The cost L(P).

    Raises:
        ConfigError: ``lam`` or ``c_search`` out of range.
        SelectionError: fewer than two nodes, or a consecutive pair is not an edge.
    """
    lam, c_search = _check_parameters(lam, c_search)
    nodes = tuple(path)
    if len(nodes) < 2:
        raise SelectionError(f"a transfer path needs at least two tasks, got {list(nodes)!r}")
    steps = [edge_weight(graph, a, b) for a, b in pairwise(nodes)]
    return _objective(_path_sum(steps), len(steps), lam, c_search)


def is_feasible(graph: nx.Graph, path: Sequence[str], sources: Collection[str], max_length: int) -> bool:
    """Whether a path satisfies the constraints of eq. 9 and METHOD.md section 5.

    Feasible means: a simple path of ``1 <= l <= max_length`` steps whose consecutive pairs
    are edges of the graph, whose intermediate nodes are all in ``sources``, and, for
    ``l >= 2``, whose every step weight is strictly below the direct weight
    ``w(v_0, v_l)`` (so the direct edge must exist). The direct transfer (``l = 1``) is
    feasible whenever the edge exists.

    Args:
        graph: task graph with edge ``weight`` = w.
        path: task names from the landmark to the target.
        sources: the tasks allowed as intermediates.
        max_length: L_max, >= 1.

    Returns:
        True when every constraint holds.

    Raises:
        ConfigError: ``max_length`` is not an integer >= 1.
        SelectionError: an edge on the path has an invalid weight.
    """
    max_length = _check_max_length(max_length)
    nodes = tuple(path)
    length = len(nodes) - 1
    if not 1 <= length <= max_length or len(set(nodes)) != len(nodes):
        return False
    if any(n not in graph for n in nodes):
        return False
    source_set = frozenset(sources)
    if any(n not in source_set for n in nodes[1:-1]):
        return False
    pairs = list(pairwise(nodes))
    if not all(graph.has_edge(a, b) for a, b in pairs):
        return False
    if length == 1:
        return True
    if not graph.has_edge(nodes[0], nodes[-1]):
        return False
    direct = edge_weight(graph, nodes[0], nodes[-1])
    return all(edge_weight(graph, a, b) < direct for a, b in pairs)


class _Search:
    """Branch and bound over simple paths landmark -> intermediates -> target.

    Intermediates are indexed 0..m-1 in name order, so visiting children in index order
    enumerates the paths of one length in lexicographic order.
    """

    def __init__(
        self,
        graph: nx.Graph,
        landmark: str,
        target: str,
        intermediates: list[str],
        direct: float,
        lam: float,
        c_search: float,
        max_length: int,
    ) -> None:
        self.names = intermediates
        self.lam = lam
        self.c_search = c_search
        m = len(intermediates)
        index = {name: i for i, name in enumerate(intermediates)}
        inf = math.inf
        # Only edges strictly lighter than the direct jump can be steps of a longer path (eq. 9).
        self.step = np.full((m, m), inf)
        self.from_landmark = np.full(m, inf)
        self.to_target = np.full(m, inf)
        for i, u in enumerate(intermediates):
            for v in graph.neighbors(u):
                if v == u or not (v in index or v == landmark or v == target):
                    continue
                w = edge_weight(graph, u, v)
                if not w < direct:
                    continue
                if v in index:
                    self.step[i, index[v]] = w
                elif v == landmark:
                    self.from_landmark[i] = w
                elif v == target:
                    self.to_target[i] = w
        self.max_length = min(max_length, m + 1)
        # bound[h][i]: least cost of a walk from intermediate i to the target with exactly h
        # edges through intermediates. A walk may revisit nodes, so it bounds every simple
        # completion from below.
        self.bound = np.full((self.max_length + 1, m), inf)
        self.landmark_bound = np.full(self.max_length + 1, inf)
        if m:
            self.bound[1] = self.to_target
            for h in range(2, self.max_length + 1):
                self.bound[h] = np.min(self.step + self.bound[h - 1][None, :], axis=1)
                self.landmark_bound[h] = float(np.min(self.from_landmark + self.bound[h - 1]))
        self.neighbours = [np.flatnonzero(np.isfinite(self.step[i])) for i in range(m)]
        self.landmark_neighbours = np.flatnonzero(np.isfinite(self.from_landmark))
        self._best = math.inf  # phase 1 incumbent
        self._visited = np.zeros(m, dtype=bool)  # intermediates on the current partial path

    def _objective_bound(self, cost: np.ndarray | float, length: int) -> np.ndarray | float:
        return self.lam * (cost / length) + (1.0 - self.lam) * length * self.c_search

    # Phase 1: the optimal objective, children tried in order of their bound.

    def best_objective(self, incumbent: float) -> float:
        """The least objective over paths of 2..max_length steps, or ``incumbent`` if lower."""
        self._best = incumbent
        for length in range(2, self.max_length + 1):
            if not self._objective_bound(self.landmark_bound[length], length) < self._best:
                continue
            self._visited = np.zeros(len(self.names), dtype=bool)
            self._improve(self.landmark_neighbours, self.from_landmark, length, length, 0.0)
        return self._best

    def _improve(self, children: np.ndarray, weights: np.ndarray, length: int, remaining: int, cost: float) -> None:
        # `remaining` counts the steps left from the current node; children are one step away.
        if children.size == 0:
            return
        child_weights = weights[children]
        keys = child_weights + self.bound[remaining - 1][children]
        bounds = self._objective_bound(cost + keys, length)
        keep = bounds < self._best
        order = np.argsort(keys[keep], kind="stable")
        for child, w, key in zip(children[keep][order], child_weights[keep][order], keys[keep][order], strict=True):
            if not self._objective_bound(cost + key, length) < self._best:
                break
            if self._visited[child]:
                continue
            new_cost = cost + w
            if remaining == 2:
                value = _objective(new_cost + self.to_target[child], length, self.lam, self.c_search)
                if value < self._best:
                    self._best = value
                continue
            self._visited[child] = True
            self._improve(self.neighbours[child], self.step[child], length, remaining - 1, new_cost)
            self._visited[child] = False

    # Phase 2: the first path, by (steps, name order), within the tie tolerance of the optimum.

    def first_within(self, threshold: float) -> list[int] | None:
        """Indices of the intermediates of the first path whose objective is <= threshold."""
        for length in range(2, self.max_length + 1):
            if not self._objective_bound(self.landmark_bound[length], length) <= threshold:
                continue
            self._visited = np.zeros(len(self.names), dtype=bool)
            found = self._first(self.landmark_neighbours, self.from_landmark, length, length, 0.0, threshold, [])
            if found is not None:
                return found
        return None

    def _first(
        self,
        children: np.ndarray,
        weights: np.ndarray,
        length: int,
        remaining: int,
        cost: float,
        threshold: float,
        prefix: list[int],
    ) -> list[int] | None:
        if children.size == 0:
            return None
        child_weights = weights[children]
        bounds = self._objective_bound(cost + child_weights + self.bound[remaining - 1][children], length)
        keep = bounds <= threshold
        for child, w in zip(children[keep], child_weights[keep], strict=True):
            if self._visited[child]:
                continue
            new_cost = cost + w
            if remaining == 2:
                value = _objective(new_cost + self.to_target[child], length, self.lam, self.c_search)
                if value <= threshold:
                    return [*prefix, int(child)]
                continue
            self._visited[child] = True
            found = self._first(
                self.neighbours[child],
                self.step[child],
                length,
                remaining - 1,
                new_cost,
                threshold,
                [*prefix, int(child)],
            )
            self._visited[child] = False
            if found is not None:
                return found
        return None


def optimal_path(
    graph: nx.Graph,
    landmark: str,
    target: str,
    sources: Collection[str],
    lam: float = DEFAULT_LAMBDA,
    c_search: float = DEFAULT_C_SEARCH,
    max_length: int = DEFAULT_MAX_LENGTH,
) -> PathResult:
    """The exact minimiser of eq. 8 over the feasible paths of eq. 9.

    Among the paths that satisfy :func:`is_feasible`, returns one of least
    :func:`path_objective`. Ties go to fewer steps, then to the lexicographically smallest
    sequence of names; objectives within a relative 1e-13 of the optimum count as ties, so
    sums that are equal but rounded differently do not decide. With ``lam = 0`` the result
    is the direct transfer.

    The search (see the module docstring) first finds the optimal objective by branch and
    bound, trying children in order of their lower bound, then walks the paths in
    tie-break order to the first one within the tolerance; both prune with the exact-hop
    walk bound, so the result is exact and fast (tens of milliseconds on a dense graph of
    150 tasks with ``max_length = 5``, mostly spent reading the edge weights).

    Args:
        graph: task graph with edge ``weight`` = w (finite, >= 0).
        landmark: the start v_0, e.g. from :func:`~seqtransfer.selection.select_landmark`.
        target: the end v_l.
        sources: the tasks allowed as intermediates (the landmark need not be listed).
        lam: lambda of eq. 8, in [0, 1].
        c_search: cost of one step, >= 0, in the units of w (see :data:`DEFAULT_C_SEARCH`).
        max_length: L_max, the largest number of steps, >= 1.

    Returns:
        The optimal path, its objective, number of steps and step weights.

    Raises:
        ConfigError: ``lam``, ``c_search`` or ``max_length`` out of range.
        SelectionError: landmark or target not in the graph, equal, or not adjacent; a
            source not in the graph; the target among the sources; an invalid edge weight.
    """
    lam, c_search = _check_parameters(lam, c_search)
    max_length = _check_max_length(max_length)
    require_node(graph, landmark, "landmark")
    require_node(graph, target, "target")
    if landmark == target:
        raise SelectionError(f"landmark and target are the same task {target!r}")
    if not graph.has_edge(landmark, target):
        raise SelectionError(f"landmark {landmark!r} has no edge to target {target!r}; the direct transfer must exist")
    source_set = require_sources(graph, target, sources)
    direct = edge_weight(graph, landmark, target)
    direct_objective = _objective(direct, 1, lam, c_search)

    chosen: tuple[str, ...] = (landmark, target)
    # With lam = 0 the cost is l * c_search: the direct transfer is optimal, and first on ties.
    if lam > 0 and max_length > 1:
        search = _Search(graph, landmark, target, sorted(source_set - {landmark}), direct, lam, c_search, max_length)
        best = search.best_objective(direct_objective)
        threshold = best + _TIE_RTOL * max(1.0, abs(best))
        if not direct_objective <= threshold:
            middle = search.first_within(threshold)
            if middle is None:  # phase 1 found a path with objective `best`, so phase 2 must
                raise AssertionError("optimal_path: the optimum of phase 1 was not found again")
            chosen = (landmark, *(search.names[i] for i in middle), target)
    steps = tuple(edge_weight(graph, a, b) for a, b in pairwise(chosen))
    return PathResult(
        path=chosen,
        objective=_objective(_path_sum(steps), len(steps), lam, c_search),
        length=len(steps),
        step_weights=steps,
    )
