"""Dice as nnU-Net computes it (METHOD section 6, ECOSYSTEM "Dice").

    Dice = 2 TP / (2 TP + FP + FN)

Policy for empty masks, the same as nnU-Net's ``compute_metrics``:

* both prediction and ground truth empty: NaN (nothing to segment, nothing predicted: the case
  carries no information and is left out of means);
* ground truth empty, prediction not empty: 0 (every predicted voxel is a false positive);
* ground truth not empty, prediction empty: 0.

Means use ``nanmean``; the mean of no finite value is NaN.

MONAI's ``DiceMetric(ignore_empty=True)`` differs in the second case: it returns NaN whenever
the ground truth is empty, whatever the prediction, so false positives on empty cases are
never penalised (``ignore_empty=False`` gives 1 when both are empty instead). Use the
functions here to compare with nnU-Net's ``summary.json``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np


def dice_score(prediction: np.ndarray, reference: np.ndarray, label: int | None = None) -> float:
    """Dice of one structure, nnU-Net's policy for empty masks (module docstring).

    Args:
        prediction: predicted mask or label map.
        reference: ground-truth mask or label map, same shape.
        label: the class scored (``map == label``); the non-zero voxels when None.

    Returns:
        Dice in [0, 1], or NaN when both masks are empty.

    Raises:
        ValueError: the shapes differ.
    """
    pred = np.asarray(prediction)
    ref = np.asarray(reference)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    p = pred != 0 if label is None else pred == label
    r = ref != 0 if label is None else ref == label
    tp = int(np.count_nonzero(p & r))
    fp = int(np.count_nonzero(p & ~r))
    fn = int(np.count_nonzero(~p & r))
    denominator = 2 * tp + fp + fn
    if denominator == 0:
        return float("nan")
    return 2.0 * tp / denominator


def dice_per_label(prediction: np.ndarray, reference: np.ndarray, labels: Sequence[int]) -> dict[int, float]:
    """:func:`dice_score` of each of ``labels``."""
    return {int(c): dice_score(prediction, reference, int(c)) for c in labels}


def mean_dice(scores: Iterable[float]) -> float:
    """``nanmean`` of Dice scores; NaN (without a warning) when none is finite."""
    values = np.asarray(list(scores), dtype=np.float64)
    if values.size == 0 or np.all(np.isnan(values)):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values))
