"""What a source model says about the target's training cases, for LogME, LEEP and NCE.

A source model is run over each training case of the target (sliding windows on the training
grid); per voxel it gives its penultimate-layer features (the decoder's full-resolution
output, LogME's input) and its softmax probabilities over its own classes (LEEP's input; their
argmax is NCE's). Segmentation volumes are dominated by background, so voxels are sampled
class-balanced: up to ``per_class`` voxels of each target class from each case, drawn by the
given generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.networks.nets import DynUNet
from torch import nn

from seqtransfer.baselines.models import decode, encode
from seqtransfer.training.network import autocast_context


@dataclass(frozen=True)
class SourceOutputs:
    """Sampled voxels of the target's training cases as a source model sees them.

    Attributes:
        features: ``[N, D]`` penultimate-layer features.
        probs: ``[N, C_s]`` the source's softmax probabilities.
        labels: ``[N]`` the target's labels of those voxels (0..C-1).
    """

    features: np.ndarray
    probs: np.ndarray
    labels: np.ndarray


def balanced_voxels(label: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Flat indices of up to ``per_class`` voxels of each class present in ``label``."""
    flat = label.reshape(-1)
    chosen = []
    for value in np.unique(flat):
        where = np.flatnonzero(flat == value)
        take = min(per_class, len(where))
        chosen.append(np.sort(rng.choice(where, size=take, replace=False)))
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)


def source_outputs(
    model: nn.Module,
    cases: Sequence[tuple[np.ndarray, np.ndarray]],
    patch_size: Sequence[int],
    per_class: int,
    rng: np.random.Generator,
    device: torch.device,
) -> SourceOutputs:
    """Features, probabilities and labels of class-balanced voxels of ``cases``.

    The features are those of :func:`~seqtransfer.baselines.models.penultimate`.

    Args:
        model: a source DynUNet.
        cases: the target's training cases ``(image [1,X,Y,Z], binary label [X,Y,Z])``.
        patch_size: the network's patch (window) size.
        per_class: voxels per class per case.
        rng: draws the voxels.
        device: where the model runs.

    Returns:
        The sampled voxels' source outputs and target labels.
    """
    was_training = model.training
    model.to(device).eval()
    net = cast(DynUNet, model)  # source models are DynUNets (encode/decode refuse others)

    def predictor(x: torch.Tensor) -> torch.Tensor:
        feats = decode(net, encode(net, x))
        return torch.cat([feats, net.output_block(feats)], dim=1)

    all_f, all_p, all_y = [], [], []
    try:
        for image, label in cases:
            x = torch.from_numpy(np.array(image, dtype=np.float32))[None].to(device)
            with torch.inference_mode(), autocast_context(device):
                out = sliding_window_inference(
                    x, tuple(int(p) for p in patch_size), 2, predictor, overlap=0.5, mode="gaussian"
                )
            assert isinstance(out, torch.Tensor)
            out = out.float()[0]
            n_feat = int(net.filters[0])
            feats = out[:n_feat].reshape(n_feat, -1).cpu().numpy()
            probs = torch.softmax(out[n_feat:], dim=0).reshape(out.shape[0] - n_feat, -1).cpu().numpy()
            idx = balanced_voxels(np.asarray(label), per_class, rng)
            all_f.append(feats[:, idx].T)
            all_p.append(probs[:, idx].T)
            all_y.append(np.asarray(label).reshape(-1)[idx].astype(np.int64))
    finally:
        model.train(was_training)
    probs = np.concatenate(all_p).astype(np.float64)
    probs /= probs.sum(axis=1, keepdims=True)
    return SourceOutputs(features=np.concatenate(all_f).astype(np.float64), probs=probs, labels=np.concatenate(all_y))
