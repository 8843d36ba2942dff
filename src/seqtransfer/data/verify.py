"""Dataset integrity checks, a superset of nnU-Net's ``verify_dataset_integrity``.

Structural checks (dataset.json, folders, missing and extra files, ``numTraining``, sites)
come from :func:`seqtransfer.data.dataset.parse_dataset`. This module adds what needs the
voxels: unreadable or non-NIfTI files, dimensionality, NaN or inf, image/label shape and
spacing mismatches, label values not declared in dataset.json; affine mismatches and
all-background labels are warnings (nnU-Net's own all-background warning never fires).

Every command that reads datasets calls :func:`require_valid` first, so bad data is refused
before anything is written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqtransfer.core.errors import DatasetError
from seqtransfer.core.progress import Progress, relabel, report
from seqtransfer.data.dataset import Case, Dataset, Problem, parse_dataset
from seqtransfer.data.io import read_image
from seqtransfer.data.tasks import (
    Task,
    find_modality_aliases,
    find_objective_groups,
    load_modality_aliases,
    load_objective_groups,
    split_tasks,
)

SPACING_RTOL = 1e-3
AFFINE_ATOL = 1e-3


def _check_case(dataset: Dataset, case: Case) -> list[Problem]:
    problems: list[Problem] = []
    missing = [p for p in (*case.images, case.label) if not p.is_file()]
    for path in missing:
        kind = "label" if path == case.label else "image"
        problems.append(Problem("error", path, f"{kind} file of case {case.case_id!r} not found"))
    if missing:
        return problems
    try:
        label, label_props = read_image(case.label, dtype=np.float32)
    except DatasetError as exc:
        return [Problem("error", case.label, str(exc).split(": ", 1)[-1])]
    if label.ndim != 3:
        problems.append(Problem("error", case.label, f"expected a 3-D label, found {label.ndim}-D shape {label.shape}"))
        return problems
    if not np.isfinite(label).all():
        problems.append(Problem("error", case.label, "label contains NaN or inf"))
    else:
        values = np.unique(label)
        if not np.array_equal(values, np.round(values)):
            problems.append(Problem("error", case.label, "label contains non-integer values"))
        undeclared = sorted(set(int(v) for v in np.round(values)) - dataset.declared_values)
        if undeclared:
            problems.append(
                Problem(
                    "error",
                    case.label,
                    f"label values {undeclared} not declared in dataset.json "
                    f"(declared: {sorted(dataset.declared_values)})",
                )
            )
        if values.size == 1 and values[0] == 0:
            problems.append(Problem("warning", case.label, "label is all background"))
    for channel, path in enumerate(case.images):
        try:
            image, props = read_image(path, dtype=np.float32)
        except DatasetError as exc:
            problems.append(Problem("error", path, str(exc).split(": ", 1)[-1]))
            continue
        if image.ndim != 3:
            problems.append(
                Problem(
                    "error",
                    path,
                    f"expected a 3-D image (one file per channel), found {image.ndim}-D shape {image.shape}",
                )
            )
            continue
        if not np.isfinite(image).all():
            problems.append(Problem("error", path, f"image (channel {channel}) contains NaN or inf"))
        if image.shape != label.shape:
            problems.append(Problem("error", path, f"shape {image.shape} differs from its label's {label.shape}"))
            continue
        if not np.allclose(props.spacing, label_props.spacing, rtol=SPACING_RTOL):
            spacing = tuple(round(s, 4) for s in props.spacing)
            label_spacing = tuple(round(s, 4) for s in label_props.spacing)
            problems.append(Problem("error", path, f"spacing {spacing} differs from its label's {label_spacing}"))
        elif not np.allclose(props.affine, label_props.affine, atol=AFFINE_ATOL):
            problems.append(Problem("warning", path, "affine (origin or direction) differs from its label's"))
    return problems


_CASE_MEMO: dict[tuple[object, ...], list[Problem]] = {}
#: checks not yet recorded on disk: written only when a whole verification finds no error,
#: so that a refused command writes nothing at all
_PENDING: dict[tuple[object, ...], list[Problem]] = {}


def _record_file(key: tuple[object, ...]) -> Path:
    from seqtransfer.core.config import default_cache_dir

    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    return default_cache_dir() / "verified" / digest[:2] / f"{digest}.json"


def _read_record(key: tuple[object, ...]) -> list[Problem] | None:
    try:
        rows = json.loads(_record_file(key).read_text())
        return [Problem(str(r["severity"]), Path(r["path"]), str(r["message"])) for r in rows]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_record(key: tuple[object, ...], problems: list[Problem]) -> None:
    from seqtransfer.core.atomic import write_json

    try:
        write_json(
            _record_file(key), [{"severity": p.severity, "path": str(p.path), "message": p.message} for p in problems]
        )
    except Exception:  # noqa: BLE001 - a record is an optimisation; a read-only cache only costs time
        pass


def _check_case_memo(dataset: Dataset, case: Case) -> list[Problem]:
    """:func:`_check_case`, remembered while the case's files are unchanged.

    Every command that reads datasets verifies them first; a long run (or a worker process)
    opens the same datasets many times, and re-reading every voxel each time would dominate.
    The key holds each file's path, size and modification time and what the check compares
    against (declared label values, channel count), so an edited file is checked again. The
    result is remembered in the process and in a verification record in the user cache
    (``$SEQTRANSFER_CACHE/verified``), so the next command does not read the voxels again.
    """
    try:
        stats = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in (*case.images, case.label))
    except OSError:
        return _check_case(dataset, case)
    key = (stats, tuple(sorted(dataset.declared_values)), len(dataset.channel_names))
    if key not in _CASE_MEMO:
        recorded = _read_record(key)
        if recorded is None:
            recorded = _check_case(dataset, case)
            _PENDING[key] = recorded
        _CASE_MEMO[key] = recorded
    return list(_CASE_MEMO[key])


def verify_dataset(root: str | Path, progress: Progress | None = None) -> list[Problem]:
    """Check a dataset and return every problem found.

    Args:
        root: the dataset folder.
        progress: told the cases done and total while voxels are checked (an unnamed stage).

    Returns:
        Every problem, errors and warnings, each naming its file. Empty when clean.
    """
    dataset, problems = parse_dataset(root)
    if dataset is None:
        return problems
    total = len(dataset.cases)
    for done, case in enumerate(dataset.cases, start=1):
        problems.extend(_check_case_memo(dataset, case))
        report(progress, "", done, total)
    return problems


def verify_datasets(roots: Sequence[str | Path], progress: Progress | None = None) -> list[Problem]:
    """Check several datasets; see :func:`verify_dataset`."""
    problems: list[Problem] = []
    for root in roots:
        name = Path(root).name
        problems.extend(verify_dataset(root, relabel(progress, name)))
    if not any(p.severity == "error" for p in problems):
        for key, recorded in list(_PENDING.items()):
            _write_record(key, recorded)
    _PENDING.clear()
    return problems


def require_valid(roots: Sequence[str | Path], progress: Progress | None = None) -> tuple[list[Dataset], list[Problem]]:
    """Verify datasets and parse them, refusing any with an error.

    Args:
        roots: dataset folders.
        progress: forwarded to :func:`verify_datasets`.

    Returns:
        The parsed datasets and the warnings.

    Raises:
        DatasetError: with every problem line when any check fails.
    """
    if not roots:
        raise DatasetError("no dataset folder given")
    problems = verify_datasets(roots, progress)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise DatasetError(f"{first.path}: {first.message}{more}", [str(p) for p in errors])
    datasets = []
    for root in roots:
        dataset, _ = parse_dataset(root)
        assert dataset is not None  # no error was found
        datasets.append(dataset)
    return datasets, [p for p in problems if p.severity == "warning"]


@dataclass(frozen=True)
class VerifiedTasks:
    """The binary tasks of verified datasets.

    Attributes:
        tasks: every task site-modality-objective.
        warnings: the verification's warnings (errors are refused).
        groups_file: the objective-group map used, if any.
        aliases_file: the modality alias map used, if any.
    """

    tasks: list[Task]
    warnings: list[Problem]
    groups_file: Path | None
    aliases_file: Path | None


def verified_tasks(
    roots: Sequence[str | Path],
    groups: str | Path | None = None,
    modalities: str | Path | None = None,
    progress: Progress | None = None,
) -> VerifiedTasks:
    """Verify datasets and split them into tasks (``seqtransfer tasks`` and ``graph build``).

    Args:
        roots: dataset folders.
        groups: objective-group map (default: ``objective_groups.json`` beside the datasets).
        modalities: modality alias map (default: ``modality_aliases.json`` beside them).
        progress: forwarded to :func:`verify_datasets`.

    Raises:
        DatasetError: a dataset or map with an error.
    """
    datasets, warnings = require_valid(roots, progress)
    groups_file = Path(groups) if groups is not None else find_objective_groups(roots)
    aliases_file = Path(modalities) if modalities is not None else find_modality_aliases(roots)
    group_map = load_objective_groups(groups_file) if groups_file is not None else None
    aliases = load_modality_aliases(aliases_file) if aliases_file is not None else None
    return VerifiedTasks(split_tasks(datasets, group_map, aliases), warnings, groups_file, aliases_file)
