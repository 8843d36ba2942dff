"""Training: nnU-Net's U-Net, augmentation, loss, EWC and the training loop (METHOD section 6).

Modules, in the order a run uses them: ``network`` (architecture, presets, encoder/decoder
split, freezing, device), ``augment`` (patch sampling, MONAI augmentation), ``loss``
(Dice + cross-entropy), ``ewc`` (Fisher, anchor, penalty), ``checkpoint`` (nnU-Net-named,
atomic checkpoints), ``loop`` (the one trainer, whose sampler and step variants override).
"""

from seqtransfer.training.augment import AugmentConfig, PatchSampler, build_augmentation, sample_patch
from seqtransfer.training.checkpoint import CHECKPOINT_FINAL, CHECKPOINT_LATEST, load_checkpoint, load_weights
from seqtransfer.training.ewc import anchor_from, case_batches, estimate_fisher, ewc_penalty
from seqtransfer.training.loop import StepLoss, TrainConfig, Trainer, TrainResult, train
from seqtransfer.training.loss import SegmentationLoss, deep_supervision_weights
from seqtransfer.training.network import (
    NetworkConfig,
    autocast_context,
    build_network,
    decoder_parameters,
    encoder_parameters,
    encoder_prefixes,
    freeze_encoder,
    plan_strides,
    select_device,
    set_train_mode,
)

__all__ = [
    "CHECKPOINT_FINAL",
    "CHECKPOINT_LATEST",
    "AugmentConfig",
    "NetworkConfig",
    "PatchSampler",
    "SegmentationLoss",
    "StepLoss",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "anchor_from",
    "autocast_context",
    "build_augmentation",
    "build_network",
    "case_batches",
    "decoder_parameters",
    "deep_supervision_weights",
    "encoder_parameters",
    "encoder_prefixes",
    "estimate_fisher",
    "ewc_penalty",
    "freeze_encoder",
    "load_checkpoint",
    "load_weights",
    "plan_strides",
    "sample_patch",
    "select_device",
    "set_train_mode",
    "train",
]
