"""The affinity engine: per-volume features, then H and R of set pairs in shards.

Two stages, each a list of independent jobs sent through an executor
(:mod:`seqtransfer.core.executor`: in this process, a process pool, or Ray tasks
asking for one CPU each):

1. **Features.** Every distinct volume gets its features once, written to
   ``GRAPH_DIR/features``: the PCA embedding of an image (eq. 1), the SSIM statistics of a
   label cropped to its window box (:class:`~seqtransfer.affinity.ssim.BoxStats`). Jobs are
   groups of cases; a job opens one case at a time and drops it before the next.
2. **Pairs.** H is computed per pair of image sets and R per pair of label sets (tasks of one
   site and modality share images, tasks of one site and objective share labels). The
   distinct set pairs are sorted and cut into shards; a shard reads the cached features of
   the two sets of its current pair from the graph folder and drops those its next pair does
   not use.

So no process ever holds more than the features of two sets (plus, while fitting the PCA, its
sample of slices): the memory of a build does not grow with the number of tasks or volumes,
only with the size of one set's features. The random subset of volume pairs of a set pair is
seeded by the pair's identity, so neither the sharding nor the executor changes a value.

The official mode (METHOD section 8) has no per-volume features: its shards read the
preprocessed volumes of their pair from the preprocessing cache.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqtransfer.affinity import (
    SlicePCA,
    embed_volume,
    fit_slice_pca,
    image_distance,
    official_image_distance,
    official_label_similarity,
)
from seqtransfer.affinity.pairs import sample_pairs
from seqtransfer.affinity.ssim import BoxStats, ssim_pairs, ssim_volume_box_stats
from seqtransfer.core.threads import single_threaded
from seqtransfer.data.dataset import Case
from seqtransfer.data.preprocess import PreprocessCache, PreprocessConfig
from seqtransfer.graph.config import GraphConfig
from seqtransfer.graph.store import GraphStore

STATS_VERSION = "ssim-box-v2"
SHARDS_PER_STAGE = 32
FEATURE_BUDGET = 1 << 30  # bytes of features a process keeps between set pairs


def digest(*parts: str) -> str:
    """Short content digest of strings (cache keys, set identities)."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:20]


def pair_rng(seed: int, kind: str, a: str, b: str) -> np.random.Generator:
    """The generator of one set pair: depends on the pair, not on when or where it is computed."""
    h = hashlib.sha256(f"{kind}\x1f{a}\x1f{b}".encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(h[:8], "little")])


@dataclass(frozen=True)
class ImageRef:
    """Where an image volume comes from: a case's channel on the preprocessing grid."""

    case: Case
    channel: int


@dataclass(frozen=True)
class LabelRef:
    """Where a label volume comes from: a case's label map, binarised by label values."""

    case: Case
    values: tuple[int, ...]


def embedding_key(image_key: str, pca: SlicePCA) -> str:
    """Feature-cache key of an image's embedding (depends on the PCA)."""
    return digest(image_key, pca.fingerprint())


def stats_key(label_key: str) -> str:
    """Feature-cache key of a label's cropped SSIM statistics."""
    return digest(label_key, STATS_VERSION)


def save_box_stats(store: GraphStore, key: str, stats: BoxStats) -> None:
    """Write cropped SSIM statistics as one ``.npz`` feature."""
    box = [v for pair in stats.window_box for v in pair] if stats.window_box is not None else [-1] * 6
    store.save_features(
        key,
        shape=np.array(stats.shape, dtype=np.int64),
        box=np.array(box, dtype=np.int64),
        background_sum=np.array([stats.background_sum], dtype=np.float64),
        maps=torch.stack([stats.mean, stats.variance, stats.background]).numpy()
        if stats.window_box is not None
        else np.zeros((3, 0, 0, 0)),
        image=stats.image.numpy(),
    )


def label_has_foreground(store: GraphStore, label_key: str) -> bool | None:
    """Whether a label volume whose statistics are cached has any foreground (None: not cached)."""
    data = store.load_features(stats_key(label_key), ("box",))
    if data is None or data["box"].shape != (6,):
        return None
    return bool(data["box"][0] >= 0)


def load_box_stats(store: GraphStore, key: str) -> BoxStats | None:
    """Read cropped SSIM statistics, or None when absent or not well formed."""
    data = store.load_features(key, ("shape", "box", "background_sum", "maps", "image"))
    if data is None:
        return None
    shape, box, total, maps, image = (data[k] for k in ("shape", "box", "background_sum", "maps", "image"))
    if (
        shape.shape != (3,)
        or box.shape != (6,)
        or total.shape != (1,)
        or maps.ndim != 4
        or maps.shape[0] != 3
        or image.ndim != 3
    ):
        return None
    window_box = None if box[0] < 0 else tuple((int(box[i]), int(box[i + 1])) for i in (0, 2, 4))
    if window_box is not None:
        extent = tuple(hi - lo + 1 for lo, hi in window_box)
        if maps.shape[1:] != extent or image.shape != tuple(e + 10 for e in extent):
            return None
    tensors = torch.from_numpy(maps)
    return BoxStats(
        (int(shape[0]), int(shape[1]), int(shape[2])),
        window_box,
        float(total[0]),
        tensors[0],
        tensors[1],
        tensors[2],
        torch.from_numpy(image),
    )


class _LazyImage:
    """An image volume opened on each indexing (for the PCA fit: one volume in memory at a time)."""

    def __init__(self, cache: PreprocessCache, ref: ImageRef, shape: tuple[int, ...]) -> None:
        self.cache, self.ref, self.shape = cache, ref, shape
        self.ndim = len(shape)

    def __getitem__(self, index: Any) -> np.ndarray:
        image = self.cache.load(self.ref.case, keep=False).image[self.ref.channel]
        return np.array(image[index])


def lazy_images(cache: PreprocessCache, refs: Sequence[ImageRef]) -> list[_LazyImage]:
    """Image volumes for :func:`fit_slice_pca` that are read when indexed, never kept."""
    out = []
    for ref in refs:
        shape = tuple(cache.load(ref.case, keep=False).image.shape[1:])
        out.append(_LazyImage(cache, ref, shape))
    return out


# --------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class FeatureJob:
    """Features of a group of cases: per case, the images to embed and the labels to summarise."""

    graph_dir: str
    cache_root: str
    preprocess: PreprocessConfig
    pca: SlicePCA | None
    cases: tuple[tuple[Case, tuple[tuple[str, int], ...], tuple[tuple[str, tuple[int, ...]], ...]], ...]


def _embed(store: GraphStore, pca: SlicePCA, image_key: str, image: np.ndarray) -> np.ndarray:
    """Compute an image's embedding and cache it."""
    value = embed_volume(pca, np.asarray(image))
    store.save_feature(embedding_key(image_key, pca), value)
    return value


def _summarise(store: GraphStore, label_key: str, label: np.ndarray) -> BoxStats:
    """Compute a label's cropped SSIM statistics and cache them."""
    stats = ssim_volume_box_stats(label)
    save_box_stats(store, stats_key(label_key), stats)
    return stats


def feature_job(job: FeatureJob) -> int:
    """Compute and cache the features of a job's cases; returns how many were written."""
    store = GraphStore(job.graph_dir)
    cache = PreprocessCache(job.cache_root, job.preprocess)
    written = 0
    with single_threaded():
        for case, images, labels in job.cases:
            pre = cache.load(case, keep=False)
            for image_key, channel in images:
                if job.pca is not None:
                    _embed(store, job.pca, image_key, pre.image[channel])
                    written += 1
            for label_key, values in labels:
                _summarise(store, label_key, pre.foreground(values))
                written += 1
            del pre
    return written


@dataclass(frozen=True)
class PairItem:
    """One set pair: ``kind`` H (image sets) or R (label sets), the sets' identities and keys."""

    kind: str
    set_a: str
    set_b: str
    keys_a: tuple[str, ...]
    keys_b: tuple[str, ...]


@dataclass(frozen=True)
class PairJob:
    """A shard of set pairs and what is needed to read their features."""

    graph_dir: str
    config: GraphConfig
    pca: SlicePCA | None
    cache_root: str
    preprocess: PreprocessConfig
    refs: dict[str, ImageRef | LabelRef]
    items: tuple[PairItem, ...]
    memory_budget: int = FEATURE_BUDGET


def _feature_bytes(value: Any) -> int:
    return value.nbytes() if isinstance(value, BoxStats) else int(value.nbytes)


class _Features:
    """Features read by the pair jobs of one process: a least-recently-used cache by bytes.

    The features of the pair being computed are always held; others are dropped, oldest
    first, once the total passes ``budget`` bytes. Shards are runs of sorted set pairs, so
    consecutive pairs (and consecutive shards in one process) mostly reuse what is held.
    """

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.context: tuple[str, GraphConfig, str | None] | None = None
        self.held: OrderedDict[str, Any] = OrderedDict()
        self.sizes: dict[str, int] = {}

    def bind(self, job: PairJob) -> None:
        context = (job.graph_dir, job.config, None if job.pca is None else job.pca.fingerprint())
        if context != self.context:
            self.clear()
            self.context = context
        self.job = job
        self.store = GraphStore(job.graph_dir)
        self.cache = PreprocessCache(job.cache_root, job.preprocess)

    def clear(self) -> None:
        self.held.clear()
        self.sizes.clear()
        self.context = None

    def nbytes(self) -> int:
        return sum(self.sizes.values())

    def make_room(self, keep: set[str]) -> None:
        total = self.nbytes()
        for key in list(self.held):
            if total <= self.budget:
                break
            if key not in keep:
                total -= self.sizes.pop(key)
                del self.held[key]

    def get(self, key: str) -> Any:
        if key in self.held:
            self.held.move_to_end(key)
            return self.held[key]
        value = self._read(key)
        self.held[key] = value
        self.sizes[key] = _feature_bytes(value)
        return value

    def _read(self, key: str) -> Any:
        job, ref = self.job, self.job.refs[key]
        if job.config.mode == "official":
            pre = self.cache.load(ref.case, keep=False)
            return np.array(pre.image[ref.channel]) if isinstance(ref, ImageRef) else pre.foreground(ref.values)
        # features not precomputed (or unreadable) are computed here, to the same values
        if isinstance(ref, ImageRef):
            assert job.pca is not None
            value = self.store.load_feature(embedding_key(key, job.pca))
            return (
                value
                if value is not None
                else _embed(self.store, job.pca, key, self.cache.load(ref.case, keep=False).image[ref.channel])
            )
        stats = load_box_stats(self.store, stats_key(key))
        return (
            stats
            if stats is not None
            else _summarise(self.store, key, self.cache.load(ref.case, keep=False).foreground(ref.values))
        )


_FEATURES = _Features(FEATURE_BUDGET)


def release_features() -> None:
    """Drop the features this process holds for pair jobs (call after a stage)."""
    _FEATURES.clear()


def _pair_value(features: _Features, item: PairItem) -> float:
    config = features.job.config
    rng = pair_rng(config.seed, item.kind, item.set_a, item.set_b)
    if config.mode == "official":
        volumes_a = [features.get(k) for k in item.keys_a]
        volumes_b = [features.get(k) for k in item.keys_b]
        if item.kind == "H":
            return official_image_distance(volumes_a, volumes_b, rng=rng, resize_to=config.official_resize)
        return official_label_similarity(volumes_a, volumes_b, rng=rng)
    if item.kind == "H":
        return image_distance(
            [features.get(k) for k in item.keys_a],
            [features.get(k) for k in item.keys_b],
            max_pairs=config.max_pairs,
            rng=rng,
        )
    # R: only the volumes that occur in the drawn pairs are read
    pairs = sample_pairs(len(item.keys_a), len(item.keys_b), config.max_pairs, rng)
    stats_a = {int(k): features.get(item.keys_a[int(k)]) for k in np.unique(pairs[:, 0])}
    stats_b = {int(k): features.get(item.keys_b[int(k)]) for k in np.unique(pairs[:, 1])}
    return float(ssim_pairs(stats_a, stats_b, pairs).mean())


def pair_job(job: PairJob) -> list[float]:
    """H or R of every set pair of a shard, in item order."""
    features = _FEATURES
    features.budget = job.memory_budget
    features.bind(job)
    out = []
    with single_threaded():
        for item in job.items:
            features.make_room(set(item.keys_a) | set(item.keys_b))
            out.append(_pair_value(features, item))
    return out


def shards(items: Sequence[Any], n: int = SHARDS_PER_STAGE) -> list[list[Any]]:
    """Cut items (already in a locality-preserving order) into at most ``n`` contiguous runs."""
    if not items:
        return []
    size = math.ceil(len(items) / n)
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def cache_root(cache: PreprocessCache) -> str:
    """The preprocessing cache's folder, as jobs reopen it."""
    return str(Path(cache.root).resolve())


def fit_pca(cache: PreprocessCache, refs: Sequence[ImageRef], config: GraphConfig) -> SlicePCA:
    """The shared slice PCA of eq. 1 over the given images, read one volume at a time."""
    return fit_slice_pca(
        lazy_images(cache, refs),
        n_components=config.n_components,
        max_slices=config.max_slices,
        rng=np.random.default_rng(config.seed),
    )
