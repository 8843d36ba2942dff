"""Transferability scores of a source model on a target's labelled cases.

:func:`measure_scores` gives LogME, LEEP and NCE of one source model (the protocol's baselines);
:func:`leep_transferability` gives T = exp(LEEP) of each source, the term that stands for O in
the ``leep`` landmark score (:mod:`seqtransfer.selection.landmark`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seqtransfer.core.progress import Progress, report
from seqtransfer.data.tasks import Task
from seqtransfer.pipeline.workspace import Workspace

#: voxels per class per case of the scores when the caller does not say
DEFAULT_VOXELS = 500


def measure_scores(
    workspace: Workspace,
    task: Task,
    case_ids: Sequence[str],
    model_folder: Path,
    per_class: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """LogME, LEEP and NCE of the source model in ``model_folder`` on ``case_ids`` of ``task``.

    Returns:
        ``{"logme", "leep", "nce", "voxels"}`` (a score may be NaN where it is undefined).
    """
    from seqtransfer.baselines.features import source_outputs
    from seqtransfer.baselines.scores import leep, logme, nce
    from seqtransfer.pipeline.zoo import load_model
    from seqtransfer.training.network import select_device

    device = select_device()
    model, network = load_model(model_folder, device)
    out = source_outputs(
        model, workspace.arrays(task, list(case_ids)), network.patch_size or (), per_class, rng, device
    )
    return {
        "logme": logme(out.features, out.labels),
        "leep": leep(out.probs, out.labels),
        "nce": nce(out.probs.argmax(axis=1), out.labels),
        "voxels": int(len(out.labels)),
    }


def transferability_from_leep(leep: float | None) -> float:
    """T = exp(LEEP), in (0, 1]; 0 for an undefined LEEP (no evidence of a good start)."""
    return math.exp(float(leep)) if leep is not None and math.isfinite(float(leep)) else 0.0


def leep_transferability(
    workspace: Workspace,
    task: Task,
    case_ids: Sequence[str],
    models: Mapping[str, Path],
    per_class: int = DEFAULT_VOXELS,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, float]:
    """T = exp(LEEP) of each source model (name -> model folder) on the target's labelled cases."""
    out = {}
    for i, (source, folder) in enumerate(sorted(models.items()), start=1):
        rng = np.random.default_rng([seed, sum(map(ord, source + task.name))])
        out[source] = transferability_from_leep(
            measure_scores(workspace, task, case_ids, folder, per_class, rng)["leep"]
        )
        report(progress, "", i, len(models))
    return out
