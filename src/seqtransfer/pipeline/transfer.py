"""Sequential transfer along a path (paper III-B, METHOD section 6).

Starting from the landmark's zoo model, each node of the path after the landmark is one
fine-tuning step on ``n_train`` (3) of its cases, the target step included: the encoder
(input block, down-sampling blocks, bottleneck) is frozen and checked bit-identical after the
step; the decoder is trained with Dice + cross-entropy plus the EWC penalty
``lambda_ewc * sum F_k (theta_k - theta*_k)^2`` whose Fisher is estimated on the whole
training set of the previous task (the landmark's zoo training set for the first step) and
normalised to mean 1. Before the first step and after every step, the model is scored on
the target's three test sets, so a step that hurts is visible.

A step's checkpoint lives in ``GRAPH_DIR/finetune/KEY/`` where KEY hashes the landmark
model, every step so far (task and cases) and the fine-tuning configuration: two paths that
share a prefix train it once, and an interrupted run resumes inside the step it was in.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqtransfer.core.atomic import write_json
from seqtransfer.core.errors import ConfigError
from seqtransfer.core.fetch import need
from seqtransfer.core.progress import Progress, relabel
from seqtransfer.data.splits import TargetSplit, sample_cases, target_split
from seqtransfer.data.tasks import Task
from seqtransfer.pipeline.config import FinetuneConfig, ZooConfig
from seqtransfer.pipeline.score import cached_scores, score_test_sets
from seqtransfer.pipeline.workspace import Workspace
from seqtransfer.pipeline.zoo import ZooModel, load_model, train_source, zoo_split
from seqtransfer.training.checkpoint import CHECKPOINT_FINAL, load_weights, save_checkpoint
from seqtransfer.training.ewc import anchor_from, case_batches, estimate_fisher
from seqtransfer.training.loop import train
from seqtransfer.training.loss import SegmentationLoss
from seqtransfer.training.network import encoder_parameters, select_device


@dataclass(frozen=True)
class StepRecord:
    """What one step of the path did."""

    node: str
    train_cases: list[str]
    dice_before: float | None
    dice_after: float | None
    test_set_dice_after: list[float]
    encoder_unchanged: bool
    seconds: float
    cached: bool
    folder: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (an entry of ``metrics.json``'s ``steps``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepRecord:
        """The step of :meth:`to_dict`'s form."""
        return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class TransferResult:
    """What a transfer along a path did: ``metrics.json`` of its run folder, and the folder.

    Attributes:
        target: the target task.
        path: task names from the landmark to the target.
        draw: the draw of the target's training cases.
        landmark_model: the landmark's zoo model folder.
        landmark_source_dice: its held-out Dice (O).
        zero_shot_dice: the landmark model's mean Dice over the target's test sets (None without test sets).
        zero_shot_test_set_dice: its Dice per test set.
        final_dice: the final model's mean Dice over the test sets (None without test sets).
        final_test_set_dice: its Dice per test set.
        final_model: the final step's model folder.
        target_train_cases: the cases of the target step.
        mode: the protocol, or all labelled cases (no test sets).
        test_sets: the target's test sets.
        per_case: the final model's Dice per test case.
        steps: every step of the path after the landmark.
        finetune: the fine-tuning recipe (:meth:`FinetuneConfig.to_dict`).
        zoo: how the landmark's zoo model was trained (:meth:`ZooConfig.to_dict`).
        device: where it ran.
        run_dir: the run folder (``metrics.json``, predictions).
    """

    target: str
    path: list[str]
    draw: int
    landmark_model: str
    landmark_source_dice: float
    zero_shot_dice: float | None
    zero_shot_test_set_dice: list[float]
    final_dice: float | None
    final_test_set_dice: list[float]
    final_model: str
    target_train_cases: list[str]
    mode: str
    test_sets: list[list[str]]
    per_case: dict[str, float]
    steps: list[StepRecord]
    finetune: dict[str, Any]
    zoo: dict[str, Any]
    device: str
    run_dir: str

    def metrics(self) -> dict[str, Any]:
        """The run folder's ``metrics.json``: everything but the folder itself."""
        data = self.to_dict()
        del data["run_dir"]
        return data

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``metrics.json`` and ``run_dir``."""
        return asdict(self)  # the steps as dicts too

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TransferResult:
        """The result of :meth:`to_dict`'s form (or of ``metrics.json`` with ``run_dir`` added)."""
        values = {f.name: data[f.name] for f in fields(cls)}
        values["steps"] = [StepRecord.from_dict(s) for s in data["steps"]]
        return cls(**values)


def validate_path(workspace: Workspace, path: Sequence[str], target: str) -> None:
    """A transfer path: known tasks, landmark a source, target last, no repeats.

    Raises:
        ConfigError: with a one-line reason.
    """
    if len(path) < 2:
        raise ConfigError("a transfer path needs the landmark and the target (at least 2 tasks)")
    unknown = [n for n in path if n not in workspace.graph or n not in workspace.tasks]
    if unknown:
        raise ConfigError(f"path through unknown task(s): {', '.join(unknown)}")
    if path[-1] != target:
        raise ConfigError(f"the path must end at the target {target!r}, it ends at {path[-1]!r}")
    if len(set(path)) != len(path):
        raise ConfigError("the path visits a task twice")
    not_sources = [n for n in path[:-1] if workspace.graph.nodes[n].get("role") != "source"]
    if not_sources:
        raise ConfigError(f"path node(s) {', '.join(not_sources)} are not sources of the graph")


def _step_key(
    parent: str, node: str, cases: Sequence[str], case_keys: Sequence[str], config: FinetuneConfig, index: int
) -> str:
    recipe = {k: v for k, v in config.to_dict().items() if k != "checkpoint_every"}
    blob = json.dumps(
        {
            "parent": parent,
            "node": node,
            "cases": list(cases),
            "content": list(case_keys),
            "config": recipe,
            "index": index,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _cached_fisher(
    model_folder: Path,
    model: nn.Module,
    workspace: Workspace,
    task: Any,
    case_ids: Sequence[str],
    patch: Sequence[int],
    loss_fn: SegmentationLoss,
    device: torch.device,
    every_parameter: bool = False,
) -> dict[str, torch.Tensor]:
    """The Fisher of a trained model on its training set, kept in the model's folder.

    A model's Fisher on a fixed set of cases never changes, and every path leaving the same
    model (the landmark's zoo model above all) needs it: it is computed once.
    """
    key = {"task": task.name, "cases": [workspace.cache.key(c) for c in workspace.cases(task, case_ids)]}
    if every_parameter:
        key["parameters"] = "all"
    blob = json.dumps(key)
    file = model_folder / "fisher" / f"{hashlib.sha256(blob.encode()).hexdigest()[:20]}.pth"
    need(file)
    if file.exists():
        try:
            saved = torch.load(file, map_location=device, weights_only=True)
            if isinstance(saved, dict) and all(isinstance(v, torch.Tensor) for v in saved.values()):
                return saved
        except Exception:  # noqa: BLE001 - a damaged cache file is recomputed
            pass
    names = dict(model.named_parameters()) if every_parameter else None
    fisher = estimate_fisher(
        model, case_batches(workspace.arrays(task, case_ids), patch), loss_fn, device, parameters=names
    )
    save_checkpoint(file, {k: v.detach().cpu() for k, v in fisher.items()})
    return fisher


def _encoder_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in encoder_parameters(model).items()}


def path_step_cases(task: Task, zoo: ZooConfig, config: FinetuneConfig) -> list[str]:
    """The cases an intermediate step of a path trains on.

    A seeded sample of ``config.n_train`` of the cases the task's zoo model trains on (all of
    them when there are fewer): the few labelled cases a step between the landmark and the
    target stands for (METHOD section 6).
    """
    train_ids, _ = zoo_split(task, zoo)
    return list(sample_cases(task.split_key, train_ids, config.n_train, seed=config.seed, purpose="path-step"))


def run_transfer(
    workspace: Workspace,
    target: str,
    path: Sequence[str],
    zoo: ZooConfig,
    config: FinetuneConfig,
    out_dir: Path | None = None,
    resume: bool = True,
    progress: Progress | None = None,
    target_cases: Sequence[str] | None = None,
    landmark: ZooModel | None = None,
    split: TargetSplit | None = None,
) -> TransferResult:
    """Fine-tune along ``path`` (landmark first, target last) and score every step.

    Two modes. The evaluation protocol (``target_cases`` None): the target step trains on
    draw ``config.draw`` of the target's split and every step is scored on its test sets.
    A user's target (``target_cases`` given, e.g. every labelled case of a new target): the
    target step trains on those cases and nothing is scored (there are no test sets);
    the Dice entries of the metrics are None.

    Args:
        workspace: the opened graph folder.
        target: the target task.
        path: task names from the landmark to the target.
        zoo: how the landmark's zoo model is (or was) trained.
        config: the fine-tuning recipe.
        target_cases: train the target step on these cases, without test sets.
        split: the protocol mode with this split of the target instead of
            :func:`~seqtransfer.data.splits.target_split`'s (e.g. the sample-size study's).
        landmark: the landmark's zoo model when it exists already (else trained or found
            with ``zoo``).
        out_dir: run folder for ``metrics.json`` and the predictions; default
            ``GRAPH_DIR/transfers/TARGET/RUN_KEY``.
        resume: continue an interrupted step from its last checkpoint.
        progress: every training step, with the trained node's name as the stage and its loss.

    Returns:
        The run's result (its metrics also written to ``out_dir/metrics.json``).

    Raises:
        ConfigError: a bad path, or a target without enough cases for the protocol.
    """
    validate_path(workspace, path, target)
    target_task = workspace.task(target)
    if target_cases is None:
        if split is None:
            split = target_split(
                target_task.split_key, [c.case_id for c in target_task.cases], seed=config.seed, n_train=config.n_train
            )
        if config.draw >= len(split.draws):
            raise ConfigError(f"draw must be below {len(split.draws)}, got {config.draw}")
        target_train = list(split.draws[config.draw])
        test_sets: tuple[tuple[str, ...], ...] = split.test_sets
    else:
        known = {c.case_id for c in target_task.cases}
        target_train = sorted(dict.fromkeys(target_cases))
        unknown = [c for c in target_train if c not in known]
        if not target_train or unknown:
            raise ConfigError(
                f"target {target!r}: no labelled case(s) {', '.join(unknown)}"
                if unknown
                else f"target {target!r}: no training case given"
            )
        test_sets = ()
    test_ids = sorted({c for s in test_sets for c in s})
    device = select_device()
    if landmark is None:
        landmark = train_source(
            workspace,
            path[0],
            zoo,
            progress=relabel(progress, path[0]),
        )
    elif landmark.task != path[0]:
        raise ConfigError(f"the landmark model is of {landmark.task!r}, the path starts at {path[0]!r}")
    model, network = load_model(landmark.folder, device)
    patch = tuple(network.patch_size or ())

    def evaluate(
        model_folder: Path, save_dir: Path | None = None
    ) -> tuple[float | None, list[float], dict[str, float]]:
        if not test_sets:
            return None, [], {}
        scores = cached_scores(model_folder, model, workspace, target_task, test_ids, patch, device, save_dir=save_dir)
        score, per_set = score_test_sets(scores, test_sets)
        return score, per_set, scores

    zero_shot, zero_sets, _ = evaluate(landmark.folder)
    previous_task = workspace.task(path[0])
    previous_cases = list(landmark.train_cases)
    previous_folder = landmark.folder
    parent = landmark.key
    records: list[StepRecord] = []
    dice_before = zero_shot
    loss_fn = SegmentationLoss()
    final_scores: dict[str, float] = {}
    run_dir: Path | None = None
    for index, node in enumerate(path[1:], start=1):
        task = workspace.task(node)
        cases = list(target_train) if node == target else path_step_cases(task, zoo, config)
        key = _step_key(
            parent, node, cases, [workspace.cache.key(c) for c in workspace.cases(task, cases)], config, index
        )
        folder = workspace.models / "finetune" / key
        before = _encoder_snapshot(model)
        start = time.perf_counter()
        need(folder)
        cached = (folder / CHECKPOINT_FINAL).exists()
        if cached:
            load_weights(model, folder / CHECKPOINT_FINAL)
        else:
            fisher = _cached_fisher(
                previous_folder,
                model,
                workspace,
                previous_task,
                previous_cases,
                patch,
                loss_fn,
                device,
                every_parameter=not config.freeze_encoder,
            )
            anchor = anchor_from(model)
            write_json(
                folder / "config.json",
                {
                    "node": node,
                    "parent": parent,
                    "train_cases": cases,
                    "finetune": config.to_dict(),
                    "network": network.to_dict(),
                    "preprocess": workspace.preprocess_dict(),
                },
            )
            train(
                model,
                workspace.arrays(task, cases),
                config.train_config(index),
                patch,
                out_dir=folder,
                resume=resume,
                fisher=fisher,
                anchor=anchor,
                device=device,
                progress=relabel(progress, node),
            )
        after = _encoder_snapshot(model)
        unchanged = all(torch.equal(before[k], after[k]) for k in before)
        if config.freeze_encoder and not unchanged:  # a programming error, never bad input: stay loud
            raise RuntimeError(f"encoder weights changed during the fine-tuning step on {node}")
        is_last = node == target
        # the run folder is named by the last step's key; the final scoring writes its predictions
        run_dir = (
            (out_dir or workspace.models / "transfers" / target / hashlib.sha256(key.encode()).hexdigest()[:12])
            if is_last
            else None
        )
        dice_after, sets_after, scores = evaluate(
            folder, save_dir=run_dir / "predictions" if run_dir is not None and test_sets else None
        )
        records.append(
            StepRecord(
                node=node,
                train_cases=cases,
                dice_before=dice_before,
                dice_after=dice_after,
                test_set_dice_after=sets_after,
                encoder_unchanged=unchanged,
                seconds=time.perf_counter() - start,
                cached=cached,
                folder=str(folder),
            )
        )
        dice_before = dice_after
        previous_task, previous_cases, parent, previous_folder = task, cases, key, folder
        if is_last:
            final_scores = scores
    assert run_dir is not None  # validate_path guarantees the path ends at the target
    result = TransferResult(
        target=target,
        path=list(path),
        draw=config.draw,
        landmark_model=str(landmark.folder),
        landmark_source_dice=landmark.dice,
        zero_shot_dice=zero_shot,
        zero_shot_test_set_dice=zero_sets,
        final_dice=records[-1].dice_after,
        final_test_set_dice=records[-1].test_set_dice_after,
        final_model=records[-1].folder,
        target_train_cases=list(target_train),
        mode="protocol" if test_sets else "all labelled cases (no test sets)",
        test_sets=[list(s) for s in test_sets],
        per_case=final_scores,
        steps=records,
        finetune=config.to_dict(),
        zoo=zoo.to_dict(),
        device=str(device),
        run_dir=str(run_dir),
    )
    write_json(run_dir / "metrics.json", result.metrics())
    return result
