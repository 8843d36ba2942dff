"""Training and scoring the baselines that are not a transfer along a path (METHOD section 7).

* :func:`run_scratch`: a randomly initialised network trained on the target's 3 cases only.
* :func:`run_mst`: :class:`~seqtransfer.baselines.models.MultiSourceNet` over the zoo
  models of the top-k sources, fusions and decoder trained on the target's 3 cases.
* :func:`run_mtl`: :class:`~seqtransfer.baselines.models.MultiTaskNet` trained from a random
  initialisation on mixed batches (half target patches, half patches of the top-k sources'
  zoo training cases), scored on the target head.

Every one uses the target's training draw and the three test sets of
:func:`~seqtransfer.data.splits.target_split`, the same as the transfers, and the same
loss, optimizer (Adam) and patch sampling as :func:`~seqtransfer.training.loop.train`: each
trains through :class:`~seqtransfer.training.loop.Trainer` (MTL through its
:class:`MultiTaskTrainer` variant), so each can checkpoint and resume.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqtransfer.baselines.models import MultiSourceNet, MultiTaskNet
from seqtransfer.core.errors import ConfigError
from seqtransfer.core.progress import Progress
from seqtransfer.data.splits import TargetSplit, target_split
from seqtransfer.pipeline.score import score_cases, score_test_sets
from seqtransfer.pipeline.workspace import Workspace
from seqtransfer.pipeline.zoo import ZooModel, load_model
from seqtransfer.training.augment import PatchSampler, PreparedBatch
from seqtransfer.training.config import NetworkConfig, TrainConfig
from seqtransfer.training.loop import StepLoss, Trainer, TrainResult, train
from seqtransfer.training.network import autocast_context, build_network, select_device


def split_of(workspace: Workspace, target: str, seed: int, n_train: int = 3) -> TargetSplit:
    """The target's draws and test sets (the same for every method)."""
    task = workspace.task(target)
    return target_split(task.split_key, [c.case_id for c in task.cases], seed=seed, n_train=n_train)


def _fresh_network(network: NetworkConfig, seed: int, draw: int) -> torch.nn.Module:
    """A randomly initialised network, seeded per draw (scratch and MTL start from it)."""
    return build_network(network, generator=torch.Generator().manual_seed(seed * 7919 + draw))


def _patch(network: NetworkConfig) -> tuple[int, ...]:
    return tuple(network.patch_size or ())


def _score(
    model: torch.nn.Module,
    workspace: Workspace,
    target: str,
    split: TargetSplit,
    patch: Sequence[int],
    device: torch.device,
    save_dir: Path | None,
) -> dict[str, Any]:
    test_ids = sorted({c for s in split.test_sets for c in s})
    scores = score_cases(model, workspace, workspace.task(target), test_ids, patch, device, save_dir=save_dir)
    dice, per_set = score_test_sets(scores, split.test_sets)
    predictions = str(save_dir) if save_dir is not None else None
    return {"dice": dice, "test_set_dice": per_set, "per_case": scores, "predictions": predictions}


def run_scratch(
    workspace: Workspace,
    target: str,
    draw: int,
    network: NetworkConfig,
    steps: int,
    seed: int,
    save_dir: Path | None = None,
    augment: bool = True,
    split: TargetSplit | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train from a random initialisation on the target's ``draw`` only, and score it
    (``split``: another split than the protocol's, e.g. the sample-size study's;
    ``checkpoint_dir``, ``resume``: the trainer's checkpoints, none when None)."""
    split = split or split_of(workspace, target, seed)
    cases = list(split.draws[draw])
    device = select_device()
    model = _fresh_network(network, seed, draw)
    start = time.perf_counter()
    config = TrainConfig(steps=steps, lr=0.01, seed=seed * 1000 + draw, augment=augment)
    arrays = workspace.arrays(workspace.task(target), cases)
    train(model, arrays, config, _patch(network), out_dir=checkpoint_dir, resume=resume, device=device)
    result = _score(model, workspace, target, split, _patch(network), device, save_dir)
    return {**result, "train_cases": cases, "seconds": time.perf_counter() - start}


def run_mst(
    workspace: Workspace,
    target: str,
    draw: int,
    sources: Sequence[ZooModel],
    steps: int,
    lr: float,
    seed: int,
    augment: bool = True,
    save_dir: Path | None = None,
    split: TargetSplit | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Fuse the frozen encoders of ``sources`` (best first), train fusion + decoder on the target
    (``split``: another split than the protocol's, e.g. the sample-size study's;
    ``checkpoint_dir``, ``resume``: the trainer's checkpoints, none when None).

    Raises:
        ConfigError: no source, or sources that are not DynUNets of one configuration.
    """
    if not sources:
        raise ConfigError("MST needs at least one source model")
    device = select_device()
    loaded = [load_model(s.folder, torch.device("cpu")) for s in sources]
    configs = {json.dumps(n.to_dict(), sort_keys=True) for _, n in loaded}
    if len(configs) != 1:
        raise ConfigError("MST: the source models have different network configurations")
    network = loaded[0][1]
    model = MultiSourceNet([m for m, _ in loaded])
    before = model.encoder_state()
    split = split or split_of(workspace, target, seed)
    cases = list(split.draws[draw])
    start = time.perf_counter()
    config = TrainConfig(steps=steps, lr=lr, seed=seed * 1000 + draw, augment=augment)
    arrays = workspace.arrays(workspace.task(target), cases)
    train(model, arrays, config, _patch(network), out_dir=checkpoint_dir, resume=resume, device=device)
    after = model.encoder_state()
    if not all(torch.equal(before[k], after[k].cpu()) for k in before):  # a programming error
        raise RuntimeError("MST: a frozen source encoder changed during training")
    result = _score(model, workspace, target, split, _patch(network), device, save_dir)
    return {
        **result,
        "sources": [s.task for s in sources],
        "train_cases": cases,
        "encoders_unchanged": True,
        "seconds": time.perf_counter() - start,
    }


@dataclass(frozen=True)
class MixedDraw:
    """One multi-task batch drawn on the CPU.

    Attributes:
        task: the head of the source half (0 only when the target is the sole task).
        target: the target's patches (head 0).
        source: the patches of task ``task``.
    """

    task: int
    target: PreparedBatch
    source: PreparedBatch


@dataclass(frozen=True)
class MixedBatch:
    """A :class:`MixedDraw` on the training device, augmented: images ``[B, C, *patch]``,
    labels ``[B, 1, *patch]`` of each half."""

    task: int
    target_images: torch.Tensor
    target_labels: torch.Tensor
    source_images: torch.Tensor
    source_labels: torch.Tensor


class MultiTaskTrainer(Trainer):
    """Mixed-batch multi-task training: the :class:`~seqtransfer.training.loop.Trainer` with a
    sampler of half target patches, half patches of one source task drawn uniformly per batch,
    and a step summing the target head's and that source head's losses.

    Args:
        model: the multi-task network; head ``i`` belongs to ``task_cases[i]`` (0: the target).
        task_cases: the cases of every task, the target's first.
        config: the run (``batch_size`` even: half target, half source).
        patch_size: the network's patch.
        out_dir: folder of the checkpoints; none when None.
        resume: continue from ``out_dir``'s checkpoint (as :class:`~seqtransfer.training.loop.Trainer`).
        device: where to train; :func:`~seqtransfer.training.network.select_device` when None.
        progress: gets a :class:`~seqtransfer.core.progress.ProgressEvent` (step, total, loss) after every step.

    Raises:
        ConfigError: not one head per task, an odd batch size, EWC requested, or a task
            without cases.
    """

    def __init__(
        self,
        model: MultiTaskNet,
        task_cases: Sequence[Sequence[tuple[np.ndarray, np.ndarray]]],
        config: TrainConfig,
        patch_size: Sequence[int],
        *,
        out_dir: str | os.PathLike[str] | None = None,
        resume: bool = False,
        device: torch.device | str | None = None,
        progress: Progress | None = None,
    ) -> None:
        if len(task_cases) != len(model.heads):
            raise ConfigError(f"MTL: {len(task_cases)} tasks for a network of {len(model.heads)} heads")
        if config.batch_size % 2:
            raise ConfigError(f"MTL batches are half target, half source: batch_size {config.batch_size} is odd")
        if config.lambda_ewc > 0:
            raise ConfigError("MTL trains from a random initialisation: lambda_ewc must be 0")
        super().__init__(
            model, task_cases[0], config, patch_size, out_dir=out_dir, resume=resume, device=device, progress=progress
        )
        self.network = model
        self.samplers = [self.sampler]
        self.samplers += [
            PatchSampler(cases, patch_size, augment=self.augment, oversample_foreground=config.oversample_foreground)
            for cases in task_cases[1:]
        ]

    def sample(self, rng: np.random.Generator) -> MixedDraw:
        """The source task (uniform over the sources), then the target's half, then its half."""
        half = self.config.batch_size // 2
        task = 1 + int(rng.integers(len(self.samplers) - 1)) if len(self.samplers) > 1 else 0
        target = self.samplers[0].draw(half, rng, pin_memory=self.pin_memory)
        source = self.samplers[task].draw(half, rng, pin_memory=self.pin_memory)
        return MixedDraw(task=task, target=target, source=source)

    def to_device(self, drawn: MixedDraw) -> MixedBatch:
        """Both halves on the device, each augmented by its task's transform."""
        target_images, target_labels = self.samplers[0].to_device(drawn.target, self.device)
        source_images, source_labels = self.samplers[drawn.task].to_device(drawn.source, self.device)
        return MixedBatch(drawn.task, target_images, target_labels, source_images, source_labels)

    def step(self, batch: MixedBatch) -> StepLoss:
        """The target head's loss on the target half plus the source head's on the source half."""
        half = len(batch.target_images)
        with autocast_context(self.device):
            features = self.network.features(torch.cat([batch.target_images, batch.source_images]))
            out_target = self.network.heads[0](features[:half])
            out_source = self.network.heads[batch.task](features[half:])
        loss = self.criterion(out_target.float(), batch.target_labels)
        return StepLoss(loss + self.criterion(out_source.float(), batch.source_labels))


def mtl_config(steps: int, seed: int, lr: float = 0.01, augment: bool = True) -> TrainConfig:
    """The MTL baseline's training: Adam at a constant ``lr`` (its recorded recipe; no plateau schedule)."""
    return TrainConfig(steps=steps, lr=lr, seed=seed, augment=augment, lr_schedule="constant")


def train_mtl(
    model: MultiTaskNet,
    task_cases: Sequence[Sequence[tuple[np.ndarray, np.ndarray]]],
    config: TrainConfig,
    patch_size: Sequence[int],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    device: torch.device | str | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Mixed-batch multi-task training (:class:`MultiTaskTrainer`; its arguments).

    Returns:
        The per-step history and the final checkpoint.

    Raises:
        ConfigError: as :class:`MultiTaskTrainer`, or a checkpoint of another configuration.
        StoreError: a checkpoint is corrupt or does not fit the model.
    """
    trainer = MultiTaskTrainer(
        model, task_cases, config, patch_size, out_dir=out_dir, resume=resume, device=device, progress=progress
    )
    return trainer.fit()


def run_mtl(
    workspace: Workspace,
    target: str,
    draw: int,
    sources: Sequence[ZooModel],
    network: NetworkConfig,
    steps: int,
    seed: int,
    save_dir: Path | None = None,
    augment: bool = True,
    split: TargetSplit | None = None,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Multi-task learning of the target with the top-k sources; scored on the target head
    (``split``: another split than the protocol's, e.g. the sample-size study's;
    ``checkpoint_dir``, ``resume``: the trainer's checkpoints, none when None)."""
    split = split or split_of(workspace, target, seed)
    cases = list(split.draws[draw])
    task_cases = [workspace.arrays(workspace.task(target), cases)]
    for s in sources:
        task_cases.append(workspace.arrays(workspace.task(s.task), list(s.train_cases)))
    device = select_device()
    base = _fresh_network(network, seed, draw)
    model = MultiTaskNet(base, len(task_cases))
    start = time.perf_counter()
    config = mtl_config(steps, seed * 1000 + draw, augment=augment)
    patch = _patch(network)
    trained = train_mtl(model, task_cases, config, patch, out_dir=checkpoint_dir, resume=resume, device=device)
    result = _score(model, workspace, target, split, patch, device, save_dir)
    return {
        **result,
        "sources": [s.task for s in sources],
        "train_cases": cases,
        "final_loss": trained.losses[-1],
        "seconds": time.perf_counter() - start,
    }
