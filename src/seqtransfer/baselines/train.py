"""Training and scoring the baselines that are not a transfer along a path (METHOD section 7).

* :func:`run_scratch`: a randomly initialised network trained on the target's 3 cases only.
* :func:`run_mst`: :class:`~seqtransfer.baselines.models.MultiSourceNet` over the zoo
  models of the top-k sources, fusions and decoder trained on the target's 3 cases.
* :func:`run_mtl`: :class:`~seqtransfer.baselines.models.MultiTaskNet` trained from a random
  initialisation on mixed batches (half target patches, half patches of the top-k sources'
  zoo training cases), scored on the target head.

Every one uses the target's training draw and the three test sets of
:func:`~seqtransfer.data.splits.target_split`, the same as the transfers, and the same
loss, optimizer (Adam) and patch sampling as :func:`~seqtransfer.training.loop.train`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqtransfer.baselines.models import MultiSourceNet, MultiTaskNet
from seqtransfer.data.splits import TargetSplit, target_split
from seqtransfer.core.errors import ConfigError
from seqtransfer.pipeline.score import score_cases, score_test_sets
from seqtransfer.training.augment import AugmentConfig, PatchSampler
from seqtransfer.training.loop import TrainConfig, train
from seqtransfer.training.loss import SegmentationLoss
from seqtransfer.training.network import NetworkConfig, autocast_context, build_network, select_device
from seqtransfer.pipeline.workspace import Workspace
from seqtransfer.pipeline.zoo import ZooModel, load_model


def split_of(workspace: Workspace, target: str, seed: int, n_train: int = 3) -> TargetSplit:
    """The target's draws and test sets (the same for every method)."""
    task = workspace.task(target)
    return target_split(task.split_key, [c.case_id for c in task.cases], seed=seed, n_train=n_train)


def _fresh_network(network: NetworkConfig, seed: int, draw: int) -> torch.nn.Module:
    """A randomly initialised network, seeded per draw (scratch and MTL start from it)."""
    return build_network(network, generator=torch.Generator().manual_seed(seed * 7919 + draw))


def _score(model: torch.nn.Module, workspace: Workspace, target: str, split: TargetSplit, patch: Sequence[int], device: torch.device, save_dir: Path | None) -> dict[str, Any]:
    test_ids = sorted({c for s in split.test_sets for c in s})
    scores = score_cases(model, workspace, workspace.task(target), test_ids, patch, device, save_dir=save_dir)
    dice, per_set = score_test_sets(scores, split.test_sets)
    return {"dice": dice, "test_set_dice": per_set, "per_case": scores, "predictions": str(save_dir) if save_dir is not None else None}


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
) -> dict[str, Any]:
    """Train from a random initialisation on the target's ``draw`` only, and score it
    (``split``: another split than the protocol's, e.g. the sample-size study's)."""
    split = split or split_of(workspace, target, seed)
    cases = list(split.draws[draw])
    device = select_device()
    model = _fresh_network(network, seed, draw)
    start = time.perf_counter()
    train(model, workspace.arrays(workspace.task(target), cases), TrainConfig(steps=steps, lr=0.01, seed=seed * 1000 + draw, augment=augment), network.patch_size or (), device=device)  # type: ignore[arg-type]
    result = _score(model, workspace, target, split, network.patch_size or (), device, save_dir)  # type: ignore[arg-type]
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
) -> dict[str, Any]:
    """Fuse the frozen encoders of ``sources`` (best first), train fusion + decoder on the target
    (``split``: another split than the protocol's, e.g. the sample-size study's).

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
    train(model, workspace.arrays(workspace.task(target), cases), TrainConfig(steps=steps, lr=lr, seed=seed * 1000 + draw, augment=augment), network.patch_size or (), device=device)  # type: ignore[arg-type]
    after = model.encoder_state()
    if not all(torch.equal(before[k], after[k].cpu()) for k in before):  # a programming error
        raise RuntimeError("MST: a frozen source encoder changed during training")
    result = _score(model, workspace, target, split, network.patch_size or (), device, save_dir)  # type: ignore[arg-type]
    return {**result, "sources": [s.task for s in sources], "train_cases": cases, "encoders_unchanged": True, "seconds": time.perf_counter() - start}


def train_mtl(
    model: MultiTaskNet,
    task_cases: Sequence[Sequence[tuple[np.ndarray, np.ndarray]]],
    steps: int,
    patch_size: Sequence[int],
    seed: int,
    lr: float = 0.01,
    augment: bool = True,
    device: torch.device | None = None,
) -> list[float]:
    """Mixed-batch multi-task training: every batch holds one target patch and one source patch.

    Args:
        model: the multi-task network; head ``i`` belongs to ``task_cases[i]`` (0: target).
        task_cases: the cases of every task, the target's first.
        steps: optimizer steps.
        patch_size: the network's patch.
        seed: seed of the sampling.
        lr: Adam learning rate.
        augment: MONAI spatial augmentation.
        device: where to train.

    Returns:
        The loss of every step.
    """
    dev = device or select_device()
    model.to(dev).train()
    samplers = [PatchSampler(cases, patch_size, augment=AugmentConfig() if augment else None) for cases in task_cases]
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    criterion = SegmentationLoss()
    losses = []
    for _ in range(steps):
        source = 1 + int(rng.integers(len(samplers) - 1)) if len(samplers) > 1 else 0
        xt, yt = samplers[0].batch(1, rng, dev)
        xs, ys = samplers[source].batch(1, rng, dev)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(0, 2**62)))
            with autocast_context(dev):
                feats = model.features(torch.cat([xt, xs]))
                out_t = model.heads[0](feats[:1])
                out_s = model.heads[source](feats[1:])
            loss = criterion(out_t.float(), yt) + criterion(out_s.float(), ys)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        losses.append(float(loss.detach()))
    return losses


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
) -> dict[str, Any]:
    """Multi-task learning of the target with the top-k sources; scored on the target head
    (``split``: another split than the protocol's, e.g. the sample-size study's)."""
    split = split or split_of(workspace, target, seed)
    cases = list(split.draws[draw])
    task_cases = [workspace.arrays(workspace.task(target), cases)]
    for s in sources:
        task_cases.append(workspace.arrays(workspace.task(s.task), list(s.train_cases)))
    device = select_device()
    base = _fresh_network(network, seed, draw)
    model = MultiTaskNet(base, len(task_cases))
    start = time.perf_counter()
    losses = train_mtl(model, task_cases, steps, network.patch_size or (), seed * 1000 + draw, augment=augment, device=device)  # type: ignore[arg-type]
    result = _score(model, workspace, target, split, network.patch_size or (), device, save_dir)  # type: ignore[arg-type]
    return {**result, "sources": [s.task for s in sources], "train_cases": cases, "final_loss": losses[-1], "seconds": time.perf_counter() - start}
