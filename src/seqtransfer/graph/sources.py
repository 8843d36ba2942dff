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
