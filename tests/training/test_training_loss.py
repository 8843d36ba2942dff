"""Loss: Dice + cross-entropy, nnU-Net deep-supervision weights."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss

from seqtransfer.training.loss import SegmentationLoss, deep_supervision_weights


@pytest.mark.parametrize(("k", "expected"), [(1, [1.0]), (2, [2 / 3, 1 / 3]), (3, [4 / 7, 2 / 7, 1 / 7])])
def test_deep_supervision_weights(k, expected) -> None:
    assert deep_supervision_weights(k) == pytest.approx(expected)


def test_plain_output_is_monai_dice_ce() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 2, 8, 8, 8, generator=g)
    label = (torch.rand(2, 1, 8, 8, 8, generator=g) > 0.5).to(torch.uint8)
    expected = DiceCELoss(to_onehot_y=True, softmax=True)(logits, label.float())
    torch.testing.assert_close(SegmentationLoss()(logits, label), expected)


def test_deep_supervision_output_is_a_weighted_sum() -> None:
    g = torch.Generator().manual_seed(1)
    stacked = torch.randn(2, 3, 2, 8, 8, 8, generator=g)
    label = (torch.rand(2, 1, 8, 8, 8, generator=g) > 0.5).to(torch.uint8)
    loss = SegmentationLoss()
    w = deep_supervision_weights(3)
    expected = sum(w[i] * loss(stacked[:, i], label) for i in range(3))
    torch.testing.assert_close(loss(stacked, label), expected)


def test_a_confident_correct_prediction_scores_lower() -> None:
    label = torch.zeros(1, 1, 8, 8, 8, dtype=torch.uint8)
    label[..., 2:6, 2:6, 2:6] = 1
    onehot = torch.cat([1 - label, label], dim=1).float()
    good, bad = 10 * (2 * onehot - 1), -10 * (2 * onehot - 1)
    loss = SegmentationLoss()
    assert loss(good, label) < 0.01 < loss(bad, label)
