"""Building the source graph and adding targets to it (METHOD sections 2-3).

Orchestration only: which volumes, which pairs, what is cached. The formulas live in
:mod:`seqtransfer.affinity`; the per-volume features and the sharded pair computation in
:mod:`seqtransfer.graph.engine`.

What is computed once and shared:

* every case is preprocessed once (:class:`~seqtransfer.data.preprocess.PreprocessCache`);
* a volume's PCA embedding is keyed by the case's content hash, the channel and the PCA's
  fingerprint, and cached on disk in ``GRAPH_DIR/features``: tasks of one site and modality
  (which share images) embed each volume once, and adding a target later reuses them;
* a label volume's SSIM statistics (cropped to the box where they differ from an empty
  volume's) are keyed by the case's content hash and the label values and cached there too,
  so tasks of one site and objective (which share labels) compute them once;
* H is computed per pair of *image sets* and R per pair of *label sets*: the pair
  (16-T1-ET, 20-T1-ET) and (16-T1-ED, 20-T1-ED) share H, (16-T1-ET, 20-T1-ET) and
  (16-T2-ET, 20-T2-ET) share R.

The features and the set pairs are independent jobs sent through an executor (in this
process by default; ``executor=`` a process pool or Ray), and no process holds more than the
features of the two sets it is comparing, so memory does not grow with the number of tasks.
The random subset of volume pairs for a set pair is seeded by the two sets' identities, never
by the order or place of computation, so building with a target and adding it later, or
building on one core and on a cluster, give identical weights.

The PCA and the H scale are fitted on the *sources* only, so targets never move them.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np

from seqtransfer.affinity import SlicePCA, affinity, robust_h_scale
from seqtransfer.core.errors import ConfigError
from seqtransfer.core.progress import Progress, relabel, report
from seqtransfer.data.dataset import Case
from seqtransfer.data.preprocess import PreprocessCache, PreprocessConfig
from seqtransfer.data.splits import protocol_split_possible, sample_cases, source_split, target_split
from seqtransfer.data.tasks import MODALITY_ALIASES_FILE, Task
from seqtransfer.graph import engine as eng
from seqtransfer.graph.config import GraphConfig
from seqtransfer.graph.store import GraphStore

if TYPE_CHECKING:
    from seqtransfer.core.executor import Executor


def edge_allowed(a: Task, b: Task) -> bool:
    """METHOD section 3: an edge exists when two tasks share a modality or an objective group.

    Modalities are compared by :attr:`~seqtransfer.data.tasks.Task.modality_key` (case-insensitive,
    after the modality alias map).
    """
    return a.modality_key == b.modality_key or a.group == b.group


def reachable_sources(target: Task, sources: Sequence[Task]) -> list[Task]:
    """The sources of other sites a target gets an edge to (METHOD sections 3 and 7)."""
    return [s for s in sources if s.site != target.site and edge_allowed(target, s)]


def require_reachable(tasks: Sequence[Task], targets: Sequence[str]) -> None:
    """Refuse a target that no source of another site can reach, naming the maps that would connect it.

    Raises:
        ConfigError: one line per the first unreachable target.
    """
    by_name = {t.name: t for t in tasks}
    sources = [t for t in tasks if t.name not in set(targets)]
    for name in targets:
        target = by_name[name]
        if not reachable_sources(target, sources):
            raise ConfigError(
                f"target {name!r} shares no modality and no objective group with any source of another site: "
                "connect it with a modality alias map (--modalities FILE, JSON "
                f'{{{json.dumps(target.modality)}: "<a source channel>"}}, '
                f"or {MODALITY_ALIASES_FILE} beside the datasets) or an objective-group map (--groups FILE, "
                f'JSON {{{json.dumps(target.objective)}: "<a source objective or its group>"}}, or '
                "objective_groups.json beside the datasets)"
            )


@dataclass(frozen=True)
class TaskVolumes:
    """The volumes a task contributes to the affinity.

    Attributes:
        task: the task.
        cases: the cases used.
        image_keys: content keys of its image volumes (case hash and channel).
        label_keys: content keys of its label volumes (case hash and label values).
    """

    task: Task
    cases: tuple[Case, ...]
    image_keys: tuple[str, ...]
    label_keys: tuple[str, ...]

    @property
    def image_set(self) -> str:
        """Identity of the image set (tasks of one site and modality share it)."""
        return eng.digest(*self.image_keys)

    @property
    def label_set(self) -> str:
        """Identity of the label set (tasks of one site and objective share it)."""
        return eng.digest(*self.label_keys)


def affinity_cases(task: Task, config: GraphConfig, is_target: bool) -> tuple[Case, ...]:
    """The cases whose volumes stand for a task in the affinity.

    A source contributes up to ``volumes_per_task`` seeded cases. A target with enough cases
    for the evaluation protocol contributes only its labelled few-shot training cases (draw
    ``target_draw`` of :func:`~seqtransfer.data.splits.target_split`): its test cases are never
    looked at. A target with fewer (a user's new target with a handful of labels) contributes
    up to ``target_cases`` of its labelled cases (seeded; all of them when it has fewer).

    Raises:
        ConfigError: ``target_draw`` > 0 for a target too small for the protocol's draws.
    """
    by_id = {c.case_id: c for c in task.cases}
    if is_target and not protocol_split_possible(len(by_id), n_train=config.target_cases):
        if config.target_draw != 0:
            raise ConfigError(
                f"target {task.name!r} has {len(by_id)} labelled case(s): too few for the protocol's draws, so "
                "target_draw must be 0"
            )
        ids = sample_cases(
            task.split_key, list(by_id), config.target_cases, seed=config.seed, purpose="target-affinity"
        )
    elif is_target:
        split = target_split(task.split_key, list(by_id), seed=config.seed, n_train=config.target_cases)
        if config.target_draw >= len(split.draws):
            raise ConfigError(f"target_draw must be below {len(split.draws)}, got {config.target_draw}")
        ids = split.draws[config.target_draw]
    else:
        # seeded by the site, not the task: all tasks of a site use the same cases, so tasks
        # sharing images (or labels) have identical image (label) sets and share H (R)
        ids = sample_cases(task.split_key, list(by_id), config.volumes_per_task, seed=config.seed)
    return tuple(by_id[i] for i in ids)


class AffinityEngine:
    """Registers task volumes, computes their features and the H and R of task pairs.

    Holds keys and results only; volumes and features are read where they are used (see
    :mod:`seqtransfer.graph.engine`).

    Args:
        store: the graph folder (features are cached there).
        config: graph parameters.
        cache: preprocessed-case cache.
        pca: the shared slice PCA (paper mode); fitted by :meth:`fit_pca` when None.
        executor: where feature and pair jobs run (default: in this process).
    """

    def __init__(
        self,
        store: GraphStore,
        config: GraphConfig,
        cache: PreprocessCache,
        pca: SlicePCA | None = None,
        executor: Executor | None = None,
        target_cases: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.store = store
        self.target_cases = dict(target_cases or {})
        self.config = config
        self.cache = cache
        self.pca = pca
        self.executor = executor
        self._refs: dict[str, eng.ImageRef | eng.LabelRef] = {}
        self._h: dict[tuple[str, str], float] = {}
        self._r: dict[tuple[str, str], float] = {}

    def _map(self, fn: Callable, jobs: list, stage: str, progress: Progress | None) -> list:
        if self.executor is None:
            from seqtransfer.core.executor import SequentialExecutor

            executor: Executor = SequentialExecutor()
        else:
            executor = self.executor
        return executor.map(fn, jobs, relabel(progress, stage))

    def volumes(self, task: Task, is_target: bool) -> TaskVolumes:
        """Register a task's volumes by content key (preprocessing each case on demand)."""
        if is_target and task.name in self.target_cases:  # the caller's cases (the sample-size study)
            by_id = {c.case_id: c for c in task.cases}
            cases = tuple(by_id[i] for i in self.target_cases[task.name])
        else:
            cases = affinity_cases(task, self.config, is_target)
        image_keys, label_keys = [], []
        values = ",".join(str(v) for v in task.label_values)
        for case in cases:
            key = self.cache.key(case)
            self.cache.prepare(case)  # preprocessed now, read later by the jobs
            image_key, label_key = f"{key}:c{task.channel}", f"{key}:l{values}"
            self._refs.setdefault(image_key, eng.ImageRef(case, task.channel))
            self._refs.setdefault(label_key, eng.LabelRef(case, tuple(task.label_values)))
            image_keys.append(image_key)
            label_keys.append(label_key)
        return TaskVolumes(task, cases, tuple(image_keys), tuple(label_keys))

    def fit_pca(self, sources: Sequence[TaskVolumes]) -> SlicePCA:
        """Fit the shared slice PCA on the sources' distinct image volumes."""
        keys = sorted({k for tv in sources for k in tv.image_keys})
        refs = [self._refs[k] for k in keys]
        self.pca = eng.fit_pca(self.cache, refs, self.config)  # type: ignore[arg-type]
        return self.pca

    def compute_features(self, tasks: Sequence[TaskVolumes], progress: Progress | None = None) -> int:
        """Cache every feature the tasks' pairs will read and is not cached yet.

        Returns:
            The number of features computed.
        """
        if self.config.mode == "official":
            return 0
        assert self.pca is not None, "fit or load the PCA first"
        per_case: dict[str, tuple[Case, dict[str, int], dict[str, tuple[int, ...]]]] = {}
        for tv in tasks:
            for image_key, label_key in zip(tv.image_keys, tv.label_keys, strict=True):
                image_ref, label_ref = self._refs[image_key], self._refs[label_key]
                case_key = image_key.rsplit(":", 1)[0]
                entry = per_case.setdefault(case_key, (image_ref.case, {}, {}))
                if not self.store.has_feature(eng.embedding_key(image_key, self.pca)):
                    entry[1][image_key] = image_ref.channel  # type: ignore[union-attr]
                if not self.store.has_features(eng.stats_key(label_key)):
                    entry[2][label_key] = label_ref.values  # type: ignore[union-attr]
        work = [
            (case, tuple(sorted(images.items())), tuple(sorted(labels.items())))
            for _, (case, images, labels) in sorted(per_case.items())
            if images or labels
        ]
        jobs = [
            eng.FeatureJob(str(self.store.root), eng.cache_root(self.cache), self.cache.config, self.pca, tuple(chunk))
            for chunk in eng.shards(work)
        ]
        return sum(self._map(eng.feature_job, jobs, "features", progress))

    def _item(self, kind: str, a: TaskVolumes, b: TaskVolumes) -> eng.PairItem:
        if kind == "H":
            x, y = sorted((a, b), key=lambda tv: tv.image_set)
            return eng.PairItem("H", x.image_set, y.image_set, x.image_keys, y.image_keys)
        x, y = sorted((a, b), key=lambda tv: tv.label_set)
        return eng.PairItem("R", x.label_set, y.label_set, x.label_keys, y.label_keys)

    def compute_pairs(self, pairs: Sequence[tuple[TaskVolumes, TaskVolumes]], progress: Progress | None = None) -> None:
        """H and R of every distinct set pair among ``pairs`` not known yet, in shards."""
        items: dict[tuple[str, str, str], eng.PairItem] = {}
        for a, b in pairs:
            for kind, memo in (("H", self._h), ("R", self._r)):
                item = self._item(kind, a, b)
                if (item.set_a, item.set_b) not in memo:
                    items.setdefault((kind, item.set_a, item.set_b), item)
        ordered = [items[k] for k in sorted(items)]
        chunks = eng.shards(ordered)
        jobs = []
        for chunk in chunks:
            keys = {k for item in chunk for k in (*item.keys_a, *item.keys_b)}
            jobs.append(
                eng.PairJob(
                    str(self.store.root),
                    self.config,
                    self.pca,
                    eng.cache_root(self.cache),
                    self.cache.config,
                    {k: self._refs[k] for k in sorted(keys)},
                    tuple(chunk),
                    eng.FEATURE_BUDGET,
                )
            )
        results = self._map(eng.pair_job, jobs, "affinity", progress)
        eng.release_features()  # what this process read for in-process jobs
        for chunk, values in zip(chunks, results, strict=True):
            for item, value in zip(chunk, values, strict=True):
                (self._h if item.kind == "H" else self._r)[(item.set_a, item.set_b)] = float(value)

    def image_distance(self, a: TaskVolumes, b: TaskVolumes) -> float:
        """H between two tasks (computed by :meth:`compute_pairs` when not known yet)."""
        item = self._item("H", a, b)
        if (item.set_a, item.set_b) not in self._h:
            self.compute_pairs([(a, b)])
        return self._h[(item.set_a, item.set_b)]

    def label_similarity(self, a: TaskVolumes, b: TaskVolumes) -> float:
        """R between two tasks (computed by :meth:`compute_pairs` when not known yet)."""
        item = self._item("R", a, b)
        if (item.set_a, item.set_b) not in self._r:
            self.compute_pairs([(a, b)])
        return self._r[(item.set_a, item.set_b)]


def _node_attributes(task: Task, role: str, volumes: TaskVolumes) -> dict[str, object]:
    if role == "source":
        # zeta of eq. 6: the samples the source model trains on (METHOD section 4)
        n_train = (
            len(source_split(task.split_key, [c.case_id for c in task.cases])[0]) if task.n_cases > 1 else task.n_cases
        )
    else:
        n_train = len(volumes.cases)
    return {
        "site": task.site,
        "modality": task.modality,
        "modality_key": task.modality_key,
        "objective": task.objective,
        "group": task.group,
        "collection": task.collection,
        "dataset": str(task.dataset.root.resolve()),
        "n_cases": task.n_cases,
        "n_train": n_train,
        "role": role,
        "affinity_cases": [c.case_id for c in volumes.cases],
    }


def _pairs_to_compute(
    sources: Sequence[TaskVolumes], targets: Sequence[TaskVolumes], with_source_pairs: bool = True
) -> list[tuple[TaskVolumes, TaskVolumes]]:
    pairs = (
        [(a, b) for a, b in itertools.combinations(sources, 2) if edge_allowed(a.task, b.task)]
        if with_source_pairs
        else []
    )
    pairs += [(t, s) for t in targets for s in sources if edge_allowed(t.task, s.task) and t.task.site != s.task.site]
    return pairs


def _load_all(engine: AffinityEngine, tasks: Sequence[Task], role: str, progress: Progress | None) -> list[TaskVolumes]:
    loaded = []
    for done, task in enumerate(tasks, start=1):
        loaded.append(engine.volumes(task, is_target=role == "target"))
        report(progress, f"preprocessing {role}s", done, len(tasks))
    return loaded


def _compute_edges(
    engine: AffinityEngine, pairs: list[tuple[TaskVolumes, TaskVolumes]], progress: Progress | None
) -> list[tuple[str, str, float, float]]:
    involved = {id(tv): tv for pair in pairs for tv in pair}
    engine.compute_features(list(involved.values()), progress)
    engine.compute_pairs(pairs, progress)
    return [(a.task.name, b.task.name, engine.image_distance(a, b), engine.label_similarity(a, b)) for a, b in pairs]


def record_foreground(graph: nx.Graph, store: GraphStore, volumes: Sequence[TaskVolumes]) -> None:
    """Each task's node attribute ``labelled_volumes``: how many of its sampled label volumes
    have any foreground (0: its label is absent, e.g. declared in ``dataset.json`` but never
    drawn). Left out where a volume's statistics were not computed (no edge needed them)."""
    for tv in volumes:
        flags = [eng.label_has_foreground(store, key) for key in tv.label_keys]
        if flags and all(f is not None for f in flags):
            graph.nodes[tv.task.name]["labelled_volumes"] = sum(bool(f) for f in flags)


def set_weights(graph: nx.Graph, config: GraphConfig, h_scale: float) -> None:
    """Set every edge's weight from its H and R with eq. 5."""
    for _, _, data in graph.edges(data=True):
        data["weight"] = float(affinity(data["H"], data["R"], config.alpha, config.beta, h_scale))


def build_graph(
    tasks: Sequence[Task],
    out: str | Path,
    config: GraphConfig | None = None,
    targets: Sequence[str] = (),
    cache: PreprocessCache | None = None,
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> nx.Graph:
    """Build the source graph (and target edges) and store it in ``out``.

    Args:
        tasks: every task, sources and targets.
        out: the graph folder.
        config: graph parameters.
        targets: names of target tasks; every other task is a source.
        cache: preprocessed-case cache (default: the user cache at ``config.size``).
        progress: one :class:`~seqtransfer.core.progress.ProgressEvent` per unit of every stage.
        executor: where the feature and pair jobs run (default: in this process); every
            executor gives the same graph.

    Returns:
        The graph: source nodes with source-source edges, target nodes with edges to the
        sources of other sites.

    Raises:
        ConfigError: unknown target names, or no source left.
    """
    config = config or GraphConfig()
    by_name = {t.name: t for t in tasks}
    unknown = sorted(set(targets) - set(by_name))
    if unknown:
        raise ConfigError(f"unknown target task(s): {', '.join(unknown)} (see `seqtransfer tasks`)")
    source_tasks = [t for t in tasks if t.name not in set(targets)]
    if not source_tasks:
        raise ConfigError("no source task left: every task is a target")
    require_reachable(tasks, targets)
    store = GraphStore(out)
    cache = cache or PreprocessCache(config=PreprocessConfig(size=config.size))
    engine = AffinityEngine(store, config, cache, executor=executor)
    sources = _load_all(engine, source_tasks, "source", progress)
    target_vols = _load_all(engine, [by_name[n] for n in targets], "target", progress)
    if config.mode == "paper":
        engine.fit_pca(sources)
    graph = nx.Graph()
    for tv in sources:
        graph.add_node(tv.task.name, **_node_attributes(tv.task, "source", tv))
    for tv in target_vols:
        graph.add_node(tv.task.name, **_node_attributes(tv.task, "target", tv))
    source_pairs = _pairs_to_compute(sources, [])
    edges = _compute_edges(engine, _pairs_to_compute(sources, target_vols), progress)
    n_source_edges = len(source_pairs)
    h_scale = robust_h_scale(np.array([h for _, _, h, _ in edges[:n_source_edges]], dtype=float))
    for a, b, h, r in edges:
        graph.add_edge(a, b, H=h, R=r)
    record_foreground(graph, store, [*sources, *target_vols])
    set_weights(graph, config, h_scale)
    store.save(graph, config, h_scale=h_scale, pca=engine.pca)
    return graph


def add_targets(
    out: str | Path,
    tasks: Sequence[Task],
    targets: Sequence[str],
    cache: PreprocessCache | None = None,
    progress: Progress | None = None,
    executor: Executor | None = None,
    cases: Mapping[str, Sequence[str]] | None = None,
) -> nx.Graph:
    """Add target tasks to a stored graph: only their edges to the sources are computed.

    The stored PCA, H scale and parameters are reused, so the weights are those a build
    with these targets would give. ``cases`` names the labelled cases that stand for a
    target (default: :func:`affinity_cases`), e.g. a sample-size draw's.

    Raises:
        ConfigError: unknown target, or a target that is already a source of the graph.
    """
    store = GraphStore(out)
    graph, config, h_scale, pca = store.load()
    by_name = {t.name: t for t in tasks}
    unknown = sorted(set(targets) - set(by_name))
    if unknown:
        raise ConfigError(f"unknown target task(s): {', '.join(unknown)} (see `seqtransfer tasks`)")
    clash = sorted(n for n in targets if graph.nodes.get(n, {}).get("role") == "source")
    if clash:
        raise ConfigError(f"{', '.join(clash)}: already a source of the graph in {out}; rebuild with --target")
    source_names = [n for n, d in graph.nodes(data=True) if d["role"] == "source"]
    missing = sorted(n for n in source_names if n not in by_name)
    if missing:
        raise ConfigError(f"source task(s) {', '.join(missing[:3])} of the graph not found in the given datasets")
    require_reachable([*(by_name[n] for n in source_names), *(by_name[n] for n in targets)], targets)
    cache = cache or PreprocessCache(config=PreprocessConfig(size=config.size))
    engine = AffinityEngine(store, config, cache, pca=pca, executor=executor, target_cases=cases)
    sources = _load_all(engine, [by_name[n] for n in source_names], "source", progress)
    target_vols = _load_all(engine, [by_name[n] for n in targets], "target", progress)
    for tv in target_vols:
        if tv.task.name in graph:
            graph.remove_node(tv.task.name)
        graph.add_node(tv.task.name, **_node_attributes(tv.task, "target", tv))
    # only the targets' edges: the source-source edges are in the graph already (METHOD section 3)
    for a, b, h, r in _compute_edges(
        engine, _pairs_to_compute(sources, target_vols, with_source_pairs=False), progress
    ):
        graph.add_edge(a, b, H=h, R=r)
    record_foreground(graph, store, target_vols)
    set_weights(graph, config, h_scale)
    store.save(graph, config, h_scale=h_scale, pca=pca)
    return graph
