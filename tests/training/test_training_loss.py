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


def test_batch_dice_is_one_dice_over_the_batch_and_a_train_config_option() -> None:
    """batch=True: one Dice over every patch of the batch (checked against a direct formula)."""
    import torch

    from seqtransfer.training.config import TrainConfig
    from seqtransfer.training.loss import SegmentationLoss

    torch.manual_seed(0)
    logits = torch.randn(2, 2, 4, 4, 4)
    target = torch.zeros(2, 1, 4, 4, 4)
    target[0, 0, :2] = 1  # the second patch holds no foreground
    p = torch.softmax(logits, dim=1)
    onehot = torch.cat([1 - target, target], dim=1)
    ce = torch.nn.functional.cross_entropy(logits, target[:, 0].long())
    eps = 1e-5
    per_patch = 1 - (2 * (p * onehot).sum((2, 3, 4)) + eps) / (p.sum((2, 3, 4)) + onehot.sum((2, 3, 4)) + eps)
    batch = 1 - (2 * (p * onehot).sum((0, 2, 3, 4)) + eps) / (p.sum((0, 2, 3, 4)) + onehot.sum((0, 2, 3, 4)) + eps)
    assert torch.allclose(SegmentationLoss()(logits, target), per_patch.mean() + ce, atol=1e-5)
    assert torch.allclose(SegmentationLoss(batch=True)(logits, target), batch.mean() + ce, atol=1e-5)
    assert "batch_dice" not in TrainConfig(steps=1).to_dict()  # keys of earlier models unchanged
    assert TrainConfig(steps=1, batch_dice=True).to_dict()["batch_dice"] is True
