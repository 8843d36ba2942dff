"""Training: nnU-Net's U-Net, augmentation, loss, EWC and the training loop (METHOD section 6).

Modules, in the order a run uses them: ``config`` (the network and training-run
configurations, torch-free), ``plan`` (nnU-Net's stride and filter planning, torch-free),
``network`` (architecture, presets, encoder/decoder split, freezing, device), ``augment``
(patch sampling, MONAI augmentation), ``loss`` (Dice + cross-entropy), ``ewc`` (Fisher,
anchor, penalty), ``checkpoint`` (nnU-Net-named, atomic checkpoints), ``loop`` (the one
trainer, whose sampler and step variants override).

The names below are imported on first use, so ``seqtransfer.training.config`` (what the CLI
and the experiment file read their defaults from) loads without torch and MONAI.
"""

from __future__ import annotations

from seqtransfer.core.lazy import lazy_getattr

_WHERE = {
    "AugmentConfig": "augment",
    "PatchSampler": "augment",
    "build_augmentation": "augment",
    "sample_patch": "augment",
    "CHECKPOINT_FINAL": "checkpoint",
    "CHECKPOINT_LATEST": "checkpoint",
    "load_checkpoint": "checkpoint",
    "load_weights": "checkpoint",
    "NetworkConfig": "config",
    "TrainConfig": "config",
    "anchor_from": "ewc",
    "case_batches": "ewc",
    "estimate_fisher": "ewc",
    "ewc_penalty": "ewc",
    "StepLoss": "loop",
    "TrainResult": "loop",
    "Trainer": "loop",
    "train": "loop",
    "SegmentationLoss": "loss",
    "deep_supervision_weights": "loss",
    "LevelKernelDynUNet": "network",
    "autocast_context": "network",
    "build_network": "network",
    "decoder_parameters": "network",
    "encoder_parameters": "network",
    "encoder_prefixes": "network",
    "freeze_encoder": "network",
    "select_device": "network",
    "set_train_mode": "network",
    "plan_strides": "plan",
}

__all__ = sorted(_WHERE)


__getattr__ = lazy_getattr(__name__, {name: f"{__name__}.{module}" for name, module in _WHERE.items()})


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
