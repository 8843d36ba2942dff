"""``seqtransfer run CONFIG``: the paper's protocol, every run a record of the store.

Stages, each skipped where the store (``RUN_DIR/runs.sqlite``) already holds its result:

1. datasets (generated once when ``data.benchmark``), verified; tasks; targets;
2. one graph per draw of the target's training cases (:func:`~seqtransfer.experiment.protocol.draw_graph`);
3. the zoo: one model per source connected to some target (its held-out Dice is O);
4. per target and draw: the selection (landmark + optimal path), then every method of
   ``protocol.methods`` (the registry :mod:`~seqtransfer.experiment.methods`); the
   transferability scores of every connected source (LogME, LEEP, NCE); for the first
   ``quality_draws`` draws, the direct transfer of every connected source (the
   selection-quality ground truth);
5. the sample-size study (``protocol.n_train`` other than 3): per number n of labelled target
   cases, draw and target, ``protocol.sample_size_methods`` with n cases (graph, scores,
   training), scored on the first test set (:func:`run_sample_size`);
6. leave-one-site-out calibration (``calibrated``): alpha, beta fitted by Bayesian
   optimisation on the other targets' measured direct transfers, then selection and transfer.

Results are records of kind ``method`` (one per method, target, draw and variant),
``sample_size``, ``scores`` and ``transfer``; :mod:`seqtransfer.report` turns them into tables and figures. The resolved
configuration, seeds and package versions are written to ``RUN_DIR/config.resolved.json``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np

from seqtransfer.core.atomic import write_json
from seqtransfer.core.errors import ConfigError
from seqtransfer.core.executor import Executor, ProcessExecutor, SequentialExecutor, send
from seqtransfer.core.fetch import exists
from seqtransfer.core.fetch import install as install_fetcher
from seqtransfer.core.progress import Progress, prefixed, relabel
from seqtransfer.data.preprocess import PreprocessCache, PreprocessConfig
from seqtransfer.data.splits import TargetSplit, sample_size_split, source_split, target_split
from seqtransfer.data.tasks import (
    Task,
    find_modality_aliases,
    find_objective_groups,
    load_modality_aliases,
    load_objective_groups,
    split_tasks,
)
from seqtransfer.data.verify import require_valid
from seqtransfer.experiment.config import PROTOCOL_TRAIN_CASES, DataConfig, ExperimentConfig
from seqtransfer.experiment.layout import RunLayout
from seqtransfer.experiment.methods import LANDMARK_METHODS, Method, methods_in
from seqtransfer.experiment.protocol import derived_graph, draw_graph, protocol_targets
from seqtransfer.experiment.records import PathResult, TransferRecord
from seqtransfer.experiment.store import JournalStore, RunRecord, RunStore, protocol_direct_transfers
from seqtransfer.graph.build import reachable_sources, set_weights
from seqtransfer.graph.engine import release_features
from seqtransfer.graph.sources import candidate_sources, source_pool
from seqtransfer.graph.store import GraphStore, package_versions
from seqtransfer.pipeline.config import FinetuneConfig, ZooConfig
from seqtransfer.pipeline.transfer import run_transfer
from seqtransfer.pipeline.workspace import Workspace, open_workspace
from seqtransfer.pipeline.zoo import ZooModel, record_zoo_node, train_source
from seqtransfer.selection.errors import SelectionError
from seqtransfer.selection.path import optimal_path
from seqtransfer.selection.run import Selection, select_in_graph
from seqtransfer.training.checkpoint import CHECKPOINT_FINAL

if TYPE_CHECKING:
    from seqtransfer.benchmark import BenchmarkConfig
    from seqtransfer.experiment.mirror import Link, Mirror

logger = logging.getLogger(__name__)


def zoo_config_of(config: ExperimentConfig) -> ZooConfig:
    """How an experiment trains its source models."""
    return config.zoo.zoo_config(config.network, config.seed)


def finetune_config_of(config: ExperimentConfig, draw: int = 0) -> FinetuneConfig:
    """An experiment's fine-tuning recipe for one draw."""
    return replace(config.finetune, draw=draw, seed=config.seed)


def benchmark_config_of(config: ExperimentConfig) -> BenchmarkConfig:
    """The embedded benchmark an experiment with ``[data] benchmark = true`` generates."""
    from seqtransfer.benchmark import BenchmarkConfig

    return BenchmarkConfig(
        seed=config.seed,
        size=config.data.benchmark_size,
        cases=config.data.benchmark_cases,
        tumour_sites=config.data.benchmark_tumour_sites,
        deep_grey=config.data.benchmark_deep_grey,
    )


@dataclass
class Context:
    """What every stage of a run needs."""

    config: ExperimentConfig
    run_dir: Path
    #: the driver's SQLite store, or a worker's journal of it (never the file)
    store: RunStore | JournalStore
    tasks: dict[str, Task]
    targets: list[str]
    workspaces: dict[int, Workspace] = field(default_factory=dict)
    #: the sample-size study's graphs, by (labelled target cases, draw)
    sample_workspaces: dict[tuple[int, int], Workspace] = field(default_factory=dict)
    zoo: dict[str, ZooModel] = field(default_factory=dict)
    #: the driver's files for workers without a shared filesystem (Ray), else None
    shipping: Shipping | None = None

    @property
    def zoo_config(self) -> ZooConfig:
        return zoo_config_of(self.config)

    def finetune(self, draw: int) -> FinetuneConfig:
        return finetune_config_of(self.config, draw)

    def sample_sizes(self) -> list[int]:
        """The sample-size study's numbers of labelled target cases other than the protocol's 3."""
        return sorted(n for n in self.config.protocol.n_train if n != PROTOCOL_TRAIN_CASES)

    def sample_split(self, target: str, n: int) -> TargetSplit:
        """The sample-size study's split of a target with ``n`` labelled cases per draw."""
        task = self.tasks[target]
        return sample_size_split(task.split_key, [c.case_id for c in task.cases], n, seed=self.config.seed)

    def workspace(self, draw: int, n: int = PROTOCOL_TRAIN_CASES) -> Workspace:
        """The graph folder of a draw (of the sample-size study's ``n`` labelled cases)."""
        return self.workspaces[draw] if n == PROTOCOL_TRAIN_CASES else self.sample_workspaces[(n, draw)]

    def performance(self) -> dict[str, float]:
        return {name: model.dice for name, model in self.zoo.items()}

    def connected(self, target: str) -> list[str]:
        """The target's sources: connected by an edge in draw 0's graph.

        With ``protocol.max_sources = N`` only the N with the smallest w (draw 0) are kept,
        for every draw and every method.
        """
        return source_pool(self.workspaces[0].graph, target, self.config.protocol.max_sources)

    def pool_graph(self, target: str, draw: int, graph: nx.Graph | None = None) -> nx.Graph:
        """The graph a target's selection sees: all of it, or only its ``max_sources`` pool."""
        g = graph if graph is not None else self.workspaces[draw].graph
        if not self.config.protocol.max_sources:
            return g
        return g.subgraph([*self.connected(target), target])


def _datasets(config: ExperimentConfig, run_dir: Path, progress: Progress | None) -> tuple[list[Path], Path | None]:
    if not config.data.benchmark:
        return [Path(d) for d in config.data.datasets], Path(config.data.groups) if config.data.groups else None
    from seqtransfer.benchmark import make_benchmark

    bench = benchmark_config_of(config)
    layout = RunLayout(run_dir)
    out, marker = layout.benchmark_dir, layout.benchmark_marker
    if marker.exists():
        try:
            saved = json.loads(marker.read_text())
            if saved.get("config") == bench.to_dict():  # to_dict: markers from before deep_grey match
                return [out / name for name in saved["datasets"]], layout.benchmark_groups
        except (OSError, json.JSONDecodeError, KeyError):
            pass
    logger.info("generating the embedded benchmark in %s", out)
    roots = make_benchmark(out, bench, prefixed(progress, "benchmark "))
    write_json(marker, {"config": bench.to_dict(), "datasets": [r.name for r in roots]})
    return roots, layout.benchmark_groups


def open_context(
    config: ExperimentConfig,
    run_dir: Path,
    progress: Progress | None = None,
    executor: Executor | None = None,
    store: JournalStore | None = None,
) -> Context:
    """Stages 1-2: datasets, targets and the graphs of every draw (built once, then reused).

    Also loads the zoo models the store already holds. Worker processes call this to get
    the same context as the main process (the graphs exist by then), with ``store`` their
    journal of the driver's store; the driver opens the SQLite file. ``executor`` runs the
    graphs' feature and pair shards.
    """
    roots, groups_file = _datasets(config, run_dir, progress)
    datasets, _ = require_valid(roots, prefixed(progress, "verify "))
    if groups_file is None or not groups_file.exists():
        groups_file = find_objective_groups(roots)
    groups = load_objective_groups(groups_file) if groups_file is not None else None
    aliases_file = Path(config.data.modalities) if config.data.modalities else find_modality_aliases(roots)
    aliases = load_modality_aliases(aliases_file) if aliases_file is not None else None
    tasks = {t.name: t for t in split_tasks(datasets, groups, aliases)}
    targets = list(config.protocol.targets) or protocol_targets(
        list(tasks.values()), config.protocol.targets_per_collection
    )
    unknown = [t for t in targets if t not in tasks]
    if unknown:
        raise ConfigError(f"protocol.targets: unknown task(s) {', '.join(unknown)}")
    preflight(config, tasks, targets)
    run_dir.mkdir(parents=True, exist_ok=True)
    layout = RunLayout(run_dir)
    ctx = Context(
        config=config,
        run_dir=run_dir,
        store=store if store is not None else RunStore(layout.store_path),
        tasks=tasks,
        targets=targets,
    )
    cache_dir = layout.cache_dir
    graph_cache = PreprocessCache(cache_dir, PreprocessConfig(size=config.graph.size))
    base = layout.graph_dir(0)
    edge = (config.network.patch_size or (32,))[0]
    for draw in range(config.protocol.draws):
        report_draw = prefixed(progress, f"graph draw {draw}: ")
        folder = draw_graph(
            base,
            layout.graph_dir(draw),
            list(tasks.values()),
            targets,
            config.graph,
            draw,
            graph_cache,
            executor,
            report_draw,
        )
        ctx.workspaces[draw] = open_workspace(
            folder, size=edge, cache_dir=cache_dir, models_root=layout.models_dir, datasets=datasets
        )
    for n in ctx.sample_sizes():  # the sample-size study: each target stands for its n labelled cases
        splits = {t: ctx.sample_split(t, n) for t in targets}
        for draw in range(config.protocol.draws):
            report_n = prefixed(progress, f"graph n={n} draw {draw}: ")
            cases = {t: list(split.draws[draw]) for t, split in splits.items()}
            folder = derived_graph(
                base,
                layout.sample_size_graph_dir(n, draw),
                list(tasks.values()),
                targets,
                replace(config.graph, target_draw=draw),
                graph_cache,
                cases,
                executor,
                report_n,
            )
            ctx.sample_workspaces[(n, draw)] = open_workspace(
                folder, size=edge, cache_dir=cache_dir, models_root=layout.models_dir, datasets=datasets
            )
    check_target_splits(ctx)
    for name in needed_sources(ctx):
        done = ctx.store.done("zoo", _zoo_spec(ctx, name))
        if done is not None and _has_model(Path(done["folder"])):
            ctx.zoo[name] = ZooModel.from_dict(done)
    return ctx


def _has_model(folder: Path) -> bool:
    """Whether a model folder holds its final checkpoint (here, or for a worker's copy of the
    run, at the driver: it is fetched when a task reads it)."""
    return exists(folder / CHECKPOINT_FINAL)


def preflight(config: ExperimentConfig, tasks: dict[str, Task], targets: list[str]) -> None:
    """Refuse a protocol that cannot run, before anything is written or trained.

    From the tasks' metadata alone: every target has enough cases for its draws and test sets,
    is reachable (some source of another site shares its modality or objective group, so the
    graph gives it an edge), and every source it can reach has the cases a zoo model needs.

    Raises:
        ConfigError: naming the task and what it lacks.
    """
    sources = [t for name, t in tasks.items() if name not in set(targets)]
    if not sources:
        raise ConfigError("protocol: every task is a target, no source is left")
    for name in targets:
        target = tasks[name]
        target_split(
            target.split_key,
            [c.case_id for c in target.cases],
            seed=config.graph.seed,
            n_train=config.graph.target_cases,
        )
        for n in config.protocol.n_train:  # enough cases outside the test set for every sample size
            sample_size_split(target.split_key, [c.case_id for c in target.cases], n, seed=config.seed)
        reachable = reachable_sources(target, sources)
        if not reachable:
            raise ConfigError(
                f"protocol target {name!r} is unreachable: no source of another site shares its modality "
                f"({target.modality}) or objective group ({target.group})"
            )
        for source in reachable:
            source_split(
                source.split_key, [c.case_id for c in source.cases], seed=config.seed, max_train=config.zoo.max_train
            )


def check_target_splits(ctx: Context) -> None:
    """Each draw's graph stands for a target by exactly that draw's training cases, never a test case.

    The graph, the transfers and the test sets use one split of each target (the
    configuration refuses settings that would make two); this asserts it on the graphs as built.

    Raises:
        RuntimeError: a target's affinity cases differ from the draw's training cases or meet
            its test sets (a programming error, never bad input).
    """
    for target in ctx.targets:
        task = ctx.tasks[target]
        split = target_split(
            task.split_key, [c.case_id for c in task.cases], seed=ctx.config.seed, n_train=PROTOCOL_TRAIN_CASES
        )
        tested = {c for test_set in split.test_sets for c in test_set}
        for draw, workspace in ctx.workspaces.items():
            used = set(workspace.graph.nodes[target].get("affinity_cases", []))
            if used != set(split.draws[draw]) or used & tested:
                raise RuntimeError(
                    f"{target} draw {draw}: the graph used cases {sorted(used)}, the draw trains on "
                    f"{sorted(split.draws[draw])}"
                    f"{' and some are test cases' if used & tested else ''}"
                )
        for (n, draw), workspace in ctx.sample_workspaces.items():
            sample = sample_size_split(task.split_key, [c.case_id for c in task.cases], n, seed=ctx.config.seed)
            used = set(workspace.graph.nodes[target].get("affinity_cases", []))
            if used != set(sample.draws[draw]) or used & set(sample.test_sets[0]):
                raise RuntimeError(
                    f"{target} n={n} draw {draw}: the graph used cases {sorted(used)}, the draw trains on "
                    f"{sorted(sample.draws[draw])}"
                )


def needed_sources(ctx: Context) -> list[str]:
    """Every source connected to some target: the zoo the protocol needs."""
    return sorted({s for t in ctx.targets for s in ctx.connected(t)})


def _zoo_spec(ctx: Context, name: str) -> dict[str, Any]:
    return {"task": name, "zoo": ctx.zoo_config.to_dict()}


@dataclass
class Shipping:
    """The driver's side of a run whose workers see no shared filesystem (the Ray executor):
    its roots (run folder, datasets, group and modality files) by token, the
    :class:`~seqtransfer.experiment.mirror.FolderServer` on the driver's node, and the
    workers' ``storage`` (a folder every node mounts, or None: each node's own scratch)."""

    roots: dict[str, Path]
    server: Any
    storage: str | None = None
    #: the data paths the workers get (the group and alias files found beside the datasets
    #: named: a worker's copies of the datasets have no common parent to find them in)
    data: DataConfig | None = None
    #: other spellings of the roots (as given, absolute), for records written before
    aliases: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def start(cls, config: ExperimentConfig, run_dir: Path, storage: str | None, server: Any = None) -> Shipping:
        """The roots of ``config``'s run in ``run_dir`` and their server (started on this node
        unless given)."""
        from seqtransfer.experiment.mirror import RUN, data_token, driver_roots, start_server

        data = config.data
        if data.datasets:
            groups = data.groups or find_objective_groups(list(data.datasets))
            modalities = data.modalities or find_modality_aliases(list(data.datasets))
            data = replace(
                data,
                groups=str(groups) if groups is not None else None,
                modalities=str(modalities) if modalities is not None else None,
            )
        files = {"@groups": data.groups, "@modalities": data.modalities}
        roots = driver_roots(run_dir, list(data.datasets), files)
        given = {RUN: run_dir, **{data_token(i): Path(d) for i, d in enumerate(data.datasets)}}
        aliases = {
            token: sorted({str(path), str(path.absolute())} - {str(roots[token])})
            for token, path in given.items()
            if token in roots
        }
        return cls(roots, server if server is not None else start_server(roots), storage, data, aliases)

    def stop(self) -> None:
        """End the server."""
        import ray

        with contextlib.suppress(Exception):
            ray.kill(self.server)

    def tokens(self, obj: Any) -> Any:
        from seqtransfer.experiment.mirror import tokens

        return tokens(obj, self.roots, self.aliases)

    def untokens(self, obj: Any) -> Any:
        from seqtransfer.experiment.mirror import untokens

        return untokens(obj, self.roots)

    def worker_config(self, config: ExperimentConfig) -> ExperimentConfig:
        """``config`` with its data paths as tokens (a worker puts its own copies in their place)."""
        return replace(config, data=_data_paths(self.data or config.data, self.tokens))


def _data_paths(data: DataConfig, rebase: Callable[[Any], Any]) -> DataConfig:
    def one(path: str | None) -> str | None:
        return None if path is None else rebase(str(Path(path).resolve()) if not path.startswith("@") else path)

    return replace(
        data,
        datasets=tuple(str(one(d)) for d in data.datasets),
        groups=one(data.groups),
        modalities=one(data.modalities),
    )


@dataclass(frozen=True)
class Stage:
    """What every unit of one stage's map shares: the experiment, the run folder and the
    driver's finished records when the stage began (a worker's :class:`JournalStore`).

    With ``link`` (workers without a shared filesystem), ``run_dir``, the datasets of
    ``config`` and the paths of ``snapshot`` are tokens: the worker is handed no path of the
    driver's, and works in its own copy (:class:`~seqtransfer.experiment.mirror.Mirror`).
    """

    name: str
    config: ExperimentConfig
    run_dir: str
    snapshot: dict[str, RunRecord]
    token: str
    link: Link | None = None


def stage_of(ctx: Context, name: str) -> Stage:
    """The shared input of a stage's units (the store's finished records as of now)."""
    assert isinstance(ctx.store, RunStore), "only the driver starts a stage"
    token = uuid.uuid4().hex
    if ctx.shipping is None:
        return Stage(name, ctx.config, str(ctx.run_dir), ctx.store.snapshot(), token)
    from seqtransfer.experiment.mirror import RUN, respelled_records, stage_link

    ship = ctx.shipping
    link = stage_link(ship.roots, ship.server, ship.storage)
    snapshot = respelled_records(ctx.store.snapshot(), ship.tokens)
    return Stage(name, ship.worker_config(ctx.config), RUN, snapshot, token, link)


_WORKER_CONTEXTS: dict[str, Context] = {}


def _worker_context(stage: Stage) -> Context:
    """The context of a worker, opened once per process and stage.

    A worker process runs many units of one stage; reopening the datasets and graphs for
    each would repeat the same reads. One per stage: a context opened before the zoo stage
    (which holds only the models done then) must not serve the methods stage. Its store is
    a :class:`JournalStore` of the stage's snapshot: the worker never opens the SQLite file.
    With a :attr:`Stage.link`, it first brings its copy of the run up to date and works
    there; what it sends is spelled in tokens, the files a record names shipped before it.
    """
    if stage.token not in _WORKER_CONTEXTS:
        _WORKER_CONTEXTS.clear()  # one stage at a time
        release_features()  # what this worker read for affinity shards
        if stage.link is None:
            install_fetcher(None)  # every file is where its path says
            journal = JournalStore(stage.snapshot, RunLayout(Path(stage.run_dir)).store_path)
            ctx = open_context(stage.config, Path(stage.run_dir), store=journal)
        else:
            from seqtransfer.experiment.mirror import RUN, Mirror, respelled_records

            mirror = Mirror.of(stage.link)
            run_dir = mirror.path(RUN)
            journal = JournalStore(
                respelled_records(stage.snapshot, mirror.inward),
                RunLayout(run_dir).store_path,
                outbox=functools.partial(_ship_and_send, mirror),
            )
            config = replace(stage.config, data=_data_paths(stage.config.data, mirror.inward))
            ctx = open_context(config, run_dir, store=journal)
        _WORKER_CONTEXTS[stage.token] = ctx
    return _WORKER_CONTEXTS[stage.token]


def _ship_and_send(mirror: Mirror, message: Any) -> None:
    """A worker's message to the driver in tokens; a finished run's files are shipped first."""
    if message[0] == "done":
        mirror.ship()
    send(mirror.outward(message))


def _unit_done(stage: Stage, result: Any = None) -> Any:
    """The end of a worker's unit: the files it wrote outside a stored run shipped, and its
    result spelled in tokens (nothing to do with a shared filesystem)."""
    if stage.link is None:
        return result
    from seqtransfer.experiment.mirror import Mirror

    mirror = Mirror.current(stage.link)
    mirror.ship()
    return mirror.outward(result)


def _zoo_worker(args: tuple[Stage, str]) -> dict[str, Any]:
    stage, name = args
    ctx = _worker_context(stage)
    return _unit_done(stage, _zoo_model(ctx, name).to_dict())


def zoo_stage(ctx: Context, executor: Executor, progress: Progress | None = None) -> None:
    """Stage 3: train the missing zoo models (in parallel), write O into every draw's graph."""
    missing = [n for n in needed_sources(ctx) if n not in ctx.zoo]
    stage = stage_of(ctx, "zoo")
    records = executor.map(
        _zoo_worker,
        [(stage, n) for n in missing],
        relabel(progress, "zoo"),
        gpu=True,
        on_message=_writer(ctx),
    )
    for r in records:
        r = ctx.shipping.untokens(r) if ctx.shipping is not None else r
        ctx.zoo[r["task"]] = ZooModel.from_dict(r)
    for ws in [*ctx.workspaces.values(), *ctx.sample_workspaces.values()]:
        for name, model in ctx.zoo.items():
            record_zoo_node(ws.graph, name, model.dice, model.key, len(model.train_cases), len(model.test_cases))
        ws.store.save_graph(ws.graph)
    logger.info("zoo: %d source model(s) (%d trained now)", len(ctx.zoo), len(missing))


def _zoo_model(ctx: Context, name: str) -> ZooModel:
    spec = _zoo_spec(ctx, name)

    r = ctx.store.run("zoo", spec, lambda: train_source(ctx.workspaces[0], name, ctx.zoo_config).to_dict())
    if not _has_model(Path(r["folder"])):  # models deleted: train again
        return train_source(ctx.workspaces[0], name, ctx.zoo_config)
    return ZooModel.from_dict(r)


def transfer(
    ctx: Context, path: list[str], draw: int, frozen: bool = True, n: int = PROTOCOL_TRAIN_CASES
) -> TransferRecord:
    """A (stored) transfer along ``path`` with the experiment's recipe (``frozen=False``: the
    whole network fine-tuned, EWC on every parameter; ``n``: the sample-size study's number
    of labelled target cases, scored on its one test set)."""
    recipe = ctx.finetune(draw) if frozen else replace(ctx.finetune(draw), freeze_encoder=False)
    spec: dict[str, Any] = {"path": path, "draw": draw, "finetune": recipe.to_dict(), "zoo": ctx.zoo_config.to_dict()}
    split = None
    if n != PROTOCOL_TRAIN_CASES:  # (the protocol's own transfers keep the keys they always had)
        spec["n_train"] = n
        split = ctx.sample_split(path[-1], n)

    def work() -> dict[str, Any]:
        return TransferRecord.from_result(
            run_transfer(ctx.workspace(draw, n), path[-1], path, ctx.zoo_config, recipe, split=split)
        ).to_dict()

    return TransferRecord.from_dict(ctx.store.run("transfer", spec, work))


def _method(
    ctx: Context,
    method: str,
    target: str,
    draw: int,
    variant: str,
    spec: dict[str, Any],
    work: Callable[[], dict[str, Any]],
    n: int = PROTOCOL_TRAIN_CASES,
) -> dict[str, Any]:
    """A stored method run: kind ``method`` (keyed by its variant), or ``sample_size`` for the
    sample-size study's ``n`` labelled cases (keyed by ``n_train``)."""
    if n == PROTOCOL_TRAIN_CASES:
        kind, head = "method", {"method": method, "target": target, "draw": draw, "variant": variant}
    else:
        kind, head = "sample_size", {"method": method, "target": target, "draw": draw, "n_train": n}
    return ctx.store.run(kind, {**head, **spec}, lambda: {**head, **work()})


def selection(
    ctx: Context,
    target: str,
    draw: int,
    lam: float | None = None,
    graph: nx.Graph | None = None,
    transferability: dict[str, float] | None = None,
) -> Selection:
    """Landmark and optimal path of ``target`` in draw ``draw``'s graph, O from the zoo.

    ``lam`` defaults to ``[selection] lam``; L_max and C_search come from ``[selection]``;
    ``transferability`` selects by the ``leep`` score (:func:`transferability_of`).
    """
    g = ctx.pool_graph(target, draw, graph)
    chosen = ctx.config.selection
    return select_in_graph(
        g,
        target,
        lam=chosen.lam if lam is None else lam,
        max_length=chosen.max_length,
        c_search=chosen.c_search,
        performance=ctx.performance(),
        performance_label="model zoo",
        transferability=transferability,
    )


def _transfer_result(r: TransferRecord) -> dict[str, Any]:
    """A method's result that is one transfer."""
    return PathResult.from_transfer(r, Path(r.run_dir) / "predictions").to_dict()


def scores(ctx: Context, target: str, draw: int, source: str, n: int = PROTOCOL_TRAIN_CASES) -> dict[str, Any]:
    """LogME, LEEP and NCE of a source's zoo model on the target's training draw (stored;
    ``n``: the sample-size study's draw of ``n`` labelled cases)."""
    from seqtransfer.baselines.measure import measure_scores
    from seqtransfer.baselines.train import split_of

    per_class = ctx.config.protocol.score_voxels
    spec: dict[str, Any] = {
        "target": target,
        "draw": draw,
        "source": source,
        "per_class": per_class,
        "zoo": ctx.zoo_config.to_dict(),
        "seed": ctx.config.seed,
    }
    if n != PROTOCOL_TRAIN_CASES:
        spec["n_train"] = n

    def work() -> dict[str, Any]:
        ws = ctx.workspace(draw, n)
        split = split_of(ws, target, ctx.config.seed) if n == PROTOCOL_TRAIN_CASES else ctx.sample_split(target, n)
        rng = np.random.default_rng([ctx.config.seed, draw, sum(map(ord, source + target))])
        return {
            "source": source,
            **measure_scores(ws, ws.task(target), list(split.draws[draw]), ctx.zoo[source].folder, per_class, rng),
        }

    return ctx.store.run("scores", spec, work)


@dataclass
class TargetDraw:
    """One target and draw as a method sees it (:class:`~seqtransfer.experiment.methods.MethodUnit`);
    ``n_train``: the protocol's 3 labelled target cases or the sample-size study's number."""

    ctx: Context
    target: str
    draw: int
    n_train: int = PROTOCOL_TRAIN_CASES
    selection: Selection | None = None
    connected: list[str] = field(default_factory=list)
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def config(self) -> ExperimentConfig:
        return self.ctx.config

    @property
    def workspace(self) -> Workspace:
        return self.ctx.workspace(self.draw, self.n_train)

    @property
    def split(self) -> TargetSplit | None:
        return _target_split(self.ctx, self.target, self.n_train)

    def predictions(self, method: str) -> Path | None:
        return _predictions(self.ctx, self.target, method, self.draw, self.n_train)

    def zoo_models(self, sources: list[str]) -> list[ZooModel]:
        return [self.ctx.zoo[s] for s in sources]

    def zoo_record(self) -> dict[str, Any]:
        return self.ctx.zoo_config.to_dict()

    def finetune_record(self) -> dict[str, Any]:
        return self.ctx.finetune(self.draw).to_dict()

    def select(self, lam: float | None = None, transferability: dict[str, float] | None = None) -> Selection:
        return selection(
            self.ctx, self.target, self.draw, lam=lam, graph=self.workspace.graph, transferability=transferability
        )

    def path_from(self, landmark: str) -> list[str]:
        return _path_from(self.ctx, self.target, self.draw, landmark, self.n_train)

    def ranked_by(self, score: str) -> list[str]:
        return _ranked_by(self.scores, self.connected, score)

    def transfer(self, method: str, path: list[str], variant: str = "", frozen: bool = True) -> None:
        ctx, draw, n = self.ctx, self.draw, self.n_train
        _method(
            ctx,
            method,
            self.target,
            draw,
            variant,
            {"path": path},
            lambda: _transfer_result(transfer(ctx, path, draw, frozen=frozen, n=n)),
            n,
        )

    def record(self, method: str, spec: dict[str, Any], work: Callable[[], dict[str, Any]]) -> None:
        _method(self.ctx, method, self.target, self.draw, "", spec, work, self.n_train)


def _run_methods(unit: TargetDraw, methods: list[Method]) -> None:
    """Each method for one target and draw; one whose landmark cannot be chosen is skipped and
    said (at debug level: this runs in the workers)."""
    for method in methods:
        try:
            method.run(unit)
        except SelectionError as exc:
            logger.debug("%s draw %d: %s skipped (%s)", unit.target, unit.draw, method.name, exc)


def run_target_draw(ctx: Context, target: str, draw: int) -> None:
    """Every method of the protocol for one target and draw (stage 4).

    A target whose landmark cannot be chosen (no source model of its pool learned anything)
    runs every method but ours and its ablations (:data:`~seqtransfer.experiment.methods.LANDMARK_METHODS`);
    that is logged at debug level (this runs in the workers; :func:`run_experiment` says it once).
    """
    p = ctx.config.protocol
    methods = [m for m in methods_in(p.methods) if not m.own_stage]
    connected = ctx.connected(target)
    graph = ctx.workspaces[draw].graph
    try:
        sel: Selection | None = selection(ctx, target, draw)
    except SelectionError as exc:  # e.g. no source model in the pool learned anything
        needs = sorted(m.name for m in methods if m.needs_landmark)
        logger.debug("%s draw %d: %s; skipped: %s", target, draw, exc, ", ".join(needs))
        methods = [m for m in methods if not m.needs_landmark]
        sel = None
    if sel is not None:
        chosen = sel
        ctx.store.run(
            "selection",
            {
                "target": target,
                "draw": draw,
                "zoo": ctx.zoo_config.to_dict(),
                "graph": ctx.config.graph.to_dict(),
                "max_sources": ctx.config.protocol.max_sources,
            },
            lambda: {
                "target": target,
                "draw": draw,
                "landmark": chosen.landmark,
                "path": chosen.path,
                "weights": {s: float(graph.edges[s, target]["weight"]) for s in connected},
                "landmark_scores": {row["source"]: row["score"] for row in chosen.landmark_scores},
                # each term of eq. 5-7, for the selection-quality table's per-term rankings
                "terms": {
                    row["source"]: {
                        "H": float(graph.edges[row["source"], target]["H"]),
                        "R": float(graph.edges[row["source"], target]["R"]),
                        "zeta": row["zeta"],
                        "rho": row["rho"],
                    }
                    for row in chosen.landmark_scores
                },
                "zoo_dice": {s: ctx.zoo[s].dice for s in connected},
            },
        )
    if not connected:  # (a target with a landmark has a pool)
        return
    unit = TargetDraw(ctx, target, draw, selection=sel, connected=connected)
    if any(m.needs_scores for m in methods) or draw < p.quality_draws:
        unit.scores = {s: scores(ctx, target, draw, s) for s in connected}
    _run_methods(unit, methods)
    if draw < p.quality_draws:
        for source in connected:
            transfer(ctx, [source, target], draw)


def _path_from(ctx: Context, target: str, draw: int, landmark: str, n: int = PROTOCOL_TRAIN_CASES) -> list[str]:
    """The optimal path (eq. 8-9, ``[selection]``'s lambda, L_max, C_search) from a given landmark."""
    graph = ctx.pool_graph(target, draw, ctx.workspace(draw, n).graph)
    chosen = ctx.config.selection
    return list(
        optimal_path(
            graph,
            landmark,
            target,
            candidate_sources(graph, target),
            lam=chosen.lam,
            c_search=chosen.c_search,
            max_length=chosen.max_length,
        ).path
    )


def _target_split(ctx: Context, target: str, n: int) -> TargetSplit | None:
    """The sample-size study's split for ``n`` cases; None (the protocol's own) for 3."""
    return None if n == PROTOCOL_TRAIN_CASES else ctx.sample_split(target, n)


def _predictions(ctx: Context, target: str, method: str, draw: int, n: int) -> Path | None:
    """Where a protocol run saves its predictions (the sample-size study saves none)."""
    return RunLayout(ctx.run_dir).method_predictions(target, method, draw) if n == PROTOCOL_TRAIN_CASES else None


def _ranked_by(all_scores: dict[str, dict[str, Any]], connected: list[str], name: str) -> list[str]:
    """The connected sources, best first by a transferability score (an undefined score last)."""

    def rank(s: str) -> tuple[float, str]:
        value = all_scores[s][name]
        return (float(value) if value is not None else -math.inf, s)  # NaN is stored as None

    return sorted(connected, key=rank, reverse=True)


def run_sample_size(ctx: Context, target: str, n: int, draw: int) -> None:
    """The sample-size study for one target, number ``n`` of labelled cases and draw.

    Each method of ``protocol.sample_size_methods`` as in the protocol, but with the draw's
    ``n`` cases everywhere (the graph's target edges, the scores, the training) and scored
    on the split's one test set. Records of kind ``sample_size``.
    """
    methods = methods_in(ctx.config.protocol.sample_size_methods, "protocol.sample_size_methods")
    connected = ctx.connected(target)
    try:
        sel: Selection | None = selection(ctx, target, draw, graph=ctx.workspace(draw, n).graph)
    except SelectionError:  # no source model of the pool learned anything: no landmark
        methods = [m for m in methods if not m.needs_landmark]
        sel = None
    if not connected:  # the methods that rank the pool have nothing to rank
        methods = [m for m in methods if not m.needs_scores]
    unit = TargetDraw(ctx, target, draw, n, selection=sel, connected=connected)
    if any(m.needs_scores for m in methods):
        unit.scores = {s: scores(ctx, target, draw, s, n=n) for s in connected}
    _run_methods(unit, methods)


def direct_transfers(ctx: Context, draw: int = 0) -> list[tuple[str, str, float]]:
    """Every measured direct transfer ``(source, target, dice)`` of the protocol in a draw, from
    the store (:func:`~seqtransfer.experiment.store.protocol_direct_transfers`)."""
    return [(s, t, dice) for (s, t, d), dice in protocol_direct_transfers(ctx.store).items() if d == draw]


def run_calibrated(ctx: Context, targets: list[str] | None = None) -> None:
    """Stage 5: leave-one-site-out calibration, then selection and transfer per draw (a target
    or draw skipped is logged at debug level: this runs in the workers)."""
    from seqtransfer.graph.calibrate import Transfer, calibrate

    p = ctx.config.protocol
    measured = [Transfer(s, t, d) for s, t, d in direct_transfers(ctx, 0) if t in ctx.targets]
    for target in targets if targets is not None else ctx.targets:
        # leave out every target of the held-out one's site: sibling targets share its patients,
        # its split and its label maps, so their test-set Dice would leak its own
        site = ctx.tasks[target].split_key
        others = [m for m in measured if ctx.tasks[m.target].split_key != site]
        store0 = GraphStore(ctx.workspaces[0].root)
        graph0, gconfig, h_scale, _ = store0.load()
        spec = {
            "target": target,
            "transfers": sorted((m.source, m.target, m.dice) for m in others),
            "trials": p.calibration_trials,
            "alpha": gconfig.alpha,
            "beta": gconfig.beta,
        }

        def fit(others=others, graph0=graph0, gconfig=gconfig, h_scale=h_scale) -> dict[str, Any]:
            result = calibrate(
                graph0,
                others,
                h_scale=h_scale,
                alpha=gconfig.alpha,
                beta=gconfig.beta,
                n_trials=p.calibration_trials,
                seed=ctx.config.seed,
            )
            return asdict(result)

        try:
            fitted = ctx.store.run("calibration", spec, fit)
        except ConfigError as exc:
            logger.debug("calibrated: skipped for %s (%s)", target, exc)
            continue
        for draw in range(p.draws):
            graph, gconf, hs, _ = GraphStore(ctx.workspaces[draw].root).load()
            set_weights(graph, replace(gconf, alpha=fitted["alpha"], beta=fitted["beta"]), hs)
            try:
                sel = selection(ctx, target, draw, graph=graph)
            except SelectionError as exc:  # no source model of the pool learned anything
                logger.debug("calibrated: skipped for %s draw %d (%s)", target, draw, exc)
                continue
            _method(
                ctx,
                "calibrated",
                target,
                draw,
                "",
                {"path": sel.path, "alpha": fitted["alpha"]},
                functools.partial(_calibrated_result, ctx, sel.path, draw, fitted),
            )


def _calibrated_result(ctx: Context, path: list[str], draw: int, fitted: dict[str, Any]) -> dict[str, Any]:
    """The calibrated method's record: ours' transfer under the fitted alpha, beta of eq. 5."""
    return {**_transfer_result(transfer(ctx, path, draw)), "alpha": fitted["alpha"], "beta": fitted["beta"]}


def _target_draw_worker(args: tuple[Stage, str, int]) -> None:
    stage, target, draw = args
    run_target_draw(_worker_context(stage), target, draw)
    _unit_done(stage)


def _sample_size_worker(args: tuple[Stage, str, int, int]) -> None:
    stage, target, n, draw = args
    run_sample_size(_worker_context(stage), target, n, draw)
    _unit_done(stage)


def _calibrated_worker(args: tuple[Stage, str]) -> None:
    stage, target = args
    run_calibrated(_worker_context(stage), [target])
    _unit_done(stage)


def _writer(ctx: Context) -> Callable[[Any], None]:
    """The driver's end of the workers' messages: each written to the store as it arrives."""
    store = ctx.store
    assert isinstance(store, RunStore), "only the driver writes the store"
    shipping = ctx.shipping
    if shipping is None:
        return store.apply
    return lambda message: store.apply(shipping.untokens(message))


def run_experiment(
    config: ExperimentConfig,
    run_dir: str | Path,
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> Context:
    """Run (or finish) the whole protocol in ``run_dir``; every finished run is skipped.

    Args:
        config: the experiment.
        run_dir: the run folder (store, graphs, models, predictions, report).
        progress: every stage's :class:`~seqtransfer.core.progress.ProgressEvent` s (one stage
            name per bar: ``graph draw 0: affinity``, ``zoo``, ``methods``, ...).
        executor: where independent runs go (default: in this process).

    Raises:
        ConfigError: a bad configuration (unknown targets, too few cases, ...).
        DatasetError: a dataset that does not verify.
        StoreError: an unusable run folder.
    """
    run_dir = Path(run_dir)
    executor = executor or SequentialExecutor()
    if getattr(executor, "ships_files", False):
        # its workers never see the run folder: the graphs' shards run here, in a local pool
        with ProcessExecutor() as local:
            ctx = open_context(config, run_dir, progress, local)  # verifies everything before writing anything
        ctx.shipping = Shipping.start(config, run_dir, getattr(executor, "storage", None))
    else:
        ctx = open_context(config, run_dir, progress, executor)
    try:
        _run_stages(ctx, executor, progress)
    finally:
        if ctx.shipping is not None:
            ctx.shipping.stop()
    return ctx


def _run_stages(ctx: Context, executor: Executor, progress: Progress | None) -> None:
    """Stages 3-6 of :func:`run_experiment`."""
    config, run_dir = ctx.config, ctx.run_dir
    write_json(
        RunLayout(run_dir).config_path,
        {"config": config.to_dict(), "versions": package_versions(), "written": time.strftime("%Y-%m-%d %H:%M:%S")},
    )
    logger.info("graphs: %d draw(s), %d target(s): %s", config.protocol.draws, len(ctx.targets), ", ".join(ctx.targets))
    zoo_stage(ctx, executor, progress)
    # draw-major order: the draws of one target (which share path prefixes) rarely run at once
    stage = stage_of(ctx, "methods")
    units = [(stage, t, d) for d in range(config.protocol.draws) for t in ctx.targets]
    executor.map(_target_draw_worker, units, relabel(progress, "methods"), gpu=True, on_message=_writer(ctx))
    landmark_methods = sorted(set(config.protocol.methods) & LANDMARK_METHODS)
    for target in ctx.targets:  # the workers ran quietly: say here which targets had no landmark
        for draw in range(config.protocol.draws):
            try:
                selection(ctx, target, draw)
            except SelectionError as exc:
                logger.info("%s draw %d: %s; skipped: %s", target, draw, exc, ", ".join(landmark_methods))
    sizes = ctx.sample_sizes()
    if sizes:  # the sample-size study: every target and draw at each other number of labelled cases
        stage = stage_of(ctx, "sample_size")
        units_n = [(stage, t, n, d) for n in sizes for d in range(config.protocol.draws) for t in ctx.targets]
        executor.map(_sample_size_worker, units_n, relabel(progress, "sample size"), gpu=True, on_message=_writer(ctx))
    if "calibrated" in config.protocol.methods:
        stage = stage_of(ctx, "calibrated")
        executor.map(
            _calibrated_worker,
            [(stage, t) for t in ctx.targets],
            relabel(progress, "calibrated"),
            gpu=True,
            on_message=_writer(ctx),
        )
    logger.info("done: %d run(s) in %s", len(ctx.store.records(status="done")), ctx.store.path)
