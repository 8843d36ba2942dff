"""Operations on a graph folder that write it: building or extending it, calibration."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import networkx as nx

from seqtransfer.core.atomic import removed_on_failure
from seqtransfer.core.errors import ConfigError
from seqtransfer.core.executor import Executor
from seqtransfer.core.progress import Progress
from seqtransfer.data.tasks import Task
from seqtransfer.graph.build import add_targets, build_graph, set_weights
from seqtransfer.graph.calibrate import CalibrationResult, Transfer, calibrate
from seqtransfer.graph.config import GraphConfig
from seqtransfer.graph.store import GraphStore


def build_graph_folder(
    tasks: Sequence[Task],
    out: str | Path,
    config: GraphConfig | None = None,
    targets: Sequence[str] = (),
    add: bool = False,
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> nx.Graph:
    """Build the graph of ``tasks`` in ``out`` (``seqtransfer graph build``), or with ``add``
    add the ``targets`` to the graph stored there (only their edges are computed).

    A failed build (a bad target, a full disk) leaves no half-built folder behind when it
    created ``out``; a graph that was there is left as it was.

    Raises:
        ConfigError: ``add`` without targets, unknown targets, no source left.
        OSError: ``out`` cannot be created.
    """
    if add and not targets:
        raise ConfigError("--add needs at least one --target")
    if add:
        return add_targets(out, tasks, targets, progress=progress, executor=executor)
    created = not Path(out).exists()
    Path(out).mkdir(parents=True, exist_ok=True)  # an unwritable place fails now, before any work
    with removed_on_failure(out, created):
        return build_graph(tasks, out, config, targets=targets, progress=progress, executor=executor)


def calibrate_graph(
    graph_dir: str | Path, transfers: Sequence[Transfer], n_trials: int = 50, seed: int = 0, objective: str = "within"
) -> CalibrationResult:
    """Calibrate alpha, beta on measured transfers and rewrite the graph's weights and parameters."""
    store = GraphStore(graph_dir)
    graph, config, h_scale, pca = store.load()
    result = calibrate(
        graph,
        transfers,
        h_scale=h_scale,
        alpha=config.alpha,
        beta=config.beta,
        n_trials=n_trials,
        seed=seed,
        objective=objective,
    )
    new_config = replace(config, alpha=result.alpha, beta=result.beta)
    set_weights(graph, new_config, h_scale)
    store.save(graph, new_config, h_scale=h_scale, pca=pca, extra={"calibration": asdict(result)})
    return result
