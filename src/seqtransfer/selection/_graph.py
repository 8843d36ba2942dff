"""Checked access to the task graph shared by the landmark and path modules."""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection

import networkx as nx

from seqtransfer.selection.errors import SelectionError


def require_node(graph: nx.Graph, node: str, role: str) -> None:
    """Raise :class:`SelectionError` unless ``node`` is a node of ``graph``."""
    if node not in graph:
        raise SelectionError(f"{role} {node!r} is not a node of the task graph")


def require_sources(graph: nx.Graph, target: str, sources: Collection[str]) -> frozenset[str]:
    """Check the caller's source set against the graph and return it as a frozenset.

    Raises:
        SelectionError: a source is not in the graph, or the target is among its sources.
    """
    source_set = frozenset(sources)
    missing = sorted(str(s) for s in source_set if s not in graph)
    if missing:
        shown = ", ".join(repr(s) for s in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise SelectionError(f"sources not in the task graph: {shown}{more}")
    if target in source_set:
        raise SelectionError(f"target {target!r} is listed among its own sources")
    return source_set


def edge_weight(graph: nx.Graph, u: str, v: str) -> float:
    """The affinity ``w(u, v)`` of an existing edge, checked to be a finite number >= 0.

    Raises:
        SelectionError: no such edge, or its ``weight`` is missing, not a number, negative
            or not finite.
    """
    data = graph.get_edge_data(u, v)
    if data is None:
        raise SelectionError(f"no edge between {u!r} and {v!r} in the task graph")
    w = data.get("weight")
    if w is None:
        raise SelectionError(f"edge ({u!r}, {v!r}) has no 'weight' attribute")
    if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w) or w < 0:
        raise SelectionError(f"edge ({u!r}, {v!r}) has weight {w!r}; expected a finite number >= 0")
    return float(w)


def edge_weights_among(graph: nx.Graph, among: Collection[str] | None) -> list[float]:
    """Weights of the edges (self-loops excluded) with both ends in ``among`` (all if None)."""
    if among is None:
        edges = ((u, v) for u, v in graph.edges() if u != v)
    else:
        keep = frozenset(among)
        edges = ((u, v) for u, v in graph.subgraph(n for n in keep if n in graph).edges() if u != v)
    return [edge_weight(graph, u, v) for u, v in edges]
