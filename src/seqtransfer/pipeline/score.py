"""Scoring a model on a task's cases in their original voxel grid (nnU-Net's Dice).

Each case is predicted on the training grid (sliding window), the prediction is mapped back
through the inverse of the preprocessing (:func:`~seqtransfer.data.preprocess.restore_label`)
and compared with the original label file; predictions can be saved as NIfTI with the
original affine.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from seqtransfer.core.atomic import write_json
from seqtransfer.core.fetch import need
from seqtransfer.data.io import write_image
from seqtransfer.data.preprocess import restore_label
from seqtransfer.data.tasks import Task
from seqtransfer.evaluation.dice import dice_score, mean_dice
from seqtransfer.evaluation.inference import predict_volume
from seqtransfer.pipeline.workspace import Workspace


def score_cases(
    model: nn.Module,
    workspace: Workspace,
    task: Task,
    case_ids: Sequence[str],
    patch_size: Sequence[int],
    device: torch.device | str | None = None,
    save_dir: Path | None = None,
) -> dict[str, float]:
    """Dice of the model on each case, in the case's original grid.

    Args:
        model: the network.
        workspace: where the cases come from.
        task: the task scored (its channel and label values).
        case_ids: the cases.
        patch_size: the network's patch size.
        device: where to compute.
        save_dir: when given, each prediction is written there as ``CASE.nii.gz``
            (uint8, the original affine).

    Returns:
        Dice per case (NaN when prediction and ground truth are both empty).
    """
    scores: dict[str, float] = {}
    for case, (image, _) in zip(workspace.cases(task, case_ids), workspace.arrays(task, case_ids), strict=True):
        grid_prediction = predict_volume(model, image, patch_size, device)
        shape, box = workspace.cache.geometry(case)
        prediction = restore_label(grid_prediction, shape, box)
        reference, affine = workspace.original_label(task, case)
        scores[case.case_id] = dice_score(prediction, reference)
        if save_dir is not None:
            write_image(save_dir / f"{case.case_id}.nii.gz", prediction, affine)
    return scores


def score_test_sets(scores: dict[str, float], test_sets: Sequence[Sequence[str]]) -> tuple[float, list[float]]:
    """The target score: the mean over test sets of each set's mean Dice (METHOD section 6)."""
    per_set = [mean_dice(scores[c] for c in test_set) for test_set in test_sets]
    return float(np.nanmean(per_set)) if any(np.isfinite(per_set)) else float("nan"), per_set


def cached_scores(
    model_folder: Path,
    model: nn.Module,
    workspace: Workspace,
    task: Task,
    case_ids: Sequence[str],
    patch_size: Sequence[int],
    device: torch.device | str | None = None,
    save_dir: Path | None = None,
) -> dict[str, float]:
    """:func:`score_cases`, remembered in ``model_folder/scores/`` for the model's lifetime.

    A trained model's scores on a set of cases never change, and the protocol asks for the
    same ones many times (the zero-shot Dice of a landmark for every path and draw, a shared
    path prefix for every path through it). The file is keyed by the task, its label values
    and the content of the cases. With ``save_dir``, predictions are written (recomputed when
    any is missing).
    """
    blob = json.dumps(
        {
            "task": task.name,
            "labels": list(task.label_values),
            "cases": [workspace.cache.key(c) for c in workspace.cases(task, case_ids)],
        }
    )
    file = model_folder / "scores" / f"{hashlib.sha256(blob.encode()).hexdigest()[:20]}.json"
    need(file)
    if save_dir is not None:
        need(save_dir)
    have_predictions = save_dir is None or all((save_dir / f"{c}.nii.gz").exists() for c in case_ids)
    if file.exists() and have_predictions:
        try:
            saved = json.loads(file.read_text())
            return {c: (float("nan") if saved[c] is None else float(saved[c])) for c in case_ids}
        except (OSError, ValueError, KeyError, TypeError):
            pass
    scores = score_cases(model, workspace, task, case_ids, patch_size, device, save_dir=save_dir)
    write_json(file, {c: (v if v == v else None) for c, v in scores.items()})
    return scores
