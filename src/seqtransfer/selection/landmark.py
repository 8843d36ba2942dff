"""Landmark source selection (paper eq. 6-7, METHOD.md section 4).

The landmark is the source whose model starts the transfer chain: the one that is close to
the target, trained on many samples, and central in a dense, well-performing part of the
source graph. With the affinity ``w`` used as a distance (smaller = more similar),

    zeta_i  = number of training samples of s_i                         (informativeness)
    rho_i   = sum_{s_j connected to s_i} exp(-(w_ij / w_c)^2)            (density, eq. 6)
    gamma_i = rho_i * O(s_i)                                             (eq. 7)
    landmark = argmin_{s_i connected to t} w(s_i, t) / (zeta_i * gamma_i)

O(s_i) is the mean Dice of the source model on its own held-out test cases.

The ``leep`` score (:data:`SCORES`) replaces O in gamma by a transferability measured on the
target itself: ``T_i = exp(LEEP_i)``, the geometric-mean likelihood that the source model's
predictions (through LEEP's empirical conditional) give the target's labels on its labelled
cases, in (0, 1] like O. O rewards a source whose own task is easy (METHOD section 2, "Known
weakness"); T rewards a source whose output explains the target's labels. O still decides
whether a source model learned anything. The paper writes
a sum over K test cases; with K fixed for every source the ranking is the same, and the mean
keeps O in [0, 1] (METHOD.md section 4).

A source model that learned nothing (O below :data:`MIN_LEARNED_DICE`, "near 0") is not a
candidate (METHOD section 4): with O = 0 its score would be infinite, with O = 0.0005 it would be
a number that says nothing, and when every other source has O = 0 such a model would win. It
keeps its row in the score table with the reason it was left out; when no connected source
learned, :func:`select_landmark` says so instead of choosing.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import networkx as nx
import numpy as np

from seqtransfer.core.errors import ConfigError
from seqtransfer.selection._graph import edge_weight, edge_weights_among, require_node, require_sources
from seqtransfer.selection.errors import SelectionError

#: the landmark scores: eq. 7 as in the paper, or with O replaced by the transferability exp(LEEP)
SCORES = ("paper", "leep")

#: Held-out Dice below which a source model counts as having learned nothing. A convention
#: (a model that gets less than 1/20 of the overlap right predicts essentially none of the
#: structure), not a tuned value; ``select --min-source-dice`` changes it.
MIN_LEARNED_DICE = 0.05


def learned(dice: float | None, min_dice: float = MIN_LEARNED_DICE) -> bool:
    """Whether a source model with this held-out Dice learned its task (an undefined Dice did not)."""
    return dice is not None and math.isfinite(dice) and dice >= min_dice


@dataclass(frozen=True)
class LandmarkScore:
    """The terms of the landmark score of one source (eq. 6-7).

    Attributes:
        source: name of the source task s_i.
        w: affinity w(s_i, t) to the target (a distance).
        zeta: informativeness zeta_i, the number of training samples.
        rho: density rho_i among the sources (eq. 6).
        O: objective performance O(s_i), mean Dice on its own test cases.
        gamma: gamma_i = rho_i * O(s_i) (eq. 7).
        score: w / (zeta * gamma); smaller is better; ``inf`` when zeta * gamma == 0.
        excluded: why the source is not a landmark candidate (its model learned nothing), or None.
        T: the transferability exp(LEEP) that stands for O in gamma (the ``leep`` score), or None.
    """

    source: str
    w: float
    zeta: float
    rho: float
    O: float  # the paper's symbol
    gamma: float
    score: float
    excluded: str | None = None
    T: float | None = None  # as O


def informativeness(graph: nx.Graph, node: str) -> float:
    """Informativeness zeta_i of a source: its number of training samples (METHOD section 4).

    Args:
        graph: task graph whose nodes carry ``n_train``.
        node: the task.

    Returns:
        ``n_train`` as a float.

    Raises:
        SelectionError: the node is missing, or ``n_train`` is missing, not a number or < 0.
    """
    require_node(graph, node, "task")
    n = graph.nodes[node].get("n_train")
    if n is None:
        raise SelectionError(f"task {node!r} has no 'n_train' attribute (zeta of eq. 7)")
    if isinstance(n, bool) or not isinstance(n, numbers.Real) or not math.isfinite(n) or n < 0:
        raise SelectionError(f"task {node!r} has n_train {n!r}; expected a number >= 0")
    return float(n)


def _check_w_c(w_c: float) -> float:
    if isinstance(w_c, bool) or not isinstance(w_c, numbers.Real) or not math.isfinite(w_c) or w_c <= 0:
        raise ConfigError(f"w_c must be a finite number > 0, got {w_c!r}")
    return float(w_c)


def density(graph: nx.Graph, node: str, w_c: float, among: Collection[str] | None = None) -> float:
    """Density rho_i of a task in the graph (paper eq. 6).

    ``rho_i = sum_j exp(-(w_ij / w_c)^2)`` over the neighbours s_j of s_i, a Gaussian kernel
    on the affinity: close neighbours count almost 1, those far beyond ``w_c`` almost 0.

    Args:
        graph: task graph with edge ``weight`` = w.
        node: the task s_i.
        w_c: neighbourhood threshold, in the units of w (see :func:`default_w_c`).
        among: if given, only neighbours in this collection count (the sources, so that the
            target never adds to a source's density). Self-loops never count.

    Returns:
        rho_i >= 0; 0 for a task without (counted) neighbours.

    Raises:
        ConfigError: ``w_c`` is not a finite number > 0.
        SelectionError: the node is missing or a counted edge has an invalid weight.
    """
    w_c = _check_w_c(w_c)
    require_node(graph, node, "task")
    keep = None if among is None else frozenset(among)
    weights = [edge_weight(graph, node, j) for j in graph.neighbors(node) if j != node and (keep is None or j in keep)]
    if not weights:
        return 0.0
    ratio = np.asarray(weights, dtype=float) / w_c
    return float(np.sum(np.exp(-(ratio**2))))


def default_w_c(graph: nx.Graph, among: Collection[str] | None = None) -> float:
    """Default neighbourhood threshold w_c of eq. 6: the median edge weight of the source graph.

    The median is taken over the edges with both ends in ``among`` (the sources; every edge
    when None), so the target's edges do not move it. With it, a neighbour at the typical
    distance contributes exp(-1) ~ 0.37 to the density, and the scale follows the
    normalisation of w instead of being a fixed number.

    Args:
        graph: task graph with edge ``weight`` = w.
        among: the sources, or None for the whole graph.

    Returns:
        The median weight, > 0.

    Raises:
        ConfigError: there is no such edge, or the median is 0; pass ``w_c`` explicitly.
        SelectionError: an edge has an invalid weight.
    """
    weights = edge_weights_among(graph, among)
    if not weights:
        raise ConfigError("no edges among the sources to take the median weight from: pass w_c explicitly")
    median = float(np.median(weights))
    if median <= 0:
        raise ConfigError("the median edge weight among the sources is 0: pass w_c explicitly")
    return median


def _performance(graph: nx.Graph, source: str, performance: Mapping[str, float] | None) -> float:
    if performance is not None:
        if source not in performance:
            raise SelectionError(f"no objective performance O given for source {source!r}")
        value = performance[source]
        where = "performance"
    else:
        value = graph.nodes[source].get("dice")
        if value is None:
            raise SelectionError(
                f"source {source!r} has no 'dice' attribute and no performance mapping was given (O of eq. 7)"
            )
        where = "dice"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise SelectionError(f"source {source!r} has {where} {value!r}; expected a finite number >= 0")
    return float(value)


def _transferability(source: str, transferability: Mapping[str, float]) -> float:
    if source not in transferability:
        raise SelectionError(f"no transferability T (exp LEEP) given for source {source!r}")
    value = transferability[source]
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or not 0.0 <= value <= 1.0
    ):
        raise SelectionError(f"source {source!r} has transferability {value!r}; expected a number in [0, 1]")
    return float(value)


def landmark_scores(
    graph: nx.Graph,
    target: str,
    sources: Collection[str],
    performance: Mapping[str, float] | None = None,
    w_c: float | None = None,
    min_dice: float = MIN_LEARNED_DICE,
    transferability: Mapping[str, float] | None = None,
    unusable: Mapping[str, str] | None = None,
) -> dict[str, LandmarkScore]:
    """Landmark score ``w(s_i, t) / (zeta_i * gamma_i)`` of every source connected to the target.

    Implements eq. 6-7 (see the module docstring). Densities are taken among the sources
    only. A source with ``zeta_i * gamma_i == 0`` (no training samples, no neighbouring
    source, or O = 0) carries no evidence of being a good start: its score is ``inf``
    whatever w is. When no two sources share an edge every density is 0 and ``w_c`` is not
    needed.

    Args:
        graph: task graph; nodes carry ``n_train`` (and ``dice`` when ``performance`` is None),
            edges carry ``weight`` = w.
        target: the target task, a node of the graph.
        sources: the candidate sources (the protocol excludes the target's own site or
            collection); they must be nodes of the graph, the target excluded.
        performance: O(s_i) per source. When given it is the only place O is read from;
            otherwise O is the node attribute ``dice``.
        w_c: density threshold; default :func:`default_w_c` over the sources.
        min_dice: a source whose O is below this learned nothing: its row says so
            (``excluded``) and it is no candidate.
        transferability: T(s_i) per source, in [0, 1] (the ``leep`` score: exp(LEEP) on the
            target's labelled cases); when given, gamma = rho * T instead of rho * O.
        unusable: sources that are no candidates whatever their score, with the reason
            (``excluded``), e.g. no foreground in their labels when O is not measured.

    Returns:
        Scores keyed by source name, in name order; sources without an edge to the target
        get none (the dict is empty when no source is connected).

    Raises:
        SelectionError: target or a source not in the graph, target among the sources, or a
            connected source without a valid O, ``n_train`` or edge weight.
        ConfigError: ``w_c`` is not a finite number > 0, or the default cannot be formed.
    """
    require_node(graph, target, "target")
    source_set = require_sources(graph, target, sources)
    connected = sorted(s for s in source_set if graph.has_edge(s, target))
    if not connected:
        return {}
    if w_c is None:
        w_c = default_w_c(graph, source_set) if edge_weights_among(graph, source_set) else None
    else:
        w_c = _check_w_c(w_c)
    scores: dict[str, LandmarkScore] = {}
    for s in connected:
        w = edge_weight(graph, s, target)
        zeta = informativeness(graph, s)
        rho = 0.0 if w_c is None else density(graph, s, w_c, among=source_set)
        o = _performance(graph, s, performance)
        t = None if transferability is None else _transferability(s, transferability)
        gamma = rho * (o if t is None else t)
        denominator = zeta * gamma
        score = w / denominator if denominator > 0 else math.inf
        excluded = None if learned(o, min_dice) else f"did not learn (held-out Dice {o:.3g} < {min_dice:g})"
        excluded = (unusable or {}).get(s, excluded)
        scores[s] = LandmarkScore(
            source=s, w=w, zeta=zeta, rho=rho, O=o, gamma=gamma, score=score, excluded=excluded, T=t
        )
    return scores


def select_landmark(
    graph: nx.Graph,
    target: str,
    sources: Collection[str],
    performance: Mapping[str, float] | None = None,
    w_c: float | None = None,
    min_dice: float = MIN_LEARNED_DICE,
    transferability: Mapping[str, float] | None = None,
    unusable: Mapping[str, str] | None = None,
) -> tuple[str, dict[str, LandmarkScore]]:
    """The landmark source of a target: argmin of the landmark score (eq. 7).

    Ties (equal scores, including all ``inf``) go to the smallest name, so the choice is
    deterministic. Sources whose model learned nothing (O < ``min_dice``) are no candidates.

    Args:
        graph: task graph, as in :func:`landmark_scores`.
        target: the target task.
        sources: the candidate sources.
        performance: O(s_i) per source, or None to read the node attribute ``dice``.
        w_c: density threshold; default :func:`default_w_c` over the sources.
        min_dice: O below which a source model learned nothing.
        transferability: T per source for the ``leep`` score (see :func:`landmark_scores`).
        unusable: sources that are no candidates, with the reason (see :func:`landmark_scores`).

    Returns:
        The landmark's name and the scores of every connected source.

    Raises:
        SelectionError: as :func:`landmark_scores`, no source is connected to the target, or
            no connected source's model learned its task.
        ConfigError: as :func:`landmark_scores`, or a ``min_dice`` outside [0, 1].
    """
    if isinstance(min_dice, bool) or not isinstance(min_dice, numbers.Real) or not 0.0 <= min_dice <= 1.0:
        raise ConfigError(f"min_dice must be in [0, 1], got {min_dice!r}")
    scores = landmark_scores(
        graph,
        target,
        sources,
        performance=performance,
        w_c=w_c,
        min_dice=float(min_dice),
        transferability=transferability,
        unusable=unusable,
    )
    if not scores:
        raise SelectionError(f"target {target!r} has no edge to any of the {len(frozenset(sources))} sources")
    candidates = [s for s in scores.values() if s.excluded is None]
    if not candidates and unusable and all(s.source in unusable for s in scores.values()):
        raise SelectionError(f"target {target!r}: no connected source is usable ({next(iter(unusable.values()))})")
    if not candidates:
        best_o = max(scores.values(), key=lambda s: (s.O, s.source))
        raise SelectionError(
            f"target {target!r}: none of its {len(scores)} connected source models learned its task "
            f"(held-out Dice below {min_dice:g}; best {best_o.source} {best_o.O:.3g}): train the zoo longer "
            "or at a larger scale (zoo train --steps, --preset), or lower --min-source-dice"
        )
    best = min(candidates, key=lambda s: (s.score, s.source))
    return best.source, scores
