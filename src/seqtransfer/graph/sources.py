"""Which sources of a stored graph a target may use (METHOD section 7).

Kept apart from :mod:`seqtransfer.graph.build` so that reading a graph and selecting on it
(``seqtransfer select``) imports nothing of the affinity stack; ``graph.build`` re-exports it.
"""

from __future__ import annotations

import networkx as nx


def candidate_sources(graph: nx.Graph, target: str) -> set[str]:
    """The sources a target may use: source nodes of other sites (METHOD section 7)."""
    site = graph.nodes[target]["site"]
    return {n for n, d in graph.nodes(data=True) if d.get("role") == "source" and d.get("site") != site}


def source_pool(graph: nx.Graph, target: str, max_sources: int = 0) -> list[str]:
    """The sources competing for a target: the candidates with an edge to it, sorted by name;
    with ``max_sources = N`` only the N with the smallest w (a scaled-down run)."""
    sources = sorted(s for s in candidate_sources(graph, target) if graph.has_edge(s, target))
    if max_sources and len(sources) > max_sources:
        sources = sorted(sorted(sources, key=lambda s: (graph.edges[s, target]["weight"], s))[:max_sources])
    return sources
