"""Binary tasks ``site-modality-objective`` (METHOD section 1).

A multi-channel, multi-label dataset is split into one task per (site, channel, label).
Tasks of one site and modality share images, tasks of one site and objective share labels;
both are read from one preprocessed array per case (:mod:`seqtransfer.data.preprocess`), so
nothing shared is computed twice.

Objectives may be grouped across datasets ("similar segmentation objectives" in the paper)
by a user-given JSON map ``{"objective": "group"}``; an objective missing from the map is its
own group.

Channel names are free text in nnU-Net (``T2``, ``t2``, ``T2w``, ``T2-weighted``). Two tasks
have the same modality when their channel names match case-insensitively after an optional
alias map ``{"T2w": "T2"}`` (:func:`load_modality_aliases`; ``modality_aliases.json`` beside
the datasets is found like ``objective_groups.json``). The task name keeps the channel name as
the dataset spells it; :attr:`Task.modality_key` is what is compared.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from seqtransfer.core.errors import DatasetError
from seqtransfer.data.dataset import Case, Dataset

_UNSAFE = re.compile(r"[\s\-/\\]+")


def safe_component(text: str) -> str:
    """A task-name component: '-', '/', '\\' and whitespace become '_'."""
    return _UNSAFE.sub("_", text.strip())


def task_name(site: str, modality: str, objective: str) -> str:
    """The task name ``site-modality-objective`` (e.g. ``16-T2-NCR``)."""
    return f"{safe_component(site)}-{safe_component(modality)}-{safe_component(objective)}"


@dataclass(frozen=True)
class Task:
    """One binary segmentation task.

    Attributes:
        name: ``site-modality-objective``.
        site: acquisition site.
        modality: channel name from ``channel_names``.
        objective: label name from ``labels``.
        group: objective group (the objective itself when ungrouped).
        modality_key: the modality as compared across datasets (alias applied, case-folded).
        dataset: the dataset it comes from.
        channel: channel index of its image.
        label_values: label values that form its foreground.
        cases: its cases, sorted by id.
    """

    name: str
    site: str
    modality: str
    objective: str
    group: str
    dataset: Dataset = field(repr=False, compare=False)
    channel: int
    label_values: tuple[int, ...]
    cases: tuple[Case, ...] = field(repr=False, compare=False)
    modality_key: str = ""

    def __post_init__(self) -> None:
        if not self.modality_key:
            object.__setattr__(self, "modality_key", modality_key(self.modality))

    @property
    def n_cases(self) -> int:
        """Number of cases of the task."""
        return len(self.cases)

    @property
    def split_key(self) -> str:
        """Seed name of the task's case splits and samples: its collection and site.

        All tasks of a site draw the same cases (the same patients are labelled, the same
        are held out), so tasks that share images or labels also share their samples.
        """
        return f"{self.dataset.name}/{self.site}"

    @property
    def collection(self) -> str:
        """The dataset's folder name: the paper's "collection"."""
        return self.dataset.name


def _load_string_map(path: str | Path, what: str, expected: str) -> dict[str, str]:
    """A JSON object of non-empty strings to non-empty strings, or one line naming the file."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DatasetError(f"{p}: {what} not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{p}: unreadable ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{p}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in data.items()
    ):
        raise DatasetError(f"{p}: expected a JSON object mapping {expected}")
    return dict(data)


def load_objective_groups(path: str | Path) -> dict[str, str]:
    """Read an objective-group map ``{"objective": "group"}`` from JSON.

    Raises:
        DatasetError: the file is missing, not JSON, or not a string-to-string object.
    """
    return _load_string_map(path, "objective-group map", "objective names to group names")


def _find_beside(roots: Sequence[str | Path], name: str) -> Path | None:
    parents = {Path(r).resolve().parent for r in roots}
    if len(parents) == 1:
        candidate = parents.pop() / name
        if candidate.is_file():
            return candidate
    return None


def find_objective_groups(roots: Sequence[str | Path]) -> Path | None:
    """The ``objective_groups.json`` shared by the datasets' parent folder, if there is one."""
    return _find_beside(roots, "objective_groups.json")


MODALITY_ALIASES_FILE = "modality_aliases.json"


def find_modality_aliases(roots: Sequence[str | Path]) -> Path | None:
    """The ``modality_aliases.json`` shared by the datasets' parent folder, if there is one."""
    return _find_beside(roots, MODALITY_ALIASES_FILE)


def load_modality_aliases(path: str | Path) -> dict[str, str]:
    """Read a modality alias map ``{"T2w": "T2"}`` (channel name -> canonical name) from JSON.

    Raises:
        DatasetError: the file is missing, not JSON, or not a string-to-string object.
    """
    return _load_string_map(path, "modality alias map", 'channel names to modality names, like {"T2w": "T2"}')


def modality_key(name: str, aliases: Mapping[str, str] | None = None) -> str:
    """The modality a channel name stands for: its alias (looked up case-insensitively), case-folded."""
    text = name.strip()
    if aliases:
        folded = {k.strip().casefold(): v for k, v in aliases.items()}
        text = folded.get(text.casefold(), text).strip()
    return text.casefold()


def split_tasks(
    datasets: Sequence[Dataset],
    objective_groups: Mapping[str, str] | None = None,
    modality_aliases: Mapping[str, str] | None = None,
) -> list[Task]:
    """Split datasets into binary tasks, one per (site, channel, label).

    Args:
        datasets: parsed datasets.
        objective_groups: objective name -> group name.
        modality_aliases: channel name -> canonical modality name (:func:`modality_key`).

    Returns:
        The tasks, sorted by name.

    Raises:
        DatasetError: two datasets produce a task of the same name (give their sites
            distinct names in sites.csv).
    """
    groups = dict(objective_groups or {})
    tasks: dict[str, Task] = {}
    for dataset in datasets:
        by_site: dict[str, list[Case]] = {}
        for case in dataset.cases:
            by_site.setdefault(case.site, []).append(case)
        for site, cases in sorted(by_site.items()):
            cases_sorted = tuple(sorted(cases, key=lambda c: c.case_id))
            for channel, modality in enumerate(dataset.channel_names):
                for objective, values in dataset.labels.items():
                    name = task_name(site, modality, objective)
                    if name in tasks:
                        other = tasks[name].dataset.root
                        raise DatasetError(
                            f"{dataset.root}: task {name!r} also comes from {other}; "
                            "give the sites distinct names in sites.csv"
                        )
                    tasks[name] = Task(
                        name=name,
                        site=site,
                        modality=modality,
                        objective=objective,
                        group=groups.get(objective, objective),
                        modality_key=modality_key(modality, modality_aliases),
                        dataset=dataset,
                        channel=channel,
                        label_values=values,
                        cases=cases_sorted,
                    )
    return [tasks[n] for n in sorted(tasks)]
