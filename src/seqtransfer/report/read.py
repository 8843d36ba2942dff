"""What the report of a run folder shows, read once: the run store, the resolved configuration,
draw 0's graph and the predictions the overlays show, as typed data (:class:`ReportData`).

Every lookup into the stored configuration by its keys happens here; the tables
(:mod:`seqtransfer.report.tables`) and the writing (:mod:`seqtransfer.report.render`) see
typed fields. Nothing is trained or scored again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from seqtransfer.core.errors import StoreError
from seqtransfer.data.dataset import parse_dataset
from seqtransfer.data.io import read_image
from seqtransfer.data.tasks import split_tasks
from seqtransfer.experiment.layout import RunLayout
from seqtransfer.experiment.store import RunStore, calibrations, protocol_direct_transfers, protocol_scores
from seqtransfer.graph.store import GraphStore
from seqtransfer.report.tables import TABLE_I

#: targets whose first test case the overlay figure shows
OVERLAY_TARGETS = 3


@dataclass(frozen=True)
class RunScale:
    """The run's scale as the report's header states it.

    Each value is the one the resolved configuration file holds (lists stay lists), so the
    header prints it as written.
    """

    architecture: str
    filters: Sequence[int]
    patch_size: Sequence[int]
    zoo_steps: int
    zoo_max_train: int
    finetune_steps: int
    lr: float
    lambda_ewc: float
    augment: bool
    scratch_steps: int
    #: the N nearest sources by w; None or 0: every connected source
    max_sources: int | None
    random_landmarks: int


@dataclass(frozen=True)
class RunConfiguration:
    """The run's ``config.resolved.json``: where it is, the package versions, the scale."""

    path: Path
    #: whether the file exists and holds anything
    recorded: bool
    versions: dict[str, str]
    #: None when the file lacks a setting the header shows
    scale: RunScale | None


@dataclass(frozen=True)
class SourceModel:
    """A trained zoo model of the run: its task and held-out Dice (None: undefined)."""

    task: str
    dice: float | None


@dataclass(frozen=True)
class Overlay:
    """One row of the overlay figure: a target's first test case, its truth, each method's prediction."""

    label: str
    image: np.ndarray
    truth: np.ndarray
    predictions: dict[str, np.ndarray]


@dataclass(frozen=True)
class ReportData:
    """Everything the report of a run folder shows.

    The records are the run store's results (``method``, ``sample_size``, ``selection``
    records and the protocol's scores), the inputs of :mod:`seqtransfer.report.tables`.
    """

    layout: RunLayout
    configuration: RunConfiguration
    methods: list[dict[str, Any]]
    zoo: list[SourceModel]
    sample_size: list[dict[str, Any]]
    selections: list[dict[str, Any]]
    scores: list[dict[str, Any]]
    #: ``(source, target, draw) -> direct-transfer Dice`` of the protocol
    direct: dict[tuple[str, str, int], float]
    #: per target, its leave-one-site-out ``(alpha, beta)``
    calibrated: dict[str, tuple[float, float]]
    #: draw 0's graph
    graph: nx.Graph
    h_scale: float
    overlays: list[Overlay]

    @property
    def name(self) -> str:
        """The run folder's name (the report's title)."""
        return self.layout.root.name

    @property
    def targets(self) -> list[str]:
        """The targets with a finished method, in name order."""
        return sorted({str(m["target"]) for m in self.methods})

    @property
    def draws(self) -> list[int]:
        """The draws with a finished method."""
        return sorted({int(m["draw"]) for m in self.methods})

    @property
    def collections(self) -> dict[str, str]:
        """Each target's collection (from draw 0's graph)."""
        return {t: str(self.graph.nodes[t].get("collection", "")) for t in self.targets}


def read_report_data(run_dir: str | Path) -> ReportData:
    """Read what the report of a run folder shows.

    Raises:
        StoreError: the folder holds no finished run, or its graph or configuration file is unreadable.
    """
    layout = RunLayout(run_dir)
    if not layout.store_path.exists():
        raise StoreError(f"{layout.root}: no runs.sqlite (not a run folder of `seqtransfer run`)")
    store = RunStore(layout.store_path)
    methods = _results(store, "method")
    if not methods:
        raise StoreError(f"{layout.root}: the run has no finished method yet")
    graph, _, h_scale, _ = GraphStore(layout.graph_dir(0)).load()
    targets = sorted({str(m["target"]) for m in methods})
    return ReportData(
        layout=layout,
        configuration=read_configuration(layout.config_path),
        methods=methods,
        zoo=[
            SourceModel(str(r["task"]), None if r.get("dice") is None else float(r["dice"]))
            for r in _results(store, "zoo")
        ],
        sample_size=_results(store, "sample_size"),
        selections=_results(store, "selection"),
        scores=protocol_scores(store),  # not the sample-size study's, not the whole-network ablation's
        direct=protocol_direct_transfers(store),
        calibrated=calibrations(store),
        graph=graph,
        h_scale=h_scale,
        overlays=read_overlays(methods, targets[:OVERLAY_TARGETS], graph),
    )


def _results(store: RunStore, kind: str) -> list[dict[str, Any]]:
    """The results of the finished runs of a kind."""
    return [r.result for r in store.records(kind, "done") if r.result]


def read_configuration(path: Path) -> RunConfiguration:
    """The resolved configuration file of a run (not recorded when absent).

    Raises:
        StoreError: the file exists but cannot be read as JSON.
    """
    conf: dict[str, Any] = {}
    if path.exists():
        try:
            conf = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise StoreError(f"{path}: unreadable ({exc})") from exc
    return RunConfiguration(
        path=path, recorded=bool(conf), versions=dict(conf.get("versions") or {}), scale=_scale(conf.get("config", {}))
    )


def _scale(config: Any) -> RunScale | None:
    """The header's settings from the resolved configuration; None when one is missing."""
    try:
        net, zoo, ft, pr = config["network"], config["zoo"], config["finetune"], config["protocol"]
        return RunScale(
            architecture=net["architecture"],
            filters=net["filters"],
            patch_size=net["patch_size"],
            zoo_steps=zoo["steps"],
            zoo_max_train=zoo["max_train"],
            finetune_steps=ft["steps"],
            lr=ft["lr"],
            lambda_ewc=ft["lambda_ewc"],
            augment=ft["augment"],
            scratch_steps=pr["scratch_steps"],
            max_sources=pr.get("max_sources"),
            random_landmarks=pr["random_landmarks"],
        )
    except (KeyError, TypeError):
        return None


def read_overlays(methods: Sequence[Mapping[str, Any]], targets: Sequence[str], graph: nx.Graph) -> list[Overlay]:
    """Per target, draw 0's first saved test case: its image, truth and each method's prediction.

    Ours and the methods of Table I with saved predictions; a target without any is left out.
    """
    rows = []
    for target in targets:
        row = _overlay(methods, target, graph)
        if row is not None:
            rows.append(row)
    return rows


def _overlay(methods: Sequence[Mapping[str, Any]], target: str, graph: nx.Graph) -> Overlay | None:
    dataset, _ = parse_dataset(Path(graph.nodes[target]["dataset"]))
    if dataset is None:  # the dataset no longer parses: no images to show
        return None
    task = next((t for t in split_tasks([dataset]) if t.name == target), None)
    chosen = [
        m
        for m in methods
        if m["target"] == target and m["draw"] == 0 and m.get("predictions") and m["method"] in ("ours", *TABLE_I)
    ]
    if task is None or not chosen:
        return None
    shown = next((m for m in chosen if m["method"] == "ours"), chosen[0])
    per_case = sorted(Path(shown["predictions"]).glob("*.nii.gz")) if Path(shown["predictions"]).is_dir() else []
    if not per_case:
        return None
    case_id = per_case[0].name.removesuffix(".nii.gz")
    case = next(c for c in task.cases if c.case_id == case_id)
    image = read_image(case.images[task.channel])[0]
    truth = np.isin(np.round(read_image(case.label)[0]), task.label_values).astype(np.uint8)
    predictions = {}
    for m in sorted(chosen, key=lambda m: TABLE_I.index(m["method"]) if m["method"] in TABLE_I else 0):
        f = Path(m["predictions"]) / per_case[0].name
        if f.exists() and m["method"] not in predictions:
            predictions[m["method"]] = read_image(f)[0].astype(np.uint8)
    return Overlay(f"{target}\n{case_id}", image, truth, predictions)
