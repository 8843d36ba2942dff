"""The paper's protocol made concrete for any datasets (METHOD section 7).

* :func:`protocol_targets`: the targets (one held-out site of the collection with the most
  sites, and every task of the other collections).
* :func:`draw_graph`: one graph per draw of the target's training cases. A target's edges
  are computed from its labelled training cases only, so each draw has its own target edges;
  the sources, their edges, the PCA and the cached features are shared with draw 0's graph.
* :func:`derived_graph`: draw 0's sources with target edges from given cases (the
  sample-size study's ``n`` labelled cases per draw).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from seqtransfer.core.progress import Progress
from seqtransfer.data.preprocess import PreprocessCache
from seqtransfer.data.tasks import Task
from seqtransfer.graph import GraphConfig, GraphStore, add_targets, build_graph

if TYPE_CHECKING:
    from seqtransfer.core.executor import Executor


def protocol_targets(tasks: Sequence[Task], per_collection: int = 0) -> list[str]:
    """The paper's targets, for any datasets.

    The held-out site is the last site (in name order) of the collection with the most
    sites (the tumour-like one); every task of the other collections is a target too (the
    tissue- and lesion-like ones). The remaining tasks are the sources.

    Args:
        tasks: every task.
        per_collection: keep only the first N targets (name order) of each collection; 0 keeps all.
    """
    by_collection: dict[str, list[Task]] = {}
    for task in tasks:
        by_collection.setdefault(task.collection, []).append(task)
    n_sites = {c: len({t.site for t in ts}) for c, ts in by_collection.items()}
    main = max(sorted(by_collection), key=lambda c: n_sites[c])
    held_out = sorted({t.site for t in by_collection[main]})[-1]
    chosen: dict[str, list[str]] = {main: sorted(t.name for t in by_collection[main] if t.site == held_out)}
    for collection, members in sorted(by_collection.items()):
        if collection != main:
            chosen[collection] = sorted(t.name for t in members)
    if per_collection > 0:
        chosen = {c: names[:per_collection] for c, names in chosen.items()}
    return sorted(n for names in chosen.values() for n in names)


def _complete(folder: Path) -> bool:
    """Whether a graph folder holds a graph and its parameters (an earlier run's: reused)."""
    store = GraphStore(folder)
    return store.graph_path.exists() and store.params_path.exists()


def draw_graph(
    base: Path,
    out: Path,
    tasks: Sequence[Task],
    targets: Sequence[str],
    config: GraphConfig,
    draw: int,
    cache: PreprocessCache,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> Path:
    """The graph of ``draw``: built for draw 0, derived from draw 0's graph otherwise.

    Derived graphs copy draw 0's sources (nodes, edges, PCA, H scale), link its features
    folder, and compute only their targets' edges (:func:`~seqtransfer.graph.add_targets`)
    from this draw's training cases. An existing complete graph folder is reused.

    Args:
        base: draw 0's graph folder.
        out: this draw's graph folder.
        tasks: every task.
        targets: the targets.
        config: graph parameters.
        draw: the draw.
        cache: preprocessing cache.
        executor: where the feature and pair shards run (default: in this process).
        progress: the graph build's progress events.

    Returns:
        The graph folder.
    """
    if _complete(out):
        return out
    draw_config = replace(config, target_draw=draw)
    if draw == 0:
        build_graph(tasks, out, draw_config, targets=targets, cache=cache, progress=progress, executor=executor)
        return out
    return derived_graph(base, out, tasks, targets, draw_config, cache, executor=executor, progress=progress)


def derived_graph(
    base: Path,
    out: Path,
    tasks: Sequence[Task],
    targets: Sequence[str],
    config: GraphConfig,
    cache: PreprocessCache,
    cases: Mapping[str, Sequence[str]] | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> Path:
    """Draw 0's sources with new target edges: from ``cases`` per target (default: the
    targets' cases of ``config``'s draw). An existing complete graph folder is reused."""
    if _complete(out):
        return out
    graph, _, h_scale, pca = GraphStore(base).load()
    graph = graph.subgraph([n for n, d in graph.nodes(data=True) if d.get("role") == "source"]).copy()
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    os.symlink((base / "features").resolve(), tmp / "features", target_is_directory=True)
    GraphStore(tmp).save(graph, config, h_scale=h_scale, pca=pca)
    add_targets(tmp, tasks, targets, cache=cache, progress=progress, executor=executor, cases=cases)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out
