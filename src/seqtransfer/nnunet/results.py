"""nnU-Net v2 results folders: the trained models in them, their folds, their validation Dice.

nnU-Net writes one folder per dataset, trainer, plans and configuration::

    RESULTS_DIR/DatasetXXX_Name/TRAINER__PLANS__CONFIGURATION/
        plans.json  dataset.json
        fold_N/checkpoint_final.pth
        fold_N/validation/summary.json     (nnU-Net's Dice of every validation case)

:func:`find_trained_models` accepts ``RESULTS_DIR`` itself, one dataset's folder or one
trainer folder. :func:`read_validation` reads ``summary.json``; a case's id is its prediction's
file name without the dataset's file ending. Reading only: JSON and folder names, no torch.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from seqtransfer.core.errors import ConfigError

__all__ = [
    "CONFIGURATION",
    "NotImportable",
    "TrainedModel",
    "ValidationSummary",
    "choose_fold",
    "find_trained_models",
    "parse_fold",
    "read_validation",
]

#: the nnU-Net configuration that can be imported
CONFIGURATION = "3d_fullres"
_DATASET = re.compile(r"^Dataset\d{3}_.+$")
CHECKPOINT = "checkpoint_final.pth"
SUMMARY = Path("validation") / "summary.json"


class NotImportable(ConfigError):
    """A trained nnU-Net model that cannot become a zoo model; the message says why, in one line."""


@dataclass(frozen=True)
class TrainedModel:
    """One nnU-Net trainer folder (``TRAINER__PLANS__CONFIGURATION``).

    Attributes:
        dataset: the dataset's folder name (``DatasetXXX_Name``).
        folder: the trainer folder.
        trainer: the trainer class name.
        plans: the plans name.
        configuration: the configuration (``3d_fullres`` is the one imported).
    """

    dataset: str
    folder: Path
    trainer: str
    plans: str
    configuration: str

    @property
    def name(self) -> str:
        """``DatasetXXX_Name/TRAINER__PLANS__CONFIGURATION``, as the import's messages name it."""
        return f"{self.dataset}/{self.folder.name}"

    def folds(self) -> list[str]:
        """The folds with a final checkpoint (``all``, ``0``, ``1``, ...), numbers in order."""
        found = [
            p.name.removeprefix("fold_")
            for p in self.folder.glob("fold_*")
            if p.is_dir() and (p / CHECKPOINT).is_file()
        ]
        return sorted(found, key=lambda f: (f != "all", int(f) if f.isdigit() else math.inf, f))


def _trainer_folder(path: Path, dataset: str) -> TrainedModel | None:
    parts = path.name.split("__")
    if len(parts) != 3 or not all(parts) or not path.is_dir():
        return None
    return TrainedModel(dataset=dataset, folder=path, trainer=parts[0], plans=parts[1], configuration=parts[2])


def _dataset_models(folder: Path) -> list[TrainedModel]:
    found = (_trainer_folder(p, folder.name) for p in sorted(folder.iterdir()) if p.is_dir())
    return [m for m in found if m is not None]


def find_trained_models(results_dir: str | Path) -> list[TrainedModel]:
    """Every trainer folder under ``results_dir`` (a results root, a dataset folder or a trainer folder).

    Raises:
        ConfigError: the folder is missing or holds no nnU-Net trainer folder.
    """
    root = Path(results_dir)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder (expected nnU-Net's results folder)")
    own = _trainer_folder(root, root.resolve().parent.name)
    if own is not None and (root / "plans.json").is_file():
        return [own]
    models = _dataset_models(root)
    if not models:
        for child in sorted(root.iterdir()):
            if child.is_dir() and _DATASET.match(child.name):
                models += _dataset_models(child)
    if not models:
        raise ConfigError(
            f"{root}: no nnU-Net results (expected DatasetXXX_Name/TRAINER__PLANS__{CONFIGURATION} folders)"
        )
    return models


def parse_fold(text: str | None) -> str | None:
    """A ``--fold`` value: ``all`` or a fold number; None chooses (:func:`choose_fold`).

    Raises:
        ConfigError: anything else.
    """
    if text is None:
        return None
    value = text.strip().lower()
    if value == "all" or value.isdigit():
        return str(int(value)) if value.isdigit() else value
    raise ConfigError(f"--fold must be 'all' or a fold number, got {text!r}")


def choose_fold(model: TrainedModel, fold: str | None) -> str:
    """The fold to import: ``fold`` when given, else ``all`` when trained, else the lowest number.

    Raises:
        NotImportable: no fold has a final checkpoint, or the asked one has none.
    """
    folds = model.folds()
    if not folds:
        raise NotImportable(f"no fold_*/{CHECKPOINT} (the training has not finished)")
    if fold is None:
        return folds[0]
    if fold not in folds:
        raise NotImportable(f"fold {fold} has no {CHECKPOINT} (trained folds: {', '.join(folds)})")
    return fold


@dataclass(frozen=True)
class ValidationSummary:
    """nnU-Net's validation Dice of one fold.

    Attributes:
        path: the ``summary.json``.
        per_case: ``{case id: {label: Dice}}`` (NaN where reference and prediction are empty).
        means: ``{label: mean Dice over the validation cases}`` (nnU-Net's ``mean``).
    """

    path: Path
    per_case: dict[str, dict[str, float]]
    means: dict[str, float]

    def dice(self, cases: Sequence[str], labels: Sequence[str]) -> tuple[float, dict[str, float], str]:
        """O of a task: the mean over its validated ``cases`` of the mean Dice over ``labels``.

        Returns:
            O, the Dice of each validated case of ``cases``, and where O comes from in words.
            When none of ``cases`` was validated, O is the fold's mean of ``labels``.
        """
        wanted = set(cases)
        per_case = {
            case: _mean([scores.get(label, math.nan) for label in labels])
            for case, scores in sorted(self.per_case.items())
            if case in wanted
        }
        if per_case:
            empty = sum(math.isnan(v) for v in per_case.values())
            where = f"{len(per_case)} validated case(s) of the site"
            if empty:  # nnU-Net's Dice is undefined where reference and prediction are both empty
                where += f" ({empty} without a Dice: empty in reference and prediction)"
            return _mean(per_case.values()), per_case, where
        fold_mean = _mean([self.means.get(label, math.nan) for label in labels])
        return fold_mean, {}, "fold mean: no case of the site was validated"


def _mean(values: Any) -> float:
    array = np.asarray(list(values), dtype=np.float64)
    finite = array[np.isfinite(array)]
    return float(finite.mean()) if finite.size else math.nan


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def read_validation(fold_dir: Path, file_ending: str) -> ValidationSummary:
    """nnU-Net's ``validation/summary.json`` of a fold.

    Args:
        fold_dir: the ``fold_N`` folder.
        file_ending: the dataset's file ending (stripped from the prediction file names).

    Raises:
        NotImportable: the file is missing or not nnU-Net's summary.
    """
    path = fold_dir / SUMMARY
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise NotImportable(
            f"{path}: not found (O, the model's validation Dice, is read from it; run nnU-Net's validation)"
        ) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotImportable(f"{path}: unreadable validation summary ({exc})") from exc
    try:
        per_case: dict[str, dict[str, float]] = {}
        for entry in data["metric_per_case"]:
            name = Path(str(entry["prediction_file"])).name
            case = name[: -len(file_ending)] if file_ending and name.endswith(file_ending) else name.split(".")[0]
            per_case[case] = {str(label): _number(m.get("Dice")) for label, m in entry["metrics"].items()}
        means = {str(label): _number(m.get("Dice")) for label, m in data.get("mean", {}).items()}
    except (KeyError, TypeError, AttributeError) as exc:
        raise NotImportable(f"{path}: not nnU-Net's validation summary (no metric_per_case Dice: {exc})") from exc
    return ValidationSummary(path=path, per_case=per_case, means=means)


def read_json(path: Path, what: str) -> Mapping[str, Any]:
    """A JSON object of the results folder.

    Raises:
        NotImportable: missing, unreadable or not an object.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise NotImportable(f"{path}: {what} not found") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotImportable(f"{path}: unreadable {what} ({exc})") from exc
    if not isinstance(data, dict):
        raise NotImportable(f"{path}: {what} is not a JSON object")
    return data
