"""Building the source graph and adding targets to it (METHOD sections 2-3).

Orchestration only: which volumes, which pairs, what is cached. The formulas live in
:mod:`seqtransfer.affinity`.

What is computed once and shared:

* every case is preprocessed once (:class:`~seqtransfer.data.preprocess.PreprocessCache`);
* a volume's PCA embedding is keyed by the case's content hash, the channel and the PCA's
  fingerprint, and cached on disk in ``GRAPH_DIR/features``: tasks of one site and modality
  (which share images) embed each volume once, and adding a target later reuses them;
* a label volume's SSIM statistics are keyed by the case's content hash and the label values,
  so tasks of one site and objective (which share labels) compute them once;
* H is memoised per pair of *image sets* and R per pair of *label sets*: the pair
  (16-T1-ET, 20-T1-ET) and (16-T1-ED, 20-T1-ED) share H, (16-T1-ET, 20-T1-ET) and
  (16-T2-ET, 20-T2-ET) share R.

The random subset of volume pairs for a task pair is seeded by the two sets' identities,
never by the order of computation, so building with a target and adding it later give
identical weights.

The PCA and the H scale are fitted on the *sources* only, so targets never move them.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
import torch

from seqtransfer.affinity import (
    SlicePCA,
    SSIMStats,
    affinity,
    embed_volume,
    fit_slice_pca,
    image_distance,
    label_similarity_from_stats,
    official_image_distance,
    official_label_similarity,
    robust_h_scale,
    ssim_volume_stats,
)
from seqtransfer.data.dataset import Case
from seqtransfer.data.preprocess import PreprocessCache, PreprocessConfig
from seqtransfer.data.splits import sample_cases, source_split, target_split
from seqtransfer.data.tasks import Task
from seqtransfer.errors import ConfigError
from seqtransfer.graph.config import GraphConfig
from seqtransfer.graph.store import GraphStore
from seqtransfer.threads import single_threaded

Progress = Callable[[str, int, int], None]


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:20]


def _pair_rng(seed: int, kind: str, a: str, b: str) -> np.random.Generator:
    """The generator of one set pair: depends on the pair, not on when it is computed."""
    digest = hashlib.sha256(f"{kind}\x1f{a}\x1f{b}".encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def edge_allowed(a: Task, b: Task) -> bool:
    """METHOD section 3: an edge exists when two tasks share a modality or an objective group."""
    return a.modality == b.modality or a.group == b.group


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
        return _digest(*self.image_keys)

    @property
    def label_set(self) -> str:
        """Identity of the label set (tasks of one site and objective share it)."""
        return _digest(*self.label_keys)


def affinity_cases(task: Task, config: GraphConfig, is_target: bool) -> tuple[Case, ...]:
    """The cases whose volumes stand for a task in the affinity.

    A source contributes up to ``volumes_per_task`` seeded cases. A target contributes only
    its labelled few-shot training cases (draw ``target_draw`` of
    :func:`~seqtransfer.data.splits.target_split`): its test cases are never looked at.
    """
    by_id = {c.case_id: c for c in task.cases}
    if is_target:
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
    """Computes and caches per-volume features and per-set-pair H and R.

    Args:
        store: the graph folder (features are cached there).
        config: graph parameters.
        cache: preprocessed-case cache.
        pca: the shared slice PCA (paper mode); fitted by :meth:`fit_pca` when None.
    """

    def __init__(self, store: GraphStore, config: GraphConfig, cache: PreprocessCache, pca: SlicePCA | None = None) -> None:
        self.store = store
        self.config = config
        self.cache = cache
        self.pca = pca
        self._images: dict[str, np.ndarray] = {}
        self._labels: dict[str, np.ndarray] = {}
        self._embeddings: dict[str, np.ndarray] = {}
        self._ssim_stats: dict[str, SSIMStats] = {}
        self._h: dict[tuple[str, str], float] = {}
        self._r: dict[tuple[str, str], float] = {}

    def volumes(self, task: Task, is_target: bool) -> TaskVolumes:
        """Load a task's volumes (preprocessing on demand) and register them by content key."""
        cases = affinity_cases(task, self.config, is_target)
        image_keys, label_keys = [], []
        values = ",".join(str(v) for v in task.label_values)
        for case in cases:
            key = self.cache.key(case)
            image, label = self.cache.task_volume(case, task.channel, task.label_values)
            image_key, label_key = f"{key}:c{task.channel}", f"{key}:l{values}"
            self._images.setdefault(image_key, image)
            self._labels.setdefault(label_key, label)
            image_keys.append(image_key)
            label_keys.append(label_key)
        return TaskVolumes(task, cases, tuple(image_keys), tuple(label_keys))

    def fit_pca(self, sources: Sequence[TaskVolumes]) -> SlicePCA:
        """Fit the shared slice PCA on the sources' distinct image volumes."""
        keys = sorted({k for tv in sources for k in tv.image_keys})
        volumes = [self._images[k] for k in keys]
        self.pca = fit_slice_pca(
            volumes,
            n_components=self.config.n_components,
            max_slices=self.config.max_slices,
            rng=np.random.default_rng(self.config.seed),
        )
        return self.pca

    def embedding(self, image_key: str) -> np.ndarray:
        """The PCA embedding of a volume, from memory, the disk cache or computed."""
        if image_key in self._embeddings:
            return self._embeddings[image_key]
        assert self.pca is not None, "fit or load the PCA first"
        cache_key = _digest(image_key, self.pca.fingerprint())
        emb = self.store.load_feature(cache_key)
        if emb is None:
            emb = embed_volume(self.pca, np.asarray(self._images[image_key]))
            self.store.save_feature(cache_key, emb)
        self._embeddings[image_key] = emb
        return emb

    def _stats(self, label_key: str) -> SSIMStats:
        """A label volume's SSIM statistics, from memory, the disk cache or computed.

        Cached on disk like the embeddings, so adding a target does not recompute the
        sources' statistics: mean, variance and background map stacked (float64, exact) and
        the window box as six integers (-1 when the label is empty).
        """
        if label_key in self._ssim_stats:
            return self._ssim_stats[label_key]
        cache_key = _digest(label_key, "ssim-stats-v1")
        label = np.asarray(self._labels[label_key])
        maps, box = self.store.load_feature(cache_key), self.store.load_feature(cache_key + "-box")
        if maps is not None and box is not None and maps.shape[0] == 3 and box.shape == (6,):
            window_box = None if box[0] < 0 else tuple((int(box[i]), int(box[i + 1])) for i in (0, 2, 4))
            image = torch.from_numpy(np.array(label, copy=True))
            tensors = torch.from_numpy(maps)
            stats = SSIMStats(image, tensors[0], tensors[1], tensors[2], window_box)
        else:
            stats = ssim_volume_stats(label)
            self.store.save_feature(cache_key, torch.stack([stats.mean, stats.variance, stats.background]).numpy())
            flat = [v for pair in stats.window_box for v in pair] if stats.window_box is not None else [-1] * 6
            self.store.save_feature(cache_key + "-box", np.array(flat, dtype=np.int64))
        self._ssim_stats[label_key] = stats
        return stats

    def image_distance(self, a: TaskVolumes, b: TaskVolumes) -> float:
        """H between two tasks, memoised per (unordered) pair of image sets."""
        x, y = sorted((a, b), key=lambda tv: tv.image_set)
        key = (x.image_set, y.image_set)
        if key not in self._h:
            rng = _pair_rng(self.config.seed, "H", *key)
            if self.config.mode == "official":
                self._h[key] = official_image_distance(
                    [np.asarray(self._images[k]) for k in x.image_keys],
                    [np.asarray(self._images[k]) for k in y.image_keys],
                    rng=rng,
                    resize_to=self.config.official_resize,
                )
            else:
                self._h[key] = image_distance(
                    [self.embedding(k) for k in x.image_keys],
                    [self.embedding(k) for k in y.image_keys],
                    max_pairs=self.config.max_pairs,
                    rng=rng,
                )
        return self._h[key]

    def label_similarity(self, a: TaskVolumes, b: TaskVolumes) -> float:
        """R between two tasks, memoised per (unordered) pair of label sets."""
        x, y = sorted((a, b), key=lambda tv: tv.label_set)
        key = (x.label_set, y.label_set)
        if key not in self._r:
            rng = _pair_rng(self.config.seed, "R", *key)
            if self.config.mode == "official":
                self._r[key] = official_label_similarity(
                    [np.asarray(self._labels[k]) for k in x.label_keys],
                    [np.asarray(self._labels[k]) for k in y.label_keys],
                    rng=rng,
                )
            else:
                self._r[key] = label_similarity_from_stats(
                    [self._stats(k) for k in x.label_keys],
                    [self._stats(k) for k in y.label_keys],
                    max_pairs=self.config.max_pairs,
                    rng=rng,
                )
        return self._r[key]


def _node_attributes(task: Task, role: str, volumes: TaskVolumes) -> dict[str, object]:
    if role == "source":
        # zeta of eq. 6: the samples the source model trains on (METHOD section 4)
        n_train = len(source_split(task.split_key, [c.case_id for c in task.cases])[0]) if task.n_cases > 1 else task.n_cases
    else:
        n_train = len(volumes.cases)
    return {
        "site": task.site,
        "modality": task.modality,
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
    pairs = [(a, b) for a, b in itertools.combinations(sources, 2) if edge_allowed(a.task, b.task)] if with_source_pairs else []
    pairs += [(t, s) for t in targets for s in sources if edge_allowed(t.task, s.task) and t.task.site != s.task.site]
    return pairs


def _load_all(engine: AffinityEngine, tasks: Sequence[Task], role: str, progress: Progress | None) -> list[TaskVolumes]:
    loaded = []
    for done, task in enumerate(tasks, start=1):
        loaded.append(engine.volumes(task, is_target=role == "target"))
        if progress:
            progress(f"preprocessing {role}s", done, len(tasks))
    return loaded


def _compute_edges(engine: AffinityEngine, pairs: list[tuple[TaskVolumes, TaskVolumes]], progress: Progress | None) -> list[tuple[str, str, float, float]]:
    edges = []
    with single_threaded():
        for done, (a, b) in enumerate(pairs, start=1):
            edges.append((a.task.name, b.task.name, engine.image_distance(a, b), engine.label_similarity(a, b)))
            if progress:
                progress("affinity", done, len(pairs))
    return edges


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
) -> nx.Graph:
    """Build the source graph (and target edges) and store it in ``out``.

    Args:
        tasks: every task, sources and targets.
        out: the graph folder.
        config: graph parameters.
        targets: names of target tasks; every other task is a source.
        cache: preprocessed-case cache (default: the user cache at ``config.size``).
        progress: ``(stage, done, total)`` callback.

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
    store = GraphStore(out)
    cache = cache or PreprocessCache(config=PreprocessConfig(size=config.size))
    engine = AffinityEngine(store, config, cache)
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
    set_weights(graph, config, h_scale)
    store.save(graph, config, h_scale=h_scale, pca=engine.pca)
    return graph


def add_targets(
    out: str | Path,
    tasks: Sequence[Task],
    targets: Sequence[str],
    cache: PreprocessCache | None = None,
    progress: Progress | None = None,
) -> nx.Graph:
    """Add target tasks to a stored graph: only their edges to the sources are computed.

    The stored PCA, H scale and parameters are reused, so the weights are those a build
    with these targets would give.

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
    cache = cache or PreprocessCache(config=PreprocessConfig(size=config.size))
    engine = AffinityEngine(store, config, cache, pca=pca)
    sources = _load_all(engine, [by_name[n] for n in source_names], "source", progress)
    target_vols = _load_all(engine, [by_name[n] for n in targets], "target", progress)
    for tv in target_vols:
        if tv.task.name in graph:
            graph.remove_node(tv.task.name)
        graph.add_node(tv.task.name, **_node_attributes(tv.task, "target", tv))
    # only the targets' edges: the source-source edges are in the graph already (METHOD section 3)
    for a, b, h, r in _compute_edges(engine, _pairs_to_compute(sources, target_vols, with_source_pairs=False), progress):
        graph.add_edge(a, b, H=h, R=r)
    set_weights(graph, config, h_scale)
    store.save(graph, config, h_scale=h_scale, pca=pca)
    return graph


def candidate_sources(graph: nx.Graph, target: str) -> set[str]:
    """The sources a target may use: source nodes of other sites (METHOD section 7)."""
    site = graph.nodes[target]["site"]
    return {n for n, d in graph.nodes(data=True) if d.get("role") == "source" and d.get("site") != site}
