"""The source graph: tasks as nodes, affinity w as edge weight (METHOD section 3)."""

from seqtransfer.graph.build import add_targets, build_graph, candidate_sources, edge_allowed
from seqtransfer.graph.config import GraphConfig
from seqtransfer.graph.store import GraphStore

__all__ = ["GraphConfig", "GraphStore", "add_targets", "build_graph", "candidate_sources", "edge_allowed"]
