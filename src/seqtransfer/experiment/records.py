"""Typed results of the run store's transfers (records of kind ``transfer``) and of the methods
that are one transfer along a path (the ``method`` records of ours, its ablations and the
score baselines).

Each has ``to_dict`` (the record exactly as the store has always held it) and ``from_dict``
(a stored record read back).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from seqtransfer.pipeline.transfer import StepRecord, TransferResult


@dataclass(frozen=True)
class StoredStep:
    """One step of a stored transfer: what the report needs of a :class:`StepRecord`."""

    node: str
    dice_before: float | None
    dice_after: float | None
    seconds: float
    cached: bool

    @classmethod
    def from_step(cls, step: StepRecord) -> StoredStep:
        return cls(
            node=step.node,
            dice_before=step.dice_before,
            dice_after=step.dice_after,
            seconds=step.seconds,
            cached=step.cached,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoredStep:
        return cls(**{f.name: data[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class TransferRecord:
    """A transfer as the run store keeps it (kind ``transfer``): a :class:`TransferResult`
    without its per-case scores, recipe and device (the specification holds the recipe)."""

    target: str
    path: list[str]
    draw: int
    zero_shot_dice: float | None
    final_dice: float | None
    final_test_set_dice: list[float]
    target_train_cases: list[str]
    test_sets: list[list[str]]
    run_dir: str
    final_model: str
    steps: list[StoredStep]

    @classmethod
    def from_result(cls, result: TransferResult) -> TransferRecord:
        return cls(
            target=result.target,
            path=list(result.path),
            draw=result.draw,
            zero_shot_dice=result.zero_shot_dice,
            final_dice=result.final_dice,
            final_test_set_dice=list(result.final_test_set_dice),
            target_train_cases=list(result.target_train_cases),
            test_sets=[list(s) for s in result.test_sets],
            run_dir=result.run_dir,
            final_model=result.final_model,
            steps=[StoredStep.from_step(s) for s in result.steps],
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # the steps as dicts too

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TransferRecord:
        values = {f.name: data[f.name] for f in fields(cls)}
        values["steps"] = [StoredStep.from_dict(s) for s in data["steps"]]
        return cls(**values)


@dataclass(frozen=True)
class PathResult:
    """The result of a method that is one transfer along a path (stored with the method's
    name, target, draw and variant or number of labelled cases in front).

    Attributes:
        dice: the final model's mean Dice over the test sets.
        test_set_dice: its Dice per test set.
        path: the path, landmark first.
        zero_shot_dice: the landmark model's Dice on the target before any step.
        steps: every step of the path after the landmark.
        predictions: the folder of the final model's predictions.
    """

    dice: float | None
    test_set_dice: list[float]
    path: list[str]
    zero_shot_dice: float | None
    steps: list[StoredStep]
    predictions: str

    @classmethod
    def from_transfer(cls, record: TransferRecord, predictions: Path) -> PathResult:
        """The result of a transfer whose final predictions are in ``predictions``."""
        return cls(
            dice=record.final_dice,
            test_set_dice=record.final_test_set_dice,
            path=record.path,
            zero_shot_dice=record.zero_shot_dice,
            steps=record.steps,
            predictions=str(predictions),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # the steps as dicts too

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PathResult:
        values = {f.name: data[f.name] for f in fields(cls)}
        values["steps"] = [StoredStep.from_dict(s) for s in data["steps"]]
        return cls(**values)
