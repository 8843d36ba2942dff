"""The trainer: pre-training, fine-tuning with a frozen encoder and EWC (METHOD 6), and the baselines.

Every training runs through one :class:`Trainer` (:func:`train` is it with the defaults), so
every training gets the scheduler, checkpoints, resume and bit-identical restarts. A variant
overrides a hook, nnU-Net's trainer subclasses' way: :meth:`Trainer.sample` (which batch
next), :meth:`Trainer.to_device` and :meth:`Trainer.step` (the objective of one batch); the
multi-task baseline (:mod:`seqtransfer.baselines.train`) draws mixed batches for several
heads that way.

By default one step draws a batch of patches (:class:`~seqtransfer.training.augment.PatchSampler`:
nnU-Net foreground oversampling and MONAI augmentation), computes Dice + cross-entropy
(:class:`~seqtransfer.training.loss.SegmentationLoss`) plus, when ``lambda_ewc > 0``, the EWC
penalty (:func:`~seqtransfer.training.ewc.ewc_penalty`), and takes an Adam step. Training runs
a fixed number of steps, not epochs. ``ReduceLROnPlateau`` watches the training objective
averaged over windows of ``plateau_interval`` steps (one "epoch" of the scheduler; single
steps are too noisy at batch size 2); ``lr_schedule="constant"`` keeps the learning rate
fixed (the multi-task baseline's recorded recipe). On CUDA the forward pass runs under bf16 autocast.

Randomness and resuming: the trainer's only random state is a ``numpy.random.Generator``
seeded with ``TrainConfig.seed``. It draws the cases, patch positions and the seed of the
MONAI transforms for every batch, and a seed for torch at every step, applied inside
``torch.random.fork_rng`` over the CPU and, on a GPU, the training device's CUDA generator (so
dropout, if a network had any, is reproducible and the caller's global torch state is
untouched). A checkpoint stores that generator's state with the
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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seqtransfer.core.errors import ConfigError, StoreError
from seqtransfer.core.fetch import need
from seqtransfer.core.progress import Progress, report
from seqtransfer.training.augment import AugmentConfig, PatchSampler
from seqtransfer.training.checkpoint import (
    CHECKPOINT_FINAL,
    CHECKPOINT_FORMAT,
    CHECKPOINT_LATEST,
    load_checkpoint,
    save_checkpoint,
)
from seqtransfer.training.config import _RECORDED_WHEN_SET, TrainConfig
from seqtransfer.training.ewc import ewc_penalty
from seqtransfer.training.loss import SegmentationLoss
from seqtransfer.training.network import autocast_context, freeze_encoder, select_device, set_train_mode

logger = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class StepLoss:
    """What :meth:`Trainer.step` returns for one batch.

    Attributes:
        objective: the scalar the optimizer minimises (the penalty included).
        penalty: the EWC penalty inside ``objective``; None without EWC.
    """

    objective: torch.Tensor
    penalty: torch.Tensor | None = None


_RESUME_IGNORED = ("checkpoint_every",)


def _same_config(saved: Mapping[str, Any], config: TrainConfig) -> bool:
    # a field left out of to_dict at its default (_RECORDED_WHEN_SET) is absent from older checkpoints
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.name in _RECORDED_WHEN_SET}
    recorded = {**defaults, **saved}
    return all(recorded.get(k) == v for k, v in asdict(config).items() if k not in _RESUME_IGNORED)


def _fork_devices(device: torch.device) -> list[int]:
    if device.type == "cuda":
        return [device.index if device.index is not None else torch.cuda.current_device()]
    return []


@dataclass
class _History:
    """The per-step records of a run (a checkpoint's ``history``)."""

    losses: list[float] = field(default_factory=list)
    penalties: list[float] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)


class Trainer:
    """The one training loop: optimizer, scheduler, checkpoints, resume (module docstring).

    Every training (zoo models, fine-tuning steps, the scratch, MST and MTL baselines) runs
    through :meth:`fit`. What a variant changes is one of three hooks, nnU-Net's trainer
    subclasses' way:

    * :meth:`sample`: which batch comes next, drawn on the CPU from the trainer's generator
      (everything random about a batch must be drawn here, so a resumed run redraws it);
    * :meth:`to_device`: that batch on the training device (deterministic given the draw);
    * :meth:`step`: the objective of one batch (forward pass and loss); :meth:`fit` does the
      backward pass, the optimizer and scheduler steps.

    The defaults train a segmentation network on the patches of one task with
    :class:`~seqtransfer.training.loss.SegmentationLoss` plus, when ``lambda_ewc > 0``, the
    EWC penalty.

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
        progress: gets a :class:`~seqtransfer.core.progress.ProgressEvent` after every step
            (``done`` the step, counted from 1; ``loss`` its loss; no stage name).
            An exception it raises stops training (the last checkpoint stays valid).

    Raises:
        ConfigError: EWC requested without Fisher and anchor; ``resume`` without
            ``out_dir``; no trainable parameter; no training case.
    """

    def __init__(
        self,
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
        progress: Progress | None = None,
    ) -> None:
        if config.lambda_ewc > 0 and (fisher is None or anchor is None):
            raise ConfigError("lambda_ewc > 0 needs the Fisher information and the anchor of the previous task")
        if resume and out_dir is None:
            raise ConfigError("resume=True needs out_dir, the folder of the checkpoints")
        self.config = config
        self.device = torch.device(device) if device is not None else select_device()
        self.folder = Path(out_dir) if out_dir is not None else None
        self.resume = resume
        self.progress = progress
        self.model = model.to(self.device)
        if config.freeze_encoder:
            freeze_encoder(model)
        trainable = [p for p in model.parameters() if p.requires_grad]
        if not trainable:
            raise ConfigError("the model has no trainable parameter")
        self.optimizer = torch.optim.Adam(trainable, lr=config.lr)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer,
            mode="min",
            factor=config.plateau_factor,
            patience=config.plateau_patience,
            min_lr=config.min_lr,
        )
        self.criterion = loss_fn if loss_fn is not None else SegmentationLoss(batch=config.batch_dice)
        self.augment = (augment or AugmentConfig()) if config.augment else None
        self.sampler = PatchSampler(
            cases, patch_size, augment=self.augment, oversample_foreground=config.oversample_foreground
        )
        use_ewc = config.lambda_ewc > 0
        self.fisher = {k: v.to(self.device) for k, v in fisher.items()} if use_ewc and fisher is not None else {}
        self.anchor = {k: v.to(self.device) for k, v in anchor.items()} if use_ewc and anchor is not None else {}

    @property
    def pin_memory(self) -> bool:
        """Cut batches into page-locked memory (on a GPU: the copy is then asynchronous)."""
        return self.device.type == "cuda"

    def sample(self, rng: np.random.Generator) -> Any:
        """The sampler: draw the next batch and cut it on the CPU (no device work).

        Args:
            rng: the trainer's generator (advanced); the only randomness a batch may use.

        Returns:
            The drawn batch, for :meth:`to_device`.
        """
        return self.sampler.draw(self.config.batch_size, rng, pin_memory=self.pin_memory)

    def to_device(self, drawn: Any) -> Any:
        """A drawn batch on the training device, augmented there.

        Returns:
            The batch :meth:`step` receives.
        """
        return self.sampler.to_device(drawn, self.device)

    def step(self, batch: Any) -> StepLoss:
        """The objective of one batch: Dice + cross-entropy, plus the EWC penalty when enabled.

        Runs inside the trainer's seeded ``fork_rng``; the forward pass under the device's
        autocast.

        Args:
            batch: images ``[B, C, *patch]`` and labels ``[B, 1, *patch]`` from :meth:`to_device`.

        Returns:
            The objective (and the penalty within it).
        """
        images, labels = batch
        with autocast_context(self.device):
            output = self.model(images)
        objective = self.criterion(output.float(), labels)
        if self.config.lambda_ewc <= 0:
            return StepLoss(objective)
        penalty = ewc_penalty(self.model, self.fisher, self.anchor, self.config.lambda_ewc)
        return StepLoss(objective + penalty, penalty)

    def _state(self, step: int, rng_state: Mapping[str, Any], history: _History) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "step": step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": {"numpy": rng_state},
            "history": {"losses": list(history.losses), "penalties": list(history.penalties), "lrs": list(history.lrs)},
            "train_config": self.config.to_dict(),
        }

    def _restore(self, rng: np.random.Generator, history: _History) -> int | None:
        """Load the folder's checkpoint into the trainer; the step it was written at (None: none)."""
        assert self.folder is not None
        folder = self.folder
        need(folder)
        path = next((folder / n for n in (CHECKPOINT_FINAL, CHECKPOINT_LATEST) if (folder / n).is_file()), None)
        if path is None:
            logger.info("%s: no checkpoint to resume from; starting a new training", folder)
            return None
        saved = load_checkpoint(path)
        if not _same_config(saved["train_config"], self.config):
            raise ConfigError(f"{path}: written with a different training configuration; resume with the same one")
        try:
            self.model.load_state_dict(saved["model"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self.scheduler.load_state_dict(saved["scheduler"])
            rng.bit_generator.state = saved["rng"]["numpy"]
        except (RuntimeError, KeyError, ValueError, TypeError) as exc:
            raise StoreError(f"{path}: checkpoint does not fit this model ({type(exc).__name__})") from exc
        history.losses[:] = [float(v) for v in saved["history"]["losses"]]
        history.penalties[:] = [float(v) for v in saved["history"]["penalties"]]
        history.lrs[:] = [float(v) for v in saved["history"]["lrs"]]
        step = int(saved["step"])
        logger.info("%s: resuming at step %d of %d", path, step, self.config.steps)
        return step

    def fit(self) -> TrainResult:
        """Train the model in place for ``config.steps`` steps (or the rest, when resuming).

        Returns:
            The per-step history and the final checkpoint.

        Raises:
            ConfigError: a checkpoint written with a different configuration.
            StoreError: a checkpoint is corrupt or does not fit the model.
        """
        config, model, optimizer, dev, folder = self.config, self.model, self.optimizer, self.device, self.folder
        rng = np.random.default_rng(config.seed)
        history = _History()
        resumed_from = self._restore(rng, history) if self.resume else None
        start = resumed_from or 0
        set_train_mode(model, frozen_encoder=config.freeze_encoder)
        # The next batch is cut on the CPU while the device still runs this step (CUDA launches
        # are asynchronous until the loss is read). The random draws keep their order (batch k,
        # torch seed k, batch k+1, ...); a checkpoint stores the generator's state from before
        # the prefetched batch, so a resumed run draws that batch again, identically.
        rng_before_batch = rng.bit_generator.state
        pending = self.sample(rng) if start < config.steps else None
        for step in range(start, config.steps):
            batch = self.to_device(pending)
            torch_seed = int(rng.integers(0, TORCH_SEED_MAX))
            with torch.random.fork_rng(devices=_fork_devices(dev)):
                torch.manual_seed(torch_seed)
                loss = self.step(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.objective.backward()
                history.lrs.append(float(optimizer.param_groups[0]["lr"]))
                optimizer.step()
            rng_before_batch = rng.bit_generator.state
            pending = self.sample(rng) if step + 1 < config.steps else None
            history.losses.append(float(loss.objective.detach()))  # waits for the device
            history.penalties.append(float(loss.penalty.detach()) if loss.penalty is not None else 0.0)
            done = step + 1
            if config.lr_schedule == "plateau" and done % config.plateau_interval == 0:
                self.scheduler.step(float(np.mean(history.losses[-config.plateau_interval :])))
            if folder is not None and done % config.checkpoint_every == 0 and done < config.steps:
                save_checkpoint(folder / CHECKPOINT_LATEST, self._state(done, rng_before_batch, history))
            report(self.progress, "", done, config.steps, history.losses[-1])

        final: Path | None = None
        if folder is not None:
            final = save_checkpoint(folder / CHECKPOINT_FINAL, self._state(config.steps, rng_before_batch, history))
            latest = folder / CHECKPOINT_LATEST
            if latest.exists():
                latest.unlink()
        return TrainResult(
            losses=tuple(history.losses),
            penalties=tuple(history.penalties),
            lrs=tuple(history.lrs),
            steps=config.steps,
            resumed_from=resumed_from,
            checkpoint=final,
        )


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
    progress: Progress | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``cases`` for ``config.steps`` steps: :class:`Trainer`'s
    :meth:`~Trainer.fit` with the default sampler and step (the arguments are the trainer's).

    Returns:
        The per-step history and the final checkpoint.

    Raises:
        ConfigError: EWC requested without Fisher and anchor; ``resume`` without
            ``out_dir``; a checkpoint written with a different configuration.
        StoreError: a checkpoint is corrupt or does not fit the model.
    """
    trainer = Trainer(
        model,
        cases,
        config,
        patch_size,
        out_dir=out_dir,
        resume=resume,
        fisher=fisher,
        anchor=anchor,
        augment=augment,
        loss_fn=loss_fn,
        device=device,
        progress=progress,
    )
    return trainer.fit()
