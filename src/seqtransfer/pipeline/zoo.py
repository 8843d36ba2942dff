"""The source model zoo (METHOD section 4): one model per source task, trained once.

Each source trains on up to ``max_train`` of its cases (:func:`~seqtransfer.data.splits.source_split`)
and is scored on the rest; that held-out mean Dice is the node's ``dice``, the objective
performance O of the landmark score. A model lives in ``GRAPH_DIR/zoo/TASK/KEY/`` where KEY
hashes the content of its training cases and the whole training configuration, so nothing is
trained twice and a changed dataset or configuration trains anew. The landmark's zoo model is
the starting point of every transfer from it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seqtransfer.core.atomic import write_json
from seqtransfer.core.errors import ConfigError, StoreError
from seqtransfer.core.fetch import need
from seqtransfer.core.progress import Progress, relabel
from seqtransfer.data.splits import source_split
from seqtransfer.data.tasks import Task
from seqtransfer.evaluation.dice import mean_dice
from seqtransfer.pipeline.config import ZooConfig
from seqtransfer.pipeline.score import score_cases
from seqtransfer.pipeline.workspace import Workspace
from seqtransfer.training.checkpoint import CHECKPOINT_FINAL, load_weights
from seqtransfer.training.config import NetworkConfig
from seqtransfer.training.loop import train
from seqtransfer.training.network import build_network, select_device

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ZooModel:
    """A trained source model.

    Attributes:
        task: the source task.
        folder: its folder (checkpoint, config, metrics).
        key: content and configuration hash.
        dice: held-out mean Dice (O).
        train_cases: the cases it trained on.
        test_cases: its held-out cases.
    """

    task: str
    folder: Path
    key: str
    dice: float
    train_cases: tuple[str, ...]
    test_cases: tuple[str, ...]

    @property
    def checkpoint(self) -> Path:
        return self.folder / CHECKPOINT_FINAL

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the experiment store's ``zoo`` record)."""
        return {
            "task": self.task,
            "folder": str(self.folder),
            "key": self.key,
            "dice": self.dice,
            "train_cases": list(self.train_cases),
            "test_cases": list(self.test_cases),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ZooModel:
        """The model of :meth:`to_dict`'s form or of a model folder's ``metrics.json`` with its
        ``folder`` added; an undefined held-out Dice (None, NaN) counts as 0: the model learned nothing."""
        dice = data.get("dice")
        return cls(
            task=str(data["task"]),
            folder=Path(data["folder"]),
            key=str(data["key"]),
            dice=float(dice) if dice is not None and np.isfinite(dice) else 0.0,
            train_cases=tuple(data["train_cases"]),
            test_cases=tuple(data["test_cases"]),
        )


def training_key(workspace: Workspace, task: Task, case_ids: Sequence[str], config: dict[str, Any]) -> str:
    """Hash of the training cases' content (files, channel, label values) and the configuration."""
    h = hashlib.sha256()
    h.update(
        json.dumps({"channel": task.channel, "labels": task.label_values, "config": config}, sort_keys=True).encode()
    )
    for case in workspace.cases(task, case_ids):
        h.update(workspace.cache.key(case).encode())
    return h.hexdigest()[:16]


def zoo_split(task: Task, config: ZooConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Training and held-out cases of a source's zoo model."""
    return source_split(task.split_key, [c.case_id for c in task.cases], seed=config.seed, max_train=config.max_train)


def load_model(folder: Path, device: torch.device | str | None = None) -> tuple[nn.Module, NetworkConfig]:
    """A model and its network configuration from a folder with ``config.json`` and the final checkpoint.

    Raises:
        StoreError: missing or corrupt files.
    """
    need(folder)
    try:
        meta = json.loads((folder / "config.json").read_text())
        network = NetworkConfig.from_dict(meta["network"])
    except FileNotFoundError as exc:
        raise StoreError(f"{folder / 'config.json'}: not found (not a model folder)") from exc
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ConfigError) as exc:
        raise StoreError(f"{folder / 'config.json'}: corrupt model configuration ({exc})") from exc
    model = build_network(network)
    load_weights(model, folder / CHECKPOINT_FINAL)
    model.to(device if device is not None else select_device())
    return model, network


def _finished(folder: Path) -> dict[str, Any] | None:
    need(folder)
    metrics = folder / "metrics.json"
    if not (metrics.exists() and (folder / CHECKPOINT_FINAL).exists()):
        return None
    try:
        return json.loads(metrics.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def train_source(
    workspace: Workspace,
    name: str,
    config: ZooConfig,
    resume: bool = True,
    progress: Progress | None = None,
) -> ZooModel:
    """Train (or find) the zoo model of one source and record its O on the graph node.

    Raises:
        ConfigError: unknown task, or a task too small to hold cases out.
    """
    task = workspace.task(name)
    train_ids, test_ids = zoo_split(task, config)
    key = training_key(workspace, task, train_ids, config.to_dict())
    folder = workspace.models / "zoo" / name / key
    done = _finished(folder)
    if done is None:
        logger.info("%s: training the zoo model %s on %d case(s)", name, key, len(train_ids))
        folder.mkdir(parents=True, exist_ok=True)
        write_json(
            folder / "config.json",
            {
                "task": name,
                **config.to_dict(),
                "preprocess": workspace.preprocess_dict(),
                "train_cases": list(train_ids),
                "test_cases": list(test_ids),
            },
        )
        assert config.network.patch_size is not None  # resolved by NetworkConfig
        patch = tuple(config.network.patch_size)
        generator = torch.Generator().manual_seed(config.train.seed)
        network = build_network(config.network, generator=generator)
        start = time.perf_counter()
        result = train(
            network,
            workspace.arrays(task, train_ids),
            config.train,
            patch,
            out_dir=folder,
            resume=resume,
            progress=progress,
        )
        seconds = time.perf_counter() - start
        scores = score_cases(network, workspace, task, test_ids, patch)
        from seqtransfer.selection.landmark import learned

        dice_value = mean_dice(scores.values())
        done = {
            "task": name,
            "key": key,
            "dice": dice_value,
            # a model below this held-out Dice learned nothing: never a landmark (METHOD section 4)
            "learned": learned(dice_value),
            "per_case": scores,
            "train_cases": list(train_ids),
            "test_cases": list(test_ids),
            "train_seconds": seconds,
            "final_loss": result.losses[-1] if result.losses else None,
            "losses": list(result.losses),
        }
        write_json(folder / "metrics.json", done)
    model = zoo_model(folder, done)
    record_zoo_node(workspace.graph, name, model.dice, key, len(model.train_cases), len(model.test_cases))
    return model


def zoo_model(folder: Path, done: dict[str, Any]) -> ZooModel:
    """The :class:`ZooModel` of a finished model folder from its ``metrics.json`` (an undefined
    held-out Dice counts as 0: the model learned nothing)."""
    return ZooModel.from_dict({**done, "folder": folder})


def record_zoo_node(graph: Any, name: str, dice: float, key: str, n_train: int, n_held_out: int) -> None:
    """Write a source model's O, key and split into its graph node.

    zeta of the landmark score is the number of cases the model really trained on (the graph
    build's estimate assumes ``max_train = 60``); ``o_cases`` says how many cases O rests on.
    """
    node = graph.nodes[name]
    node.update(dice=dice, zoo_key=key, n_train=n_train, o_cases=n_held_out)


def train_zoo(
    workspace: Workspace,
    names: Sequence[str],
    config: ZooConfig,
    progress: Progress | None = None,
) -> list[ZooModel]:
    """Train every listed source not yet in the zoo; write their O into ``graph.json``.

    ``progress`` gets each training's steps with the source's name as the stage.
    """
    models = []
    for name in names:
        models.append(train_source(workspace, name, config, progress=relabel(progress, name)))
        workspace.store.save_graph(workspace.graph)  # O of each finished model is kept even if a later one fails
    return models


def zoo_metrics(folder: Path) -> dict[str, Any]:
    """The metrics of a zoo model folder."""
    done = _finished(folder)
    if done is None:
        raise StoreError(f"{folder}: not a finished zoo model")
    return done


def recorded_zoo_model(workspace: Workspace, name: str) -> ZooModel | None:
    """The finished zoo model the graph's node ``name`` records (its ``zoo_key``, written by
    :func:`train_source`); None when there is none, or it is missing or damaged (a caller
    then trains it)."""
    key = workspace.graph.nodes[name].get("zoo_key") if name in workspace.graph else None
    if not key:
        return None
    folder = workspace.models / "zoo" / name / str(key)
    try:
        return zoo_model(folder, zoo_metrics(folder))
    except (StoreError, KeyError, TypeError, ValueError):
        return None


def trained_zoo_config(model: ZooModel) -> ZooConfig:
    """The configuration a zoo model was trained with (recorded in its ``config.json``).

    Raises:
        StoreError: the file is missing or corrupt.
    """
    path = model.folder / "config.json"
    try:
        meta = json.loads(path.read_text())
        return ZooConfig.from_dict({k: meta[k] for k in ("network", "train", "max_train", "seed")})
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ConfigError) as exc:
        raise StoreError(f"{path}: corrupt zoo model configuration ({exc})") from exc


def _mm(spacing: Sequence[float]) -> str:
    return "x".join(f"{v:g}" for v in spacing)


def landmark_zoo_model(workspace: Workspace, name: str, default: ZooConfig) -> tuple[ZooModel | None, ZooConfig]:
    """The zoo model a transfer from ``name`` starts from, and how it was trained.

    The model ``seqtransfer zoo train`` recorded on the graph, with the configuration it was
    really trained with (whatever its steps and ``max_train``), when its network has the
    preset of ``default``'s: then no command trains the landmark a second time under other
    settings, and the path's intermediate steps draw their cases from the zoo splits their
    models used. Otherwise ``(None, default)``: the transfer trains (or finds by its key) the
    model of ``default``.
    """
    model = recorded_zoo_model(workspace, name)
    if model is None:
        return None, default
    try:
        config = trained_zoo_config(model)
    except StoreError:
        return None, default
    if config.network.preset != default.network.preset:
        logger.info(
            "%s: the recorded zoo model %s has preset %s, not %s",
            name,
            model.key,
            config.network.preset,
            default.network.preset,
        )
        return None, default
    if tuple(config.network.spacing) != tuple(default.network.spacing):
        # an imported nnU-Net model above all: it was trained at its plans' spacing
        logger.warning(
            "%s: the recorded zoo model %s was trained at %s mm spacing, this run's grid is %s mm; its outputs "
            "will differ from its own grid's (pass --spacing %s to run it there)",
            name,
            model.key,
            _mm(config.network.spacing),
            _mm(default.network.spacing),
            ",".join(f"{v:g}" for v in config.network.spacing),
        )
    logger.info(
        "%s: starting from the recorded zoo model %s (max_train %d, %d steps)",
        name,
        model.key,
        config.max_train,
        config.train.steps,
    )
    return model, config
