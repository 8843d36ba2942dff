"""The source graph: tasks as nodes, affinity w as edge weight (METHOD section 3).

Reading a stored graph (:class:`GraphStore`, :class:`GraphConfig`, :func:`candidate_sources`)
is imported at once; building one (:func:`build_graph`, :func:`add_targets`,
:func:`edge_allowed`, from :mod:`seqtransfer.graph.build`) only on first use, since building
imports the affinity and preprocessing stacks (POT, torch, MONAI) that a command which only
reads a graph, such as ``seqtransfer select``, does not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from seqtransfer.core.lazy import lazy_getattr
from seqtransfer.graph.config import GraphConfig
from seqtransfer.graph.sources import candidate_sources
from seqtransfer.graph.store import GraphStore

if TYPE_CHECKING:
    from seqtransfer.graph.build import add_targets, build_graph, edge_allowed

_FROM_BUILD = ("add_targets", "build_graph", "edge_allowed")

__all__ = ["GraphConfig", "GraphStore", "add_targets", "build_graph", "candidate_sources", "edge_allowed"]

# the building functions, imported from seqtransfer.graph.build on first use
__getattr__ = lazy_getattr(__name__, dict.fromkeys(_FROM_BUILD, "seqtransfer.graph.build"))
