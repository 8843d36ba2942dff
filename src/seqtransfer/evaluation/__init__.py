"""Evaluation: Dice as nnU-Net computes it and sliding-window prediction."""

from seqtransfer.evaluation.dice import dice_per_label, dice_score, mean_dice
from seqtransfer.evaluation.inference import dice_on_cases, predict_volume

__all__ = ["dice_on_cases", "dice_per_label", "dice_score", "mean_dice", "predict_volume"]
