"""Dice: nnU-Net's formula and empty-mask policy, compared with MONAI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric

from seqtransfer.evaluation.dice import dice_per_label, dice_score, mean_dice


def _mask(*voxels: tuple[int, int, int], shape=(4, 4, 4)) -> np.ndarray:
    out = np.zeros(shape, dtype=np.uint8)
    for v in voxels:
        out[v] = 1
    return out


EMPTY = _mask()
ONE = _mask((0, 0, 0))


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        pytest.param(EMPTY, EMPTY, math.nan, id="both-empty-nan"),
        pytest.param(ONE, EMPTY, 0.0, id="empty-gt-nonempty-pred-zero"),
        pytest.param(EMPTY, ONE, 0.0, id="empty-pred-zero"),
        pytest.param(ONE, ONE, 1.0, id="perfect"),
        # TP 2, FP 1, FN 1: 4 / (4 + 1 + 1)
        pytest.param(
            _mask((0, 0, 0), (0, 0, 1), (1, 1, 1)), _mask((0, 0, 0), (0, 0, 1), (2, 2, 2)), 4 / 6, id="partial"
        ),
        # TP 1, FP 0, FN 3: 2 / (2 + 0 + 3)
        pytest.param(ONE, _mask((0, 0, 0), (0, 1, 0), (1, 0, 0), (3, 3, 3)), 2 / 5, id="under-segmented"),
    ],
)
def test_dice_edge_cases(prediction, reference, expected) -> None:
    value = dice_score(prediction, reference)
    if math.isnan(expected):
        assert math.isnan(value)
    else:
        assert value == pytest.approx(expected)


def test_dice_of_one_label_of_a_label_map() -> None:
    pred = np.array([[[0, 1, 2, 2]]])
    ref = np.array([[[0, 1, 1, 2]]])
    assert dice_score(pred, ref, label=1) == pytest.approx(2 / 3)
    assert dice_score(pred, ref, label=2) == pytest.approx(2 / 3)
    assert math.isnan(dice_score(pred, ref, label=3))
    assert dice_score(pred, ref) == pytest.approx(1.0)  # non-zero vs non-zero
    scores = dice_per_label(pred, ref, [1, 2, 3])
    assert list(scores) == [1, 2, 3] and math.isnan(scores[3])


@pytest.mark.parametrize(
    ("scores", "expected"),
    [([1.0, math.nan, 0.5], 0.75), ([0.2, 0.4], 0.3), ([math.nan, math.nan], math.nan), ([], math.nan)],
)
def test_mean_dice_is_a_nanmean(scores, expected) -> None:
    value = mean_dice(scores)
    assert (math.isnan(value) and math.isnan(expected)) or value == pytest.approx(expected)


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError):
        dice_score(np.zeros((2, 2, 2)), np.zeros((2, 2, 3)))


def _monai(prediction: np.ndarray, reference: np.ndarray, ignore_empty: bool) -> float:
    metric = DiceMetric(include_background=False, reduction="none", ignore_empty=ignore_empty)
    p = torch.from_numpy(prediction.astype(np.int64))
    r = torch.from_numpy(reference.astype(np.int64))
    onehot = lambda m: torch.stack([1 - m, m])[None].float()  # noqa: E731
    return float(metric(onehot(p), onehot(r))[0, 0])


def test_agrees_with_monai_when_ground_truth_is_not_empty() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        pred = (rng.random((6, 6, 6)) > 0.6).astype(np.uint8)
        ref = (rng.random((6, 6, 6)) > 0.6).astype(np.uint8)
        assert dice_score(pred, ref) == pytest.approx(_monai(pred, ref, ignore_empty=True))


def test_differs_from_monai_on_empty_ground_truth() -> None:
    # MONAI ignore_empty=True: NaN whenever the ground truth is empty; nnU-Net: 0 (false positives)
    assert math.isnan(_monai(ONE, EMPTY, ignore_empty=True))
    assert dice_score(ONE, EMPTY) == 0.0
    # both empty: NaN for both
    assert math.isnan(_monai(EMPTY, EMPTY, ignore_empty=True))
    assert math.isnan(dice_score(EMPTY, EMPTY))
