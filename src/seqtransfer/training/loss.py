"""Segmentation loss: Dice + cross-entropy, optionally deeply supervised (METHOD section 6)."""

from __future__ import annotations

import torch
from monai.losses import DiceCELoss
from torch import nn


def deep_supervision_weights(outputs: int) -> list[float]:
    """nnU-Net's deep-supervision weights: ``1 / 2**i`` for output i, normalised to sum 1.

    Output 0 is the full-resolution prediction. (nnU-Net also zeroes the lowest decoder
    output; the networks of :mod:`seqtransfer.training.network` do not build that head.)
    """
    raw = [0.5**i for i in range(outputs)]
    total = sum(raw)
    return [w / total for w in raw]


class SegmentationLoss(nn.Module):
    """Dice + cross-entropy (MONAI ``DiceCELoss(to_onehot_y=True, softmax=True)``).

    Dice and cross-entropy have weight 1 each, as in nnU-Net; ``batch=True`` computes the Dice
    over the whole batch instead of per patch. Deeply supervised output (a
    DynUNet in training mode: ``[B, K, C, X, Y, Z]``, every output at full resolution) is
    scored per output and summed with :func:`deep_supervision_weights`; plain output
    ``[B, C, X, Y, Z]`` is scored directly.
    """

    def __init__(self, batch: bool = False) -> None:
        super().__init__()
        # batch=True: one Dice over the whole batch (nnU-Net's "batch dice" for 3-D), which a
        # patch without foreground cannot drive to an empty prediction on its own
        self.dice_ce = DiceCELoss(to_onehot_y=True, softmax=True, batch=batch)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``output`` logits against the label map ``target``.

        Args:
            output: logits ``[B, C, X, Y, Z]`` or stacked deep-supervision logits
                ``[B, K, C, X, Y, Z]``.
            target: label map ``[B, 1, X, Y, Z]`` (integer class values, any dtype).

        Returns:
            The scalar loss (float32).
        """
        target = target.float()
        if output.dim() == target.dim() + 1:
            outputs = torch.unbind(output, dim=1)
            weights = deep_supervision_weights(len(outputs))
            return sum(w * self.dice_ce(o.float(), target) for w, o in zip(weights, outputs, strict=True))
        return self.dice_ce(output.float(), target)
