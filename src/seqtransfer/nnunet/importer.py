"""``seqtransfer zoo import nnunet``: trained nnU-Net v2 models become zoo models of the graph's sources.

A user who has trained nnU-Net ``3d_fullres`` models of the source datasets need not train
the zoo again. Each model is matched to the graph's source tasks by its dataset: a source
task whose dataset folder has the nnU-Net dataset's name (``DatasetXXX_Name``) gets the model,
every site of it (one task per site). The network is mapped onto seqtransfer's ``DynUNet``
(:mod:`seqtransfer.nnunet.architecture`) and written as a zoo model folder like
:func:`seqtransfer.pipeline.zoo.train_source` writes one::

    GRAPH_DIR/zoo/TASK/KEY/
        config.json            task, network, train, max_train, seed, preprocess, train/test
                               cases, imported_from (the nnU-Net folder, fold, trainer, plans,
                               checkpoint sha256)
        checkpoint_final.pth   seqtransfer's checkpoint (load_model reads it)
        metrics.json           dice (O), per_case, train_cases, test_cases, learned, o_source

KEY hashes the nnU-Net checkpoint's content, the task and the configuration, so importing the
same model again finds its folder and writes nothing. The node's O, key and split are written
into ``graph.json`` (:func:`~seqtransfer.pipeline.zoo.record_zoo_node`): ``select`` (the
``leep`` score reads the model, ``paper`` its O), ``transfer`` and ``adapt`` then use it as a
model ``seqtransfer zoo train`` made.

O is nnU-Net's own validation Dice of the fold (``validation/summary.json``): the mean over the
task's site's validation cases of the Dice of the nnU-Net label(s) that form the task's
foreground; when none of the site's cases was validated, the fold's mean for those labels
(the table's note says which). The training cases are the site's cases that the fold did
not validate (all of them for fold ``all``, which nnU-Net validates on its training cases:
its O is then a training Dice, and the note says so).

The recorded training configuration says what nnU-Net did, as far as the checkpoint tells:
its epochs times nnU-Net's 250 iterations per epoch as ``steps``, the plans' batch size; the
case split settings (``max_train``, ``seed``) are the zoo's defaults, which a transfer through
a path uses to draw the other sources' cases.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqtransfer.core.atomic import write_json
from seqtransfer.core.errors import ConfigError, StoreError
from seqtransfer.data.tasks import Task
from seqtransfer.nnunet.architecture import ImportedNetwork, import_network, load_nnunet_checkpoint
from seqtransfer.nnunet.results import (
    CHECKPOINT,
    CONFIGURATION,
    NotImportable,
    TrainedModel,
    ValidationSummary,
    choose_fold,
    find_trained_models,
    read_json,
    read_validation,
)
from seqtransfer.pipeline.config import ZooConfig
from seqtransfer.pipeline.workspace import Workspace, open_workspace
from seqtransfer.pipeline.zoo import ZooModel, record_zoo_node, zoo_model
from seqtransfer.selection.landmark import learned
from seqtransfer.training.checkpoint import CHECKPOINT_FINAL, CHECKPOINT_FORMAT, save_checkpoint
from seqtransfer.training.config import TrainConfig

logger = logging.getLogger(__name__)

__all__ = ["ImportReport", "ImportedModel", "NotImported", "import_nnunet"]

#: nnU-Net's iterations per epoch (``nnUNetTrainer.num_iterations_per_epoch``)
NNUNET_ITERATIONS_PER_EPOCH = 250


@dataclass(frozen=True)
class ImportedModel:
    """A source task's zoo model made from an nnU-Net model.

    Attributes:
        task: the source task.
        source: the nnU-Net model (``DatasetXXX_Name/TRAINER__PLANS__CONFIGURATION/fold_F``).
        model: the zoo model.
        note: where O comes from, and anything that differs from a seqtransfer model.
        created: False when the same import was there already (nothing written).
    """

    task: str
    source: str
    model: ZooModel
    note: str
    created: bool

    @property
    def dice(self) -> float:
        """O."""
        return self.model.dice


@dataclass(frozen=True)
class NotImported:
    """An nnU-Net model (or one task of it) that was not imported.

    Attributes:
        source: the nnU-Net model (or ``model -> task``).
        reason: why, in one line.
    """

    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass
class ImportReport:
    """What an import did."""

    imported: list[ImportedModel] = field(default_factory=list)
    not_imported: list[NotImported] = field(default_factory=list)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _single(
    models: list[TrainedModel], trainer: str | None, plans: str | None
) -> tuple[list[TrainedModel], list[NotImported]]:
    """One 3d_fullres model per dataset, filtered by trainer and plans; the others as reasons."""
    chosen: list[TrainedModel] = []
    skipped: list[NotImported] = []
    by_dataset: dict[str, list[TrainedModel]] = {}
    unmatched: dict[str, list[str]] = {}
    for m in models:
        if m.configuration != CONFIGURATION:
            skipped.append(NotImported(m.name, f"configuration {m.configuration}: only {CONFIGURATION} is imported"))
        elif (trainer is None or m.trainer == trainer) and (plans is None or m.plans == plans):
            by_dataset.setdefault(m.dataset, []).append(m)
        else:
            unmatched.setdefault(m.dataset, []).append(m.folder.name)
    for dataset, names in sorted(unmatched.items()):
        if dataset not in by_dataset:
            wanted = " ".join(f"--{k} {v}" for k, v in (("trainer", trainer), ("plans", plans)) if v is not None)
            skipped.append(
                NotImported(dataset, f"no {CONFIGURATION} model matches {wanted} (found: {', '.join(names)})")
            )
    for dataset, found in sorted(by_dataset.items()):
        if len(found) > 1:
            several = ", ".join(m.folder.name for m in found)
            skipped.append(NotImported(dataset, f"several models ({several}): choose one with --trainer / --plans"))
        else:
            chosen.append(found[0])
    return chosen, skipped


def _source_tasks(workspace: Workspace, dataset: str) -> list[str]:
    """The graph's source tasks whose dataset folder is named ``dataset``."""
    return sorted(
        name
        for name, data in workspace.graph.nodes(data=True)
        if data.get("role") == "source" and Path(str(data.get("dataset", ""))).name == dataset
    )


def _foreground(dataset_json: Mapping[str, Any]) -> tuple[int, ...]:
    """The label values of nnU-Net's foreground class(es) (every non-background label)."""
    labels = dataset_json.get("labels")
    if not isinstance(labels, Mapping):
        raise NotImportable("dataset.json: no labels")
    # nnU-Net's "ignore" label is no class of the network's (its pixels are not trained on)
    skip = ("background", "ignore")
    return tuple(sorted(int(v) for k, v in labels.items() if isinstance(v, int) and v != 0 and k not in skip))


def _imported_config(network: ImportedNetwork, checkpoint: Mapping[str, Any], plans: Mapping[str, Any]) -> ZooConfig:
    """The zoo configuration recorded for an imported model (see the module docstring)."""
    epochs = checkpoint.get("current_epoch")
    epochs = int(epochs) if isinstance(epochs, int) and epochs > 0 else 1
    batch = plans.get("configurations", {}).get(CONFIGURATION, {}).get("batch_size")
    defaults = ZooConfig()
    train = TrainConfig(
        steps=epochs * NNUNET_ITERATIONS_PER_EPOCH,
        batch_size=int(batch) if isinstance(batch, int) and batch >= 1 else defaults.train.batch_size,
        seed=defaults.seed,
    )
    return ZooConfig(network=network.config, train=train, max_train=defaults.max_train, seed=defaults.seed)


def _preprocess(network: ImportedNetwork) -> dict[str, Any]:
    """The grid the model expects (``seqtransfer predict`` reads it): the plans' spacing."""
    assert network.config.patch_size is not None
    return {"size": min(512, max(8, max(network.config.patch_size))), "spacing": list(network.config.spacing)}


@dataclass(frozen=True)
class _Source:
    """One nnU-Net model read and mapped: everything its tasks share."""

    model: TrainedModel
    fold: str
    network: ImportedNetwork
    config: ZooConfig
    checkpoint_sha256: str
    foreground: tuple[int, ...]
    validation: ValidationSummary
    record: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.model.name}/fold_{self.fold}"


def _read_source(model: TrainedModel, fold: str | None) -> _Source:
    """Read and map one nnU-Net model (no task yet).

    Raises:
        NotImportable: why it cannot be imported.
    """
    chosen = choose_fold(model, fold)
    fold_dir = model.folder / f"fold_{chosen}"
    plans = read_json(model.folder / "plans.json", "plans")
    dataset_json = read_json(model.folder / "dataset.json", "dataset.json")
    try:
        checkpoint = load_nnunet_checkpoint(fold_dir / CHECKPOINT)
    except StoreError as exc:
        raise NotImportable(str(exc)) from exc
    network = import_network(checkpoint, plans, dataset_json)
    ending = dataset_json.get("file_ending")
    validation = read_validation(fold_dir, str(ending) if isinstance(ending, str) else ".nii.gz")
    sha = file_sha256(fold_dir / CHECKPOINT)
    record = {
        "nnunet_folder": str(model.folder.resolve()),
        "dataset": model.dataset,
        "fold": chosen,
        "trainer": model.trainer,
        "plans": model.plans,
        "configuration": model.configuration,
        "checkpoint_sha256": sha,
        "epochs": checkpoint.get("current_epoch") if isinstance(checkpoint.get("current_epoch"), int) else None,
        "image_reader": network.reader,
        "normalization": network.normalization,
    }
    return _Source(
        model=model,
        fold=chosen,
        network=network,
        config=_imported_config(network, checkpoint, plans),
        checkpoint_sha256=sha,
        foreground=_foreground(dataset_json),
        validation=validation,
        record=record,
    )


def _key(source: _Source, task: Task) -> str:
    blob = json.dumps(
        {
            "nnunet_checkpoint": source.checkpoint_sha256,
            "task": task.name,
            "labels": list(task.label_values),
            "config": source.config.to_dict(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _finished(folder: Path) -> dict[str, Any] | None:
    try:
        done = json.loads((folder / "metrics.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return done if isinstance(done, dict) and (folder / CHECKPOINT_FINAL).is_file() else None


def _import_task(workspace: Workspace, source: _Source, task: Task) -> ImportedModel:
    """Write (or find) the zoo model of one task and record it on its node.

    Raises:
        NotImportable: the task's foreground is not the model's, or its dataset is not single-channel.
    """
    if len(task.dataset.channel_names) != 1:
        raise NotImportable(f"its dataset has {len(task.dataset.channel_names)} channels; the nnU-Net model reads 1")
    if tuple(sorted(task.label_values)) != source.foreground:
        raise NotImportable(
            f"label value(s) {list(task.label_values)} are not the model's foreground {list(source.foreground)}"
        )
    site_cases = [c.case_id for c in task.cases]
    dice, per_case, where = source.validation.dice(site_cases, [str(v) for v in task.label_values])
    validated = set(per_case)
    train_cases = [c for c in site_cases if c not in validated or source.fold == "all"]
    note = f"O: {where}" if source.fold != "all" else f"O: {where} (fold all validates on its training cases)"
    if not train_cases:  # every case of the site was validated: the Fisher of a transfer needs cases
        train_cases = list(site_cases)
        note += "; the site's cases were all validated: they stand for its training cases"
    key = _key(source, task)
    folder = workspace.models / "zoo" / task.name / key
    done = _finished(folder)
    created = done is None
    if done is None:
        write_json(
            folder / "config.json",
            {
                "task": task.name,
                **source.config.to_dict(),
                "preprocess": _preprocess(source.network),
                "train_cases": train_cases,
                "test_cases": sorted(validated),
                "imported_from": source.record,
            },
        )
        save_checkpoint(
            folder / CHECKPOINT_FINAL,
            {
                "format": CHECKPOINT_FORMAT,
                "step": 0,
                "model": source.network.state,
                "optimizer": {},
                "scheduler": {},
                "rng": {},
                "history": {"losses": [], "penalties": [], "lrs": []},
                "train_config": source.config.train.to_dict(),
                "imported_from": source.record,
            },
        )
        done = {
            "task": task.name,
            "key": key,
            "dice": dice,
            "learned": learned(dice),
            "per_case": per_case,
            "train_cases": train_cases,
            "test_cases": sorted(validated),
            "o_source": f"nnU-Net validation Dice, fold {source.fold}: {where}",
            "imported_from": source.record,
        }
        write_json(folder / "metrics.json", done)  # last: a folder with metrics is a finished model
    model = zoo_model(folder, done)
    previous = workspace.graph.nodes[task.name].get("zoo_key")
    if previous and previous != key:
        note += f"; replaces the recorded zoo model {previous}"
    record_zoo_node(workspace.graph, task.name, model.dice, key, len(model.train_cases), len(model.test_cases))
    for warning in source.network.warnings:
        note += f"; {warning.split(':')[0]}"
    return ImportedModel(task=task.name, source=source.name, model=model, note=note, created=created)


def import_nnunet(
    results_dir: str | Path,
    graph_dir: str | Path,
    fold: str | None = None,
    trainer: str | None = None,
    plans: str | None = None,
) -> ImportReport:
    """Import trained nnU-Net v2 ``3d_fullres`` models as zoo models of the graph's sources.

    Args:
        results_dir: nnU-Net's results folder, one dataset's folder in it, or one trainer folder.
        graph_dir: the graph folder.
        fold: ``all`` or a fold number; default ``all`` when trained, else the lowest fold.
        trainer: only models of this trainer class.
        plans: only models of these plans.

    Returns:
        The imported models (one per source task) and one reason per model (or task) left out.

    Raises:
        ConfigError: no results there, or nothing at all could be imported (one line with the reasons).
        StoreError: the graph folder is missing or corrupt.
        DatasetError: a dataset of the graph is gone or no longer valid.
    """
    models, report_skips = _single(find_trained_models(results_dir), trainer, plans)
    report = ImportReport(not_imported=list(report_skips))
    workspace = open_workspace(graph_dir, size=32)
    before = {n: dict(d) for n, d in workspace.graph.nodes(data=True)}
    for model in models:
        tasks = _source_tasks(workspace, model.dataset)
        if not tasks:
            report.not_imported.append(
                NotImported(
                    model.name, f"no source task of the graph comes from a dataset folder named {model.dataset}"
                )
            )
            continue
        try:
            source = _read_source(model, fold)
        except NotImportable as exc:
            report.not_imported.append(NotImported(model.name, str(exc)))
            continue
        for warning in source.network.warnings:
            logger.warning("%s: %s", source.name, warning)
        for name in tasks:
            try:
                report.imported.append(_import_task(workspace, source, workspace.task(name)))
            except NotImportable as exc:
                report.not_imported.append(NotImported(f"{source.name} -> {name}", str(exc)))
    if any(dict(d) != before.get(n) for n, d in workspace.graph.nodes(data=True)):
        workspace.store.save_graph(workspace.graph)
    if not report.imported:
        reasons = "; ".join(str(s) for s in report.not_imported) or "no model"
        raise ConfigError(f"{results_dir}: nothing could be imported into {graph_dir} ({reasons})")
    return report
