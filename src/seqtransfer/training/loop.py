"""The training loop: pre-training, and fine-tuning with a frozen encoder and EWC (METHOD 6).

One step draws a batch of patches (:class:`~seqtransfer.training.augment.PatchSampler`:
nnU-Net foreground oversampling and MONAI augmentation), computes Dice + cross-entropy
(:class:`~seqtransfer.training.loss.SegmentationLoss`) plus, when ``lambda_ewc > 0``, the EWC
penalty (:func:`~seqtransfer.training.ewc.ewc_penalty`), and takes an Adam step. Training runs
a fixed number of steps, not epochs. ``ReduceLROnPlateau`` watches the training objective
averaged over windows of ``plateau_interval`` steps (one "epoch" of the scheduler; single
steps are too noisy at batch size 2). On CUDA the forward pass runs under bf16 autocast.

Randomness and resuming: the trainer's only random state is a ``numpy.random.Generator``
seeded with ``TrainConfig.seed``. It draws the cases, patch positions and the seed of the
MONAI transforms for every batch, and a seed for torch at every step, applied inside
``torch.random.fork_rng`` (so dropout, if a network had any, is reproducible and the
caller's global torch state is untouched). A checkpoint stores that generator's state with the
model, optimizer, scheduler and loss history, so ``resume=True`` continues exactly where the
run stopped: on the CPU the final weights are bit-identical to an uninterrupted run (tested;
no ``torch.use_deterministic_algorithms`` switch is needed for that, so none is set). On CUDA
the same state is restored, but some kernels are not bit-reproducible: on an H200 two runs from
the same weights already differed in the last bits of the first loss, so a resumed GPU run is
equivalent, not guaranteed bit-identical. ``torch.use_deterministic_algorithms`` is a
process-wide setting and is left to the caller.

Measured (batch 2, forward + backward + Adam): CPU preset (DynUNet 16-128, 32^3) on the 2-core
development machine about 0.27 s per step without augmentation; the elastic deformation costs
about 0.2 s per deformed patch there (its Gaussian smoothing), 0.2 probability per patch.
nnU-Net preset (31 M parameters, 128^3, bf16) on one H200: 0.074 s per step without
augmentation, 1.003x a bare MONAI loop on the same batch (the next batch is cut while the GPU
runs the current step; ``benchmarks/train_step.md``), about 0.1 s median with the default
augmentation (run on the GPU), 4.9 GiB peak memory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seqtransfer.core.errors import ConfigError, StoreError
from seqtransfer.training.augment import AugmentConfig, PatchSampler
from seqtransfer.training.checkpoint import (
    CHECKPOINT_FINAL,
    CHECKPOINT_FORMAT,
    CHECKPOINT_LATEST,
    load_checkpoint,
    save_checkpoint,
)
from seqtransfer.training.config import TrainConfig as TrainConfig
from seqtransfer.training.ewc import ewc_penalty
from seqtransfer.training.loss import SegmentationLoss
from seqtransfer.training.network import autocast_context, freeze_encoder, select_device, set_train_mode

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, float], None]
TORCH_SEED_MAX = 2**63 - 1


@dataclass(frozen=True)
class TrainResult:
    """What a training run did.

    Attributes:
        losses: the objective (segmentation loss + EWC penalty) of every step.
        penalties: the EWC penalty of every step (0 without EWC).
        lrs: the learning rate used at every step.
        steps: steps completed.
        resumed_from: the step a resumed run restarted from (None: a fresh run).
        checkpoint: ``checkpoint_final.pth`` when an output folder was given.
    """

    losses: tuple[float, ...]
    penalties: tuple[float, ...]
    lrs: tuple[float, ...]
    steps: int
    resumed_from: int | None
    checkpoint: Path | None


_RESUME_IGNORED = ("checkpoint_every",)


def _same_config(saved: Mapping[str, Any], config: TrainConfig) -> bool:
    current = config.to_dict()
    same_loss = bool(saved.get("batch_dice", False)) == config.batch_dice
    return same_loss and all(saved.get(k) == v for k, v in current.items() if k not in _RESUME_IGNORED)


def _fork_devices(device: torch.device) -> list[int]:
    if device.type == "cuda":
        return [device.index if device.index is not None else torch.cuda.current_device()]
    return []


def train(
    model: nn.Module,
    cases: Sequence[tuple[np.ndarray, np.ndarray]],
    config: TrainConfig,
    patch_size: Sequence[int],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    fisher: Mapping[str, torch.Tensor] | None = None,
    anchor: Mapping[str, torch.Tensor] | None = None,
    augment: AugmentConfig | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    device: torch.device | str | None = None,
    progress: ProgressCallback | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``cases`` for ``config.steps`` steps (module docstring).

    Args:
        model: the network (e.g. from :func:`~seqtransfer.training.network.build_network`,
            or a source model to fine-tune). Moved to ``device``. Parameters with
            ``requires_grad=False`` are left out of the optimizer.
        cases: ``(image [C,X,Y,Z] float32, label [X,Y,Z] uint8)`` pairs; volumes may be
            larger or smaller than the patch.
        config: the run's configuration.
        patch_size: the network's patch size.
        out_dir: folder of ``checkpoint_latest.pth`` / ``checkpoint_final.pth``; no
            checkpoints when None.
        resume: continue from ``out_dir``'s checkpoint (final, else latest); a fresh run,
            with a warning, when there is none (nnU-Net's ``--c``). The configuration must
            equal the checkpoint's (``checkpoint_every`` aside), and ``fisher``, ``anchor``
            and the model's frozen parameters must be given as in the first run.
        fisher: Fisher diagonal of the previous task (:func:`~seqtransfer.training.ewc.estimate_fisher`),
            required when ``config.lambda_ewc > 0``.
        anchor: the parameters after the previous task (:func:`~seqtransfer.training.ewc.anchor_from`).
        augment: augmentation ranges; nnU-Net-like defaults when None. Ignored when
            ``config.augment`` is False.
        loss_fn: the segmentation loss; :class:`~seqtransfer.training.loss.SegmentationLoss`
            when None.
        device: where to train; :func:`~seqtransfer.training.network.select_device` when None.
        progress: called after every step with ``(step, total, loss)``, step counted from 1.
            An exception it raises stops training (the last checkpoint stays valid).

    Returns:
        The per-step history and the final checkpoint.

    Raises:
        ConfigError: EWC requested without Fisher and anchor; ``resume`` without
            ``out_dir``; a checkpoint written with a different configuration.
        StoreError: a checkpoint is corrupt or does not fit the model.
    """
    if config.lambda_ewc > 0 and (fisher is None or anchor is None):
        raise ConfigError("lambda_ewc > 0 needs the Fisher information and the anchor of the previous task")
    if resume and out_dir is None:
        raise ConfigError("resume=True needs out_dir, the folder of the checkpoints")
    dev = torch.device(device) if device is not None else select_device()
    folder = Path(out_dir) if out_dir is not None else None
    model.to(dev)
    if config.freeze_encoder:
        freeze_encoder(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ConfigError("the model has no trainable parameter")
    optimizer = torch.optim.Adam(trainable, lr=config.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer,
        mode="min",
        factor=config.plateau_factor,
        patience=config.plateau_patience,
        min_lr=config.min_lr,
    )
    criterion = loss_fn if loss_fn is not None else SegmentationLoss(batch=config.batch_dice)
    sampler = PatchSampler(
        cases,
        patch_size,
        augment=(augment or AugmentConfig()) if config.augment else None,
        oversample_foreground=config.oversample_foreground,
    )
    rng = np.random.default_rng(config.seed)
    use_ewc = config.lambda_ewc > 0
    ewc_fisher = {k: v.to(dev) for k, v in fisher.items()} if use_ewc and fisher is not None else {}
    ewc_anchor = {k: v.to(dev) for k, v in anchor.items()} if use_ewc and anchor is not None else {}
    losses: list[float] = []
    penalties: list[float] = []
    lrs: list[float] = []
    start = 0
    resumed_from: int | None = None

    def state(step: int) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": {"numpy": rng_before_batch},
            "history": {"losses": list(losses), "penalties": list(penalties), "lrs": list(lrs)},
            "train_config": config.to_dict(),
        }

    if resume and folder is not None:
        path = next((folder / n for n in (CHECKPOINT_FINAL, CHECKPOINT_LATEST) if (folder / n).is_file()), None)
        if path is None:
            logger.info("%s: no checkpoint to resume from; starting a new training", folder)
        else:
            saved = load_checkpoint(path)
            if not _same_config(saved["train_config"], config):
                raise ConfigError(f"{path}: written with a different training configuration; resume with the same one")
            try:
                model.load_state_dict(saved["model"])
                optimizer.load_state_dict(saved["optimizer"])
                scheduler.load_state_dict(saved["scheduler"])
                rng.bit_generator.state = saved["rng"]["numpy"]
            except (RuntimeError, KeyError, ValueError, TypeError) as exc:
                raise StoreError(f"{path}: checkpoint does not fit this model ({type(exc).__name__})") from exc
            losses = [float(v) for v in saved["history"]["losses"]]
            penalties = [float(v) for v in saved["history"]["penalties"]]
            lrs = [float(v) for v in saved["history"]["lrs"]]
            start = resumed_from = int(saved["step"])
            logger.info("%s: resuming at step %d of %d", path, start, config.steps)

    set_train_mode(model, frozen_encoder=config.freeze_encoder)
    pin = dev.type == "cuda"
    # The next batch is cut on the CPU while the device still runs this step (CUDA launches
    # are asynchronous until the loss is read). The random draws keep their order (batch k,
    # torch seed k, batch k+1, ...); a checkpoint stores the generator's state from before
    # the prefetched batch, so a resumed run draws that batch again, identically.
    rng_before_batch = rng.bit_generator.state
    pending = sampler.draw(config.batch_size, rng, pin_memory=pin) if start < config.steps else None
    for step in range(start, config.steps):
        assert pending is not None
        images, labels = sampler.to_device(pending, dev)
        torch_seed = int(rng.integers(0, TORCH_SEED_MAX))
        with torch.random.fork_rng(devices=_fork_devices(dev)):
            torch.manual_seed(torch_seed)
            with autocast_context(dev):
                output = model(images)
            objective = criterion(output.float(), labels)
            penalty: torch.Tensor | None = None
            if use_ewc:
                penalty = ewc_penalty(model, ewc_fisher, ewc_anchor, config.lambda_ewc)
                objective = objective + penalty
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            lrs.append(float(optimizer.param_groups[0]["lr"]))
            optimizer.step()
        rng_before_batch = rng.bit_generator.state
        pending = sampler.draw(config.batch_size, rng, pin_memory=pin) if step + 1 < config.steps else None
        losses.append(float(objective.detach()))  # waits for the device
        penalties.append(float(penalty.detach()) if penalty is not None else 0.0)
        done = step + 1
        if done % config.plateau_interval == 0:
            scheduler.step(float(np.mean(losses[-config.plateau_interval :])))
        if folder is not None and done % config.checkpoint_every == 0 and done < config.steps:
            save_checkpoint(folder / CHECKPOINT_LATEST, state(done))
        if progress is not None:
            progress(done, config.steps, losses[-1])

    final: Path | None = None
    if folder is not None:
        final = save_checkpoint(folder / CHECKPOINT_FINAL, state(config.steps))
        latest = folder / CHECKPOINT_LATEST
        if latest.exists():
            latest.unlink()
    return TrainResult(
        losses=tuple(losses),
        penalties=tuple(penalties),
        lrs=tuple(lrs),
        steps=config.steps,
        resumed_from=resumed_from,
        checkpoint=final,
    )
