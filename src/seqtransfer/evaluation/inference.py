"""Sliding-window prediction of whole volumes (nnU-Net style, through MONAI)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from seqtransfer.evaluation.dice import dice_score
from seqtransfer.training.network import autocast_context, select_device


def predict_volume(
    model: nn.Module,
    image: np.ndarray,
    patch_size: Sequence[int],
    device: torch.device | str | None = None,
    overlap: float = 0.5,
    sw_batch_size: int = 2,
) -> np.ndarray:
    """Predict the label map of one volume by sliding windows.

    Windows of ``patch_size`` overlap by half and are blended with Gaussian weights (MONAI
    ``sliding_window_inference(mode="gaussian")``, nnU-Net's scheme); a volume smaller than
    the patch is padded and cropped back. The class is the argmax of the blended logits.
    The model runs in eval mode (bf16 autocast on CUDA) and its mode is restored afterwards.

    Args:
        model: the network (``[B, C, ...]`` in, ``[B, classes, ...]`` logits out in eval mode).
        image: ``[C, X, Y, Z]``.
        patch_size: the network's patch size.
        device: where to compute; :func:`~seqtransfer.training.network.select_device` when None.
        overlap: window overlap fraction.
        sw_batch_size: windows per forward pass.

    Returns:
        The label map ``[X, Y, Z]``, uint8.

    Raises:
        ValueError: ``image`` is not 4-D.
    """
    logits = _blended_logits(model, image, patch_size, device, overlap, sw_batch_size)
    return torch.argmax(logits, dim=0).to(torch.uint8).numpy()


def predict_probabilities(
    model: nn.Module,
    image: np.ndarray,
    patch_size: Sequence[int],
    device: torch.device | str | None = None,
    overlap: float = 0.5,
    sw_batch_size: int = 2,
) -> np.ndarray:
    """Class probabilities of one volume (softmax of the blended logits of :func:`predict_volume`).

    Returns:
        ``[classes, X, Y, Z]`` float32; the argmax over classes is :func:`predict_volume`'s label.

    Raises:
        ValueError: ``image`` is not 4-D.
    """
    logits = _blended_logits(model, image, patch_size, device, overlap, sw_batch_size)
    return torch.softmax(logits, dim=0).numpy()


def _blended_logits(
    model: nn.Module,
    image: np.ndarray,
    patch_size: Sequence[int],
    device: torch.device | str | None,
    overlap: float,
    sw_batch_size: int,
) -> torch.Tensor:
    """``[classes, X, Y, Z]`` float32 logits on the CPU, Gaussian-blended over sliding windows."""
    if image.ndim != 4:
        raise ValueError(f"expected an image [C, X, Y, Z], got shape {image.shape}")
    dev = torch.device(device) if device is not None else select_device()
    was_training = model.training
    model.to(dev)
    model.eval()
    try:
        x = torch.from_numpy(np.array(image, dtype=np.float32, copy=True))[None].to(dev)  # memory maps are read-only
        with torch.inference_mode(), autocast_context(dev):
            logits = sliding_window_inference(
                x,
                roi_size=tuple(int(p) for p in patch_size),
                sw_batch_size=sw_batch_size,
                predictor=model,
                overlap=overlap,
                mode="gaussian",
            )
        assert isinstance(logits, torch.Tensor)
        out = logits.float()[0].cpu()
    finally:
        model.train(was_training)
    return out


def dice_on_cases(
    model: nn.Module,
    cases: Sequence[tuple[np.ndarray, np.ndarray]],
    patch_size: Sequence[int],
    device: torch.device | str | None = None,
    label: int | None = None,
) -> list[float]:
    """Dice (nnU-Net policy) of the model's prediction on each case.

    Args:
        model: the network.
        cases: ``(image [C,X,Y,Z], label [X,Y,Z])`` pairs.
        patch_size: the network's patch size.
        device: where to compute.
        label: the class scored; all non-zero classes together when None.

    Returns:
        One Dice per case (NaN when prediction and ground truth are both empty).
    """
    return [dice_score(predict_volume(model, img, patch_size, device), lbl, label) for img, lbl in cases]
