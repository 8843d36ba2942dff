"""``seqtransfer adapt``: from source datasets and a few-label target to predictions, in one go.

Stages, each resumable (a rerun finds what is done and redoes nothing):

1. **verify** the source datasets, the target dataset and every unlabelled image, before
   anything is written;
2. **graph**: a new graph in ``OUT/graph`` (sources and the targets), or an existing one
   (``graph_dir``) with the targets added incrementally (only their edges are computed);
3. **zoo**: the source models whose objective performance O the landmark score needs (every
   source connected to a target) when the graph does not have them yet;
4. **select** the landmark and the optimal path of each target;
5. **fine-tune** along the path, the target step on **all** labelled cases of the target
   (no draws, no test sets); checkpoints make a killed run resume inside the step;
6. optionally **estimate** the Dice by leave-one-out (train on n - 1 labelled cases along the
   same path, score the case left out): a small-sample estimate, n more trainings;
7. **predict** every unlabelled image: each target's foreground probability in the image's own
   grid, merged into the dataset's label values (:mod:`seqtransfer.adapt.merge`), written as
   ``OUT/predictions/CASE{file_ending}`` with the image's shape, affine and header;
8. ``OUT/adapt.json`` (what was chosen and trained, and where) and ``OUT/report.html``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from seqtransfer.adapt.config import AdaptConfig
from seqtransfer.adapt.merge import merge_labels
from seqtransfer.core.atomic import write_json
from seqtransfer.core.errors import ConfigError, DatasetError
from seqtransfer.core.progress import Progress, prefixed, relabel, report
from seqtransfer.data.dataset import Dataset
from seqtransfer.data.tasks import (
    Task,
    find_modality_aliases,
    find_objective_groups,
    load_modality_aliases,
    load_objective_groups,
    modality_key,
    split_tasks,
)
from seqtransfer.data.unlabelled import UnlabelledCase, check_unlabelled, find_unlabelled
from seqtransfer.graph.config import GraphConfig
from seqtransfer.graph.sources import candidate_sources, source_pool
from seqtransfer.pipeline.config import FinetuneConfig, ZooConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdaptPlan:
    """Everything checked before the first write: datasets, tasks, targets, images to segment."""

    sources: list[Dataset]
    target_dataset: Dataset
    tasks: list[Task]
    source_tasks: list[Task]
    targets: list[Task]
    unlabelled: list[UnlabelledCase]
    groups_file: Path | None
    aliases_file: Path | None
    regions_class_order: list[int] | None


def _resolve_targets(
    target_dataset: Dataset,
    tasks: Sequence[Task],
    requested: Sequence[str],
    modality: str | None,
    aliases: dict[str, str] | None,
) -> list[Task]:
    own = [t for t in tasks if t.dataset.root.resolve() == target_dataset.root.resolve()]
    others = {t.name: t for t in tasks if t not in own}
    by_name = {t.name: t for t in own}
    if not requested:
        raise ConfigError("give at least one --target task of the target dataset (or --target all)")
    if "all" in requested:
        if len(requested) > 1:
            raise ConfigError("--target all takes every label of one channel; give it alone")
        sites = sorted({t.site for t in own})
        if len(sites) > 1:
            raise ConfigError(
                f"{target_dataset.root}: --target all needs a target dataset of one site, it has {', '.join(sites)}; "
                "name the tasks"
            )
        if modality is None:
            if len(target_dataset.channel_names) > 1:
                raise ConfigError(
                    f"{target_dataset.root}: --target all needs --modality, one of "
                    f"{', '.join(target_dataset.channel_names)}"
                )
            modality = target_dataset.channel_names[0]
        wanted = modality_key(modality, aliases)
        chosen = [t for t in own if t.modality_key == wanted or t.modality.casefold() == modality.casefold()]
        if not chosen:
            raise ConfigError(
                f"{target_dataset.root}: no channel {modality!r} (channels: {', '.join(target_dataset.channel_names)})"
            )
        return sorted(chosen, key=lambda t: list(target_dataset.labels).index(t.objective))
    chosen = []
    for name in dict.fromkeys(requested):
        if name in by_name:
            chosen.append(by_name[name])
        elif name in others:
            raise ConfigError(
                f"--target {name}: a task of the source dataset {others[name].dataset.root}, not of the target "
                f"dataset {target_dataset.root}"
            )
        else:
            raise ConfigError(
                f"--target {name}: not a task of the target dataset {target_dataset.root} (its tasks: "
                f"{', '.join(sorted(by_name))})"
            )
    if len({t.site for t in chosen}) > 1:
        raise ConfigError("the --target tasks must be of one site (their predictions are merged into one label map)")
    return chosen


def _regions_class_order(dataset: Dataset) -> list[int] | None:
    try:
        meta = json.loads((dataset.root / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:  # verified moments ago; keep the one-line error
        raise DatasetError(f"{dataset.root / 'dataset.json'}: unreadable ({exc})") from exc
    order = meta.get("regions_class_order")
    if order is None:
        return None
    if (
        not isinstance(order, list)
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in order)
        or len(order) != len(dataset.labels)
    ):
        raise DatasetError(
            f"{dataset.root / 'dataset.json'}: regions_class_order must list one integer per foreground label"
        )
    return [int(v) for v in order]


def plan_adapt(
    sources: Sequence[str | Path],
    target_dataset: str | Path,
    targets: Sequence[str],
    inputs: Sequence[str | Path] | None = None,
    groups: str | Path | None = None,
    modalities: str | Path | None = None,
    modality: str | None = None,
    estimate: bool = False,
    progress: Progress | None = None,
) -> AdaptPlan:
    """Check everything an adaptation needs, writing nothing.

    The datasets' warnings, and a target without images to predict, are logged as warnings.

    Raises:
        DatasetError: a bad dataset or unlabelled image (one line naming the file).
        ConfigError: a bad target choice, a target no source can reach, nothing to predict.
    """
    from seqtransfer.data.verify import require_valid
    from seqtransfer.graph.build import require_reachable

    source_roots = [Path(s) for s in sources]
    target_root = Path(target_dataset)
    if not source_roots:
        raise ConfigError("give at least one source dataset before the target dataset")
    if target_root.resolve() in {r.resolve() for r in source_roots}:
        raise ConfigError(f"{target_root}: the target dataset is also given as a source")
    parsed, warnings = require_valid([*source_roots, target_root], prefixed(progress, "verify "))
    for warning in warnings:
        logger.warning("%s", warning)
    target_ds = parsed[-1]
    roots = [*source_roots, target_root]
    groups_file = Path(groups) if groups is not None else find_objective_groups(roots)
    aliases_file = Path(modalities) if modalities is not None else find_modality_aliases(roots)
    group_map = load_objective_groups(groups_file) if groups_file is not None else None
    aliases = load_modality_aliases(aliases_file) if aliases_file is not None else None
    tasks = split_tasks(parsed, group_map, aliases)
    chosen = _resolve_targets(target_ds, tasks, targets, modality, aliases)
    source_tasks = [t for t in tasks if t.dataset.root.resolve() != target_root.resolve()]
    if estimate:
        small = [t.name for t in chosen if t.n_cases < 2]
        if small:
            raise ConfigError(f"--estimate needs at least 2 labelled cases; {small[0]} has 1")
    require_reachable([*source_tasks, *chosen], [t.name for t in chosen])
    if inputs:
        images = list(inputs)
    elif (target_root / "imagesTs").is_dir():
        images = [target_root / "imagesTs"]
    else:
        images = []
        logger.warning("%s: not found and no --input given; nothing will be predicted", target_root / "imagesTs")
    unlabelled = find_unlabelled(images, len(target_ds.channel_names), target_ds.file_ending) if images else []
    check_unlabelled(unlabelled, relabel(progress, "verify unlabelled images"))
    return AdaptPlan(
        sources=list(parsed[:-1]),
        target_dataset=target_ds,
        tasks=tasks,
        source_tasks=source_tasks,
        targets=chosen,
        unlabelled=unlabelled,
        groups_file=groups_file,
        aliases_file=aliases_file,
        regions_class_order=_regions_class_order(target_ds),
    )


def _graph_sources_match(graph: Any, graph_dir: Path, plan: AdaptPlan) -> None:
    """Refuse a graph built from other source datasets than the given ones."""
    built = sorted({str(Path(d["dataset"]).resolve()) for _, d in graph.nodes(data=True) if d.get("role") == "source"})
    given = sorted({str(ds.root.resolve()) for ds in plan.sources})
    if built != given:
        raise ConfigError(
            f"{graph_dir}: the graph was built from {len(built)} source dataset(s) "
            f"({', '.join(Path(b).name for b in built)}), "
            f"not the given {len(given)} ({', '.join(Path(g).name for g in given)})"
        )
    known = {t.name for t in plan.source_tasks}
    missing = sorted(n for n, d in graph.nodes(data=True) if d.get("role") == "source" and n not in known)
    if missing:
        raise ConfigError(
            f"{graph_dir}: source task(s) {', '.join(missing[:3])} of the graph are not in the given datasets"
        )


def _targets_to_add(graph: Any, plan: AdaptPlan, config: GraphConfig) -> list[str]:
    """Targets missing from the graph, or whose labelled cases changed since they were added."""
    from seqtransfer.graph.build import affinity_cases

    todo = []
    for task in plan.targets:
        node = graph.nodes.get(task.name)
        wanted = [c.case_id for c in affinity_cases(task, config, is_target=True)]
        if (
            node is None
            or node.get("role") != "target"
            or node.get("affinity_cases") != wanted
            or node.get("n_cases") != task.n_cases
            or Path(str(node.get("dataset"))).resolve() != task.dataset.root.resolve()
        ):
            todo.append(task.name)
    return todo


def _zoo_job(args: tuple[str, int, Any, str | None, str | None, str, ZooConfig]) -> dict[str, Any]:
    """Train (or find) one zoo model in a worker process."""
    from seqtransfer.pipeline.workspace import open_workspace
    from seqtransfer.pipeline.zoo import train_source

    graph_dir, size, spacing, cache_dir, models_root, name, zoo = args
    workspace = open_workspace(graph_dir, size=size, cache_dir=cache_dir, spacing=spacing, models_root=models_root)
    model = train_source(workspace, name, zoo)
    return {
        "task": model.task,
        "key": model.key,
        "dice": model.dice,
        "n_train": len(model.train_cases),
        "o_cases": len(model.test_cases),
    }


def existing_zoo_model(workspace: Any, name: str) -> Any:
    """The zoo model the graph's node names (``zoo_key``), when it is there and finished."""
    from seqtransfer.pipeline.zoo import recorded_zoo_model

    return recorded_zoo_model(workspace, name)


def zoo_transferability(
    workspace: Any,
    task: Task,
    sources: Sequence[str],
    cases: Sequence[str],
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, float]:
    """T = exp(LEEP) of each source's zoo model (the one the graph records) on ``cases`` of
    ``task``: the transferability term of the ``leep`` landmark score.

    Raises:
        ConfigError: a source whose finished zoo model is not there.
    """
    from seqtransfer.baselines.measure import leep_transferability

    models = {s: existing_zoo_model(workspace, s) for s in sources}
    missing = sorted(s for s, m in models.items() if m is None)
    if missing:
        raise ConfigError(
            f"{workspace.root}: the leep score needs the zoo model of every connected source; missing: "
            f"{', '.join(missing[:5])} (run `seqtransfer zoo train`)"
        )
    return leep_transferability(
        workspace, task, cases, {s: m.folder for s, m in models.items()}, seed=seed, progress=progress
    )


def target_transferability(
    graph_dir: str | Path, target: str, preset: str = "cpu", spacing: str = "auto"
) -> dict[str, float]:
    """T = exp(LEEP) of every connected source's recorded zoo model on a graph target's affinity
    cases (what ``seqtransfer select --score leep`` ranks by), the models run at ``preset``'s grid.

    Raises:
        ConfigError: ``target`` is not a target of the graph, or a connected source has no
            finished zoo model.
    """
    from seqtransfer.pipeline.workspace import open_training_workspace

    workspace, _ = open_training_workspace(graph_dir, preset, spacing)
    graph = workspace.graph
    if target not in graph or graph.nodes[target].get("role") != "target":
        raise ConfigError(f"{graph_dir}: {target!r} is not a target of the graph")
    connected = [s for s in candidate_sources(graph, target) if graph.has_edge(s, target)]
    return zoo_transferability(
        workspace, workspace.task(target), connected, list(graph.nodes[target].get("affinity_cases", []))
    )


def _prediction_digest(finals: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(finals, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class _TargetModel:
    task: Task
    model: Any
    patch: tuple[int, ...]
    preprocess: Any


def predict_unlabelled(
    plan: AdaptPlan,
    finals: dict[str, str],
    out: Path,
    progress: Progress | None = None,
) -> list[str]:
    """Segment every unlabelled case with the targets' final models; merged, nnU-Net-named.

    A case already predicted with the same models is not predicted again.

    Returns:
        The predicted case ids.
    """
    from seqtransfer.core.threads import single_threaded
    from seqtransfer.data.io import read_image, write_label_like
    from seqtransfer.data.preprocess import preprocess_arrays, restore_probability
    from seqtransfer.evaluation.inference import predict_probabilities
    from seqtransfer.pipeline.predict import model_preprocess
    from seqtransfer.pipeline.zoo import load_model
    from seqtransfer.training.network import select_device

    folder = out / "predictions"
    state_file = out / "state" / "predictions.json"
    digest = _prediction_digest(finals)
    done: list[str] = []
    try:
        saved = json.loads(state_file.read_text())
        if saved.get("models") == digest:
            done = [c for c in saved.get("done", []) if (folder / f"{c}{plan.target_dataset.file_ending}").exists()]
    except (OSError, json.JSONDecodeError, AttributeError):
        pass
    todo = [c for c in plan.unlabelled if c.case_id not in set(done)]
    report(progress, "predict", len(plan.unlabelled) - len(todo), len(plan.unlabelled))
    if not todo:
        return [c.case_id for c in plan.unlabelled]
    device = select_device()
    models = []
    for task in plan.targets:
        model, network = load_model(Path(finals[task.name]), device)
        patch = tuple(int(p) for p in network.patch_size or ())
        models.append(_TargetModel(task, model, patch, model_preprocess(Path(finals[task.name]), int(patch[0]))))
    declared = plan.target_dataset.labels
    for case in todo:
        read = [read_image(p) for p in case.images]
        images = np.stack([data for data, _ in read])
        shape = images.shape[1:]
        grids: dict[str, tuple[np.ndarray, Any]] = {}
        probabilities = []
        for tm in models:
            key = tm.preprocess.fingerprint()
            if key not in grids:
                with single_threaded():
                    grid, _, box = preprocess_arrays(
                        images, np.zeros(shape, np.int64), tm.preprocess, read[0][1].spacing[:3]
                    )
                grids[key] = (grid, box)
            grid, box = grids[key]
            foreground = predict_probabilities(tm.model, np.asarray(grid[tm.task.channel][None]), tm.patch, device)[1]
            probabilities.append(restore_probability(foreground, tuple(shape), box))
        label = merge_labels(probabilities, [tm.task.label_values for tm in models], declared, plan.regions_class_order)
        write_label_like(folder / f"{case.case_id}{plan.target_dataset.file_ending}", label, case.images[0])
        done.append(case.case_id)
        write_json(state_file, {"models": digest, "done": done})
        report(progress, "predict", len(done), len(plan.unlabelled))
    return [c.case_id for c in plan.unlabelled]


def held_back_dice(plan: AdaptPlan, out: Path, predicted: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Dice of each target's predictions against ``labelsTs/CASE`` where the dataset has them.

    Some nnU-Net datasets ship the labels of their test images in ``labelsTs/``; they are
    never used for training or selection, only compared with the predictions afterwards.
    """
    from seqtransfer.data.io import read_image
    from seqtransfer.evaluation.dice import dice_score, mean_dice

    folder = plan.target_dataset.root / "labelsTs"
    ending = plan.target_dataset.file_ending
    cases = [c for c in predicted if (folder / f"{c}{ending}").is_file()]
    if not cases:
        return {}
    scores: dict[str, dict[str, float | None]] = {t.name: {} for t in plan.targets}
    for case in cases:
        reference = np.round(read_image(folder / f"{case}{ending}")[0]).astype(np.int64)
        prediction = np.asarray(read_image(out / "predictions" / f"{case}{ending}")[0]).astype(np.int64)
        if reference.shape != prediction.shape:
            continue
        for task in plan.targets:
            value = dice_score(
                np.isin(prediction, task.label_values).astype(np.uint8),
                np.isin(reference, task.label_values).astype(np.uint8),
            )
            scores[task.name][case] = None if value != value else float(value)
    result = {}
    for name, per_case in scores.items():
        finite = [v for v in per_case.values() if v is not None]
        result[name] = {"n": len(per_case), "mean_dice": mean_dice(finite) if finite else None, "per_case": per_case}
    return result


def _estimate(
    workspace: Any,
    task: Task,
    path: list[str],
    zoo: ZooConfig,
    finetune: FinetuneConfig,
    landmark: Any,
    out: Path,
    progress: Progress | None,
) -> dict[str, Any]:
    """Leave-one-out along ``path``: train on n - 1 labelled cases, score the case left out."""
    from seqtransfer.evaluation.dice import mean_dice
    from seqtransfer.pipeline.score import cached_scores
    from seqtransfer.pipeline.transfer import run_transfer
    from seqtransfer.pipeline.zoo import load_model
    from seqtransfer.training.network import select_device

    ids = [c.case_id for c in task.cases]
    per_case: dict[str, float | None] = {}
    device = select_device()
    for done, left_out in enumerate(ids, start=1):
        train_ids = [c for c in ids if c != left_out]
        metrics = run_transfer(
            workspace,
            task.name,
            path,
            zoo,
            finetune,
            out_dir=out / "estimate" / task.name / left_out,
            progress=prefixed(progress, f"estimate without {left_out}: "),
            target_cases=train_ids,
            landmark=landmark,
        )
        folder = Path(metrics.final_model)
        model, network = load_model(folder, device)
        scores = cached_scores(folder, model, workspace, task, [left_out], tuple(network.patch_size or ()), device)
        value = scores[left_out]
        per_case[left_out] = None if value != value else float(value)
        report(progress, f"estimate {task.name}", done, len(ids))
    finite = [v for v in per_case.values() if v is not None]
    return {
        "kind": "leave-one-out over the labelled cases (a small-sample estimate)",
        "n": len(ids),
        "mean_dice": mean_dice(finite) if finite else None,
        "per_case": per_case,
    }


def adapt(
    plan: AdaptPlan,
    out: str | Path,
    config: AdaptConfig | None = None,
    graph_dir: str | Path | None = None,
    executor: Any = None,
    cache_dir: str | Path | None = None,
    models_root: str | Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run a checked plan (:func:`plan_adapt`) into ``out``; returns what ``adapt.json`` holds.

    Args:
        plan: the checked inputs.
        out: the output folder.
        config: the recipe.
        graph_dir: an existing graph of the same sources to add the targets to (its zoo and
            fine-tuning steps are reused); default a new graph in ``out/graph``.
        executor: where graph shards and missing zoo models run (default: this process).
        cache_dir: preprocessed-case cache (default: the user cache).
        models_root: where zoo models and fine-tuning steps live (default: the graph folder).
        progress: the stages' progress events: "graph: ...", "zoo", "training NAME (zoo)",
            "LEEP", "training NAME", "estimate ...", "predict".

    One line per stage is logged at info level.
    """
    from seqtransfer.graph.build import add_targets, build_graph
    from seqtransfer.graph.store import GraphStore, package_versions
    from seqtransfer.pipeline.transfer import run_transfer
    from seqtransfer.pipeline.workspace import open_workspace
    from seqtransfer.pipeline.zoo import landmark_zoo_model, record_zoo_node, train_source
    from seqtransfer.selection.run import select_in_graph

    config = config or AdaptConfig()
    out = Path(out)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def stage_done(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - since, 3)
        return now

    graph_report = prefixed(progress, "graph: ")

    out.mkdir(parents=True, exist_ok=True)
    target_names = [t.name for t in plan.targets]
    # 2. graph
    t0 = time.perf_counter()
    from seqtransfer.data.preprocess import PreprocessCache, PreprocessConfig

    # --graph, or OUT/graph of an earlier (interrupted or finished) run: add what is missing
    graph_root = Path(graph_dir) if graph_dir is not None else out / "graph"
    if graph_dir is not None or GraphStore(graph_root).graph_path.exists():
        stored, stored_config, _, _ = GraphStore(graph_root).load()
        _graph_sources_match(stored, graph_root, plan)
        todo = _targets_to_add(stored, plan, stored_config)
        if todo:
            logger.info("graph: adding %s to %s", ", ".join(todo), graph_root)
            cache = PreprocessCache(cache_dir, PreprocessConfig(size=stored_config.size))
            add_targets(
                graph_root,
                [*plan.source_tasks, *plan.targets],
                todo,
                cache=cache,
                progress=graph_report,
                executor=executor,
            )
    else:
        logger.info("graph: building %s (%d sources)", graph_root, len(plan.source_tasks))
        cache = PreprocessCache(cache_dir, PreprocessConfig(size=config.graph.size))
        build_graph(
            [*plan.source_tasks, *plan.targets],
            graph_root,
            config.graph,
            targets=target_names,
            cache=cache,
            progress=graph_report,
            executor=executor,
        )
    t0 = stage_done("graph", t0)
    # 3. zoo: O of every connected source
    edge = int((config.zoo.network.patch_size or (32,))[0])
    workspace = open_workspace(
        graph_root, size=edge, cache_dir=cache_dir, spacing=config.spacing, models_root=models_root
    )
    graph = workspace.graph
    grid = workspace.cache.config.spacing
    if grid is not None:  # the network knows the grid it trains on
        config = replace(
            config,
            zoo=replace(
                config.zoo,
                network=replace(config.zoo.network, spacing=(float(grid[0]), float(grid[1]), float(grid[2]))),
            ),
        )
    pools = {t: source_pool(graph, t, config.max_sources) for t in target_names}
    connected = sorted({s for pool in pools.values() for s in pool})
    missing = [s for s in connected if "dice" not in graph.nodes[s]]
    if missing:
        logger.info("zoo: training %d source model(s) for the landmark score's O", len(missing))
        if executor is not None and len(missing) > 1:
            jobs = [
                (
                    str(graph_root),
                    edge,
                    config.spacing,
                    None if cache_dir is None else str(cache_dir),
                    None if models_root is None else str(models_root),
                    name,
                    config.zoo,
                )
                for name in missing
            ]
            results = executor.map(_zoo_job, jobs, relabel(progress, "zoo"), gpu=True)
            for r in results:
                record_zoo_node(graph, r["task"], r["dice"], r["key"], r["n_train"], r["o_cases"])
        else:
            for i, name in enumerate(missing, start=1):
                train_source(workspace, name, config.zoo, progress=relabel(progress, f"training {name} (zoo)"))
                report(progress, "zoo", i, len(missing))
                workspace.store.save_graph(graph)
        workspace.store.save_graph(graph)
    t0 = stage_done("zoo", t0)
    records: list[dict[str, Any]] = []
    finals: dict[str, str] = {}
    for task in plan.targets:
        # 4. select
        seen = graph.subgraph([*pools[task.name], task.name]) if config.max_sources else graph
        transferability = None
        if config.score == "leep":  # exp(LEEP) of every connected source model on the labelled cases
            linked = [s for s in pools[task.name] if seen.has_edge(s, task.name)]
            logger.info(
                "select: LEEP of %d source model(s) on %s's %d labelled case(s)", len(linked), task.name, task.n_cases
            )
            transferability = zoo_transferability(
                workspace,
                task,
                linked,
                [c.case_id for c in task.cases],
                seed=config.zoo.seed,
                progress=relabel(progress, "LEEP"),
            )
        selection = select_in_graph(
            seen,
            task.name,
            lam=config.lam,
            max_length=config.max_length,
            c_search=config.c_search,
            where=str(graph_root),
            transferability=transferability,
        )
        write_json(workspace.store.selection_path(task.name), selection.to_dict())
        logger.info(
            "select: %s starts from %s (%d step(s)); fine-tuning on %d labelled case(s)",
            task.name,
            selection.landmark,
            len(selection.path) - 1,
            task.n_cases,
        )
        t1 = time.perf_counter()
        # 5. fine-tune on every labelled case
        # a landmark model recorded on the graph (`zoo train`, or an earlier adapt) is used with the
        # configuration it was really trained with, which the path's intermediate steps follow too
        recorded, zoo_config = landmark_zoo_model(workspace, selection.landmark, config.zoo)
        landmark = recorded
        if landmark is None:
            landmark = train_source(
                workspace,
                selection.landmark,
                config.zoo,
                progress=relabel(progress, f"training {selection.landmark} (landmark)"),
            )
            workspace.store.save_graph(graph)
        labelled = [c.case_id for c in task.cases]
        metrics = run_transfer(
            workspace,
            task.name,
            selection.path,
            zoo_config,
            config.finetune,
            out_dir=out / "transfers" / task.name,
            progress=prefixed(progress, "training "),
            target_cases=labelled,
            landmark=landmark,
        )
        timings[f"fine-tune {task.name}"] = round(time.perf_counter() - t1, 3)
        finals[task.name] = metrics.final_model
        record: dict[str, Any] = {
            "target": task.name,
            "modality": task.modality,
            "objective": task.objective,
            "label_values": list(task.label_values),
            "landmark": selection.landmark,
            "path": selection.path,
            "objective_value": selection.objective,
            "step_weights": selection.step_weights,
            "direct_weight": selection.direct_weight,
            "performance_source": selection.performance_source,
            "labelled_cases": labelled,
            "affinity_cases": list(graph.nodes[task.name].get("affinity_cases", [])),
            "landmark_model": str(landmark.folder),
            "landmark_source_dice": landmark.dice,
            "step_models": [
                {"node": s.node, "folder": s.folder, "train_cases": s.train_cases, "cached": s.cached}
                for s in metrics.steps
            ],
            "final_model": metrics.final_model,
            "landmark_scores": selection.to_dict()["landmark_scores"],
            "score": selection.score,
        }
        if config.estimate:
            t2 = time.perf_counter()
            record["estimate"] = _estimate(
                workspace, task, selection.path, zoo_config, config.finetune, landmark, out, progress
            )
            timings[f"estimate {task.name}"] = round(time.perf_counter() - t2, 3)
        records.append(record)
    t0 = time.perf_counter()
    # 7. predict
    predicted = predict_unlabelled(plan, finals, out, progress)
    t0 = stage_done("predict", t0)
    held_back = held_back_dice(plan, out, predicted)
    for record in records:
        if record["target"] in held_back:
            record["labelsTs_dice"] = held_back[record["target"]]
    result = {
        "target_dataset": str(plan.target_dataset.root.resolve()),
        "sources": [str(d.root.resolve()) for d in plan.sources],
        "graph": str(graph_root.resolve()),
        "objective_groups": str(plan.groups_file) if plan.groups_file else None,
        "modality_aliases": str(plan.aliases_file) if plan.aliases_file else None,
        "targets": records,
        "zoo_trained": missing,
        "predictions": {
            "folder": str((out / "predictions").resolve()),
            "file_ending": plan.target_dataset.file_ending,
            "cases": predicted,
            "labels": {name: list(values) for name, values in plan.target_dataset.labels.items()},
            "merge": "most probable class above 0.5, else background"
            if all(len(t.label_values) == 1 for t in plan.targets)
            else "regions painted largest first (nnU-Net regions_class_order)",
        },
        "config": config.to_dict(),
        "network": config.zoo.network.to_dict(),
        "seconds": timings,
        "versions": package_versions(),
    }
    from seqtransfer.adapt.report import write_adapt_report

    write_adapt_report(out, result, plan, graph)
    timings["total"] = round(time.perf_counter() - started, 3)  # the dict result["seconds"] holds
    write_json(out / "adapt.json", result)
    return result
