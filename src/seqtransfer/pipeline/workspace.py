"""A graph folder opened for training: its tasks, their cases and their arrays.

The graph stores, per node, the dataset folder it came from; opening it re-reads (and
re-verifies) those datasets, re-splits them into the same tasks with the objective groups the
graph recorded, and gives the preprocessed arrays of any case at the training grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np

from seqtransfer.core.errors import ConfigError, StoreError
from seqtransfer.data.dataset import Case, Dataset
from seqtransfer.data.io import read_image
from seqtransfer.data.preprocess import PreprocessCache, PreprocessConfig, median_spacing
from seqtransfer.data.tasks import Task, split_tasks
from seqtransfer.data.verify import require_valid
from seqtransfer.graph import GraphStore
from seqtransfer.training.config import NetworkConfig

CaseArrays = tuple[np.ndarray, np.ndarray]


@dataclass
class Workspace:
    """Everything training needs from a graph folder.

    Attributes:
        root: the graph folder.
        store: its store.
        graph: the graph.
        tasks: every task of the graph's datasets, by name.
        cache: preprocessed cases at the training grid (its ``config`` says which grid).
        models_root: folder of the trained models (default: the graph folder).
    """

    root: Path
    store: GraphStore
    graph: nx.Graph
    tasks: dict[str, Task]
    cache: PreprocessCache
    models_root: Path | None = None

    @property
    def models(self) -> Path:
        """Where ``zoo/``, ``finetune/`` and ``transfers/`` live: the graph folder by default.

        Experiments that evaluate several graphs of the same sources (one per target draw)
        point them at one folder, so the zoo and shared path prefixes are trained once.
        """
        return self.models_root if self.models_root is not None else self.root

    def preprocess_dict(self) -> dict[str, object]:
        """The training grid's preprocessing, as saved next to a model (``predict`` reads it)."""
        config = self.cache.config
        return {"size": config.size, "spacing": list(config.spacing) if config.spacing is not None else None}

    def task(self, name: str) -> Task:
        """A task of the graph.

        Raises:
            ConfigError: the name is not a node of the graph.
        """
        if name not in self.graph or name not in self.tasks:
            raise ConfigError(f"unknown task {name!r}: not a node of the graph in {self.root}")
        return self.tasks[name]

    def cases(self, task: Task, case_ids: Sequence[str]) -> list[Case]:
        """The task's cases with these ids, in the given order."""
        by_id = {c.case_id: c for c in task.cases}
        return [by_id[i] for i in case_ids]

    def arrays(self, task: Task, case_ids: Sequence[str]) -> list[CaseArrays]:
        """``(image [1, X, Y, Z], binary label [X, Y, Z])`` of each case, on the training grid."""
        out = []
        for case in self.cases(task, case_ids):
            image, label = self.cache.task_volume(case, task.channel, task.label_values)
            out.append(
                (np.ascontiguousarray(image[None], dtype=np.float32), np.ascontiguousarray(label, dtype=np.uint8))
            )
        return out

    def original_label(self, task: Task, case: Case) -> tuple[np.ndarray, np.ndarray]:
        """The task's binary label in the case's original voxel grid, and its affine."""
        label, props = read_image(case.label)
        return np.isin(np.round(label).astype(np.int64), task.label_values).astype(np.uint8), props.affine


def _graph_datasets(graph_file: Path, roots: Sequence[str], given: Sequence[Dataset]) -> list[Dataset]:
    """The given datasets that are the graph's: the same folder, else (a moved copy) the same
    folder name, which must then be unique.

    Raises:
        StoreError: a dataset of the graph is not given, or two given ones share its name.
    """
    by_path = {d.root.resolve(): d for d in given}
    by_name: dict[str, list[Dataset]] = {}
    for d in given:
        by_name.setdefault(d.root.resolve().name, []).append(d)
    out = []
    for root in roots:
        found = by_path.get(Path(root).resolve())
        if found is None:
            named = by_name.get(Path(root).name, [])
            if len(named) != 1:
                why = "is not given" if not named else "matches several given datasets by name"
                raise StoreError(f"{graph_file}: dataset {root} of the graph {why}")
            found = named[0]
        out.append(found)
    return out


def open_workspace(
    graph_dir: str | Path,
    size: int,
    cache_dir: str | Path | None = None,
    spacing: tuple[float, float, float] | str | None = None,
    models_root: str | Path | None = None,
    datasets: Sequence[Dataset] | None = None,
) -> Workspace:
    """Open a graph folder for training.

    Args:
        graph_dir: the graph folder.
        size: edge of the cubic training grid (the CPU preset's patch: one patch per case).
        cache_dir: preprocessed-case cache (default: the user cache).
        spacing: train at a voxel spacing instead of the cube (full-size volumes, patches):
            ``(sx, sy, sz)`` mm, or ``"median"`` for nnU-Net's per-axis median spacing of
            every case of the graph's datasets.
        models_root: folder of the trained models (default: the graph folder).
        datasets: the graph's datasets, verified already, matched by folder, else by folder
            name (the graph holds the paths of the machine that built it; a Ray worker has
            its own copy).
            Default: read and verify the graph's own paths.

    Raises:
        StoreError: the graph folder is missing or corrupt, or a dataset of the graph is not
            among ``datasets``.
        DatasetError: a dataset the graph was built from is gone or no longer valid.
        ConfigError: a bad spacing.
    """
    store = GraphStore(graph_dir)
    graph, _, _, _ = store.load()
    roots = sorted({str(d["dataset"]) for _, d in graph.nodes(data=True)})
    if datasets is None:
        datasets, _ = require_valid([Path(r) for r in roots])
    else:
        datasets = _graph_datasets(store.graph_path, roots, datasets)
    groups = {d["objective"]: d["group"] for _, d in graph.nodes(data=True)}
    aliases = {d["modality"]: d["modality_key"] for _, d in graph.nodes(data=True) if "modality_key" in d}
    tasks = {t.name: t for t in split_tasks(datasets, groups, aliases)}
    if spacing == "median":
        spacing = median_spacing(c for d in datasets for c in d.cases)
    elif isinstance(spacing, str):
        raise ConfigError(f"spacing must be 'median' or 3 numbers, got {spacing!r}")
    cache = PreprocessCache(cache_dir, PreprocessConfig(size=size, spacing=spacing))
    return Workspace(
        root=Path(graph_dir),
        store=store,
        graph=graph,
        tasks=tasks,
        cache=cache,
        models_root=Path(models_root) if models_root is not None else None,
    )


Spacing = tuple[float, float, float]


def parse_spacing(value: str, preset: str) -> Spacing | str | None:
    """A training grid written as text (``seqtransfer ... --spacing``).

    ``auto`` is the cube for the ``cpu`` preset and nnU-Net's median spacing for ``nnunet``;
    ``cube`` resamples each case to one patch (None); ``median`` is the median spacing; one
    number or three comma-separated numbers are millimetres.

    Raises:
        ConfigError: anything else.
    """
    text = value.strip().lower()
    if text == "auto":
        return None if preset == "cpu" else "median"
    if text == "cube":
        return None
    if text == "median":
        return "median"
    try:
        numbers = [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(
            f"--spacing must be auto, cube, median, a number or three comma-separated numbers (mm), got {value!r}"
        ) from None
    if len(numbers) == 1:
        numbers *= 3
    if len(numbers) != 3:
        raise ConfigError(f"--spacing needs one or three numbers, got {value!r}")
    return (numbers[0], numbers[1], numbers[2])


def open_training_workspace(graph_dir: str | Path, preset: str, spacing: str = "auto") -> tuple[Workspace, Spacing]:
    """A graph folder opened for training at a network preset's grid.

    Args:
        graph_dir: the graph folder.
        preset: the network preset (its patch edge is the cube's edge).
        spacing: the training grid as :func:`parse_spacing` reads it.

    Returns:
        The workspace and the voxel spacing its network is planned for (1 mm on the cube).

    Raises:
        ConfigError: an unknown preset or a bad spacing.
        StoreError: the graph folder is missing or corrupt.
    """
    patch = NetworkConfig(preset=preset).patch_size
    assert patch is not None  # NetworkConfig fills it from the preset
    workspace = open_workspace(graph_dir, size=patch[0], spacing=parse_spacing(spacing, preset))
    grid = workspace.cache.config.spacing
    return workspace, (grid if grid is not None else (1.0, 1.0, 1.0))
