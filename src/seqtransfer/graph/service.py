"""Operations on a stored graph folder that change it (calibration)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from seqtransfer.graph.build import set_weights
from seqtransfer.graph.calibrate import CalibrationResult, Transfer, calibrate
from seqtransfer.graph.store import GraphStore


def calibrate_graph(graph_dir: str | Path, transfers: Sequence[Transfer], n_trials: int = 50, seed: int = 0, objective: str = "within") -> CalibrationResult:
    """Calibrate alpha, beta on measured transfers and rewrite the graph's weights and parameters."""
    store = GraphStore(graph_dir)
    graph, config, h_scale, pca = store.load()
    result = calibrate(graph, transfers, h_scale=h_scale, alpha=config.alpha, beta=config.beta, n_trials=n_trials, seed=seed, objective=objective)
    new_config = replace(config, alpha=result.alpha, beta=result.beta)
    set_weights(graph, new_config, h_scale)
    store.save(graph, new_config, h_scale=h_scale, pca=pca, extra={"calibration": asdict(result)})
    return result
