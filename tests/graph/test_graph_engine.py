"""The streaming, sharded affinity engine: same edges as an independent computation, whatever
the executor, the shard budget or the state of the feature cache; memory held is bounded."""

from pathlib import Path

import numpy as np
import pytest
import torch

import seqtransfer.graph.engine as eng
from seqtransfer.affinity import embed_volume, image_distance, sample_pairs, ssim3d
from seqtransfer.affinity.ssim import box_stats, ssim_pairs, ssim_volume_box_stats, ssim_volume_stats
from seqtransfer.core.executor import ProcessExecutor
from seqtransfer.data.preprocess import PreprocessCache, PreprocessConfig
from seqtransfer.graph import GraphConfig, GraphStore, build_graph
from seqtransfer.graph.build import affinity_cases

SHAPE = (16, 16, 16)
CONFIG = GraphConfig(size=16, volumes_per_task=4, max_pairs=6, n_components=4, max_slices=200)


def _edges(graph) -> dict:
    return {frozenset((a, b)): (d["H"], d["R"], d["weight"]) for a, b, d in graph.edges(data=True)}


def test_edges_equal_a_direct_computation_from_the_volumes(tasks, tmp_path: Path) -> None:
    cache = PreprocessCache(tmp_path / "c", PreprocessConfig(16))
    target = "Les-FLAIR-lesion"
    graph = build_graph(tasks, tmp_path / "g", CONFIG, targets=[target], cache=cache)
    _, _, _, pca = GraphStore(tmp_path / "g").load()
    by_name = {t.name: t for t in tasks}

    def volumes(name: str):
        task = by_name[name]
        cases = affinity_cases(task, CONFIG, is_target=name == target)
        images = [np.asarray(cache.load(c).image[task.channel]) for c in cases]
        labels = [np.isin(np.asarray(cache.load(c).label), task.label_values).astype(np.uint8) for c in cases]
        keys = [cache.key(c) for c in cases]
        values = ",".join(str(v) for v in task.label_values)
        return (
            images,
            labels,
            eng.digest(*[f"{k}:c{task.channel}" for k in keys]),
            eng.digest(*[f"{k}:l{values}" for k in keys]),
        )

    checked = 0
    for a, b in [
        ("A-T1-tumour", "B-T1-tumour"),
        ("A-T1-tumour", "B-T1-edema"),
        (target, "A-T1-tumour"),
        ("A-T2-edema", "B-T2-edema"),
    ]:
        (ia, la, isa, lsa), (ib, lb, isb, lsb) = volumes(a), volumes(b)
        (x_img, y_img), (x_set, y_set) = ((ia, ib), (isa, isb)) if isa <= isb else ((ib, ia), (isb, isa))
        h = image_distance(
            [embed_volume(pca, v) for v in x_img],
            [embed_volume(pca, v) for v in y_img],
            CONFIG.max_pairs,
            eng.pair_rng(CONFIG.seed, "H", x_set, y_set),
        )
        (x_lab, y_lab), (x_lset, y_lset) = ((la, lb), (lsa, lsb)) if lsa <= lsb else ((lb, la), (lsb, lsa))
        # dense SSIM (no box reduction) over the same seeded pairs
        drawn = sample_pairs(len(x_lab), len(y_lab), CONFIG.max_pairs, eng.pair_rng(CONFIG.seed, "R", x_lset, y_lset))
        r = float(ssim3d(np.stack([x_lab[k] for k, _ in drawn]), np.stack([y_lab[l] for _, l in drawn])).mean())
        assert graph.edges[a, b]["H"] == pytest.approx(h, rel=1e-12)
        assert graph.edges[a, b]["R"] == pytest.approx(r, abs=1e-12)
        checked += 1
    assert checked == 4


def test_pool_tiny_budget_and_damaged_cache_give_the_same_graph(tasks, tmp_path: Path, monkeypatch) -> None:
    cache = PreprocessCache(tmp_path / "c", PreprocessConfig(16))
    reference = _edges(build_graph(tasks, tmp_path / "seq", CONFIG, targets=["Les-FLAIR-lesion"], cache=cache))
    with ProcessExecutor(2) as pool:
        pooled = _edges(
            build_graph(tasks, tmp_path / "pool", CONFIG, targets=["Les-FLAIR-lesion"], cache=cache, executor=pool)
        )
    assert pooled == reference  # bit for bit

    # budget 0: a shard keeps only the features of the set pair at hand
    held: list[tuple[int, int]] = []
    original = eng._pair_value

    def recording(features, item):
        value = original(features, item)
        held.append((len(features.held), len(set(item.keys_a) | set(item.keys_b))))
        return value

    monkeypatch.setattr(eng, "FEATURE_BUDGET", 0)
    monkeypatch.setattr(eng, "_pair_value", recording)
    assert (
        _edges(build_graph(tasks, tmp_path / "tight", CONFIG, targets=["Les-FLAIR-lesion"], cache=cache)) == reference
    )
    assert held and all(n <= limit for n, limit in held)
    assert any(n < total for n, total in zip([h for h, _ in held], np.cumsum([lim for _, lim in held]), strict=True))

    # damaged and missing cached features are recomputed, to the same values
    features = sorted((tmp_path / "tight" / "features").rglob("*.np[yz]"))
    assert any(p.suffix == ".npz" for p in features) and any(p.suffix == ".npy" for p in features)
    for i, path in enumerate(features):
        if i % 3 == 0:
            path.write_bytes(b"not a numpy file")
        elif i % 3 == 1:
            path.unlink()
    (tmp_path / "tight" / "graph.json").unlink()
    monkeypatch.setattr(eng, "_pair_value", original)
    assert (
        _edges(build_graph(tasks, tmp_path / "tight", CONFIG, targets=["Les-FLAIR-lesion"], cache=cache)) == reference
    )


def test_box_stats_pairs_equal_dense_ssim_and_are_small_for_sparse_labels(make_ball_labels) -> None:
    rng = np.random.default_rng(3)
    labels = make_ball_labels(rng, 5, (30, 28, 26))
    labels.append(np.zeros((30, 28, 26), dtype=np.uint8))
    corner = np.zeros((30, 28, 26), dtype=np.uint8)
    corner[-2:, -2:, -2:] = 1
    labels.append(corner)
    boxed = [ssim_volume_box_stats(x) for x in labels]
    pairs = np.array([(k, l) for k in range(len(labels)) for l in range(len(labels))])
    dense = ssim3d(np.stack([labels[k] for k, _ in pairs]), np.stack([labels[l] for _, l in pairs])).numpy()
    np.testing.assert_allclose(ssim_pairs(boxed, boxed, pairs), dense, atol=1e-12)
    full = ssim_volume_stats(corner)
    full_bytes = sum(t.numel() * t.element_size() for t in (full.mean, full.variance, full.background, full.image))
    assert boxed[-1].nbytes() < full_bytes / 50  # a corner voxel block keeps a tiny box
    assert boxed[-2].window_box is None and boxed[-2].nbytes() == 0
    # outside its window box a volume's background term is exactly 1
    stats = ssim_volume_stats(labels[0])
    if stats.window_box is not None:
        outside = torch.ones_like(stats.background, dtype=torch.bool)
        outside[tuple(slice(lo, hi + 1) for lo, hi in stats.window_box)] = False
        assert torch.all(stats.background[outside] == 1.0)
    assert box_stats(stats).background_sum == pytest.approx(float(stats.background.sum()), rel=1e-15)


def test_box_stats_round_trip_through_the_feature_cache(make_ball_labels, tmp_path: Path) -> None:
    store = GraphStore(tmp_path)
    labels = make_ball_labels(np.random.default_rng(4), 3, (20, 20, 20)) + [np.zeros((20, 20, 20), dtype=np.uint8)]
    for i, label in enumerate(labels):
        stats = ssim_volume_box_stats(label)
        eng.save_box_stats(store, f"k{i}", stats)
        loaded = eng.load_box_stats(store, f"k{i}")
        assert (
            loaded is not None
            and loaded.window_box == stats.window_box
            and loaded.background_sum == stats.background_sum
        )
        for name in ("mean", "variance", "background", "image"):
            assert torch.equal(getattr(loaded, name), getattr(stats, name))
    assert eng.load_box_stats(store, "absent") is None
    store.save_features(
        "bad",
        shape=np.array([1, 2]),
        box=np.zeros(6),
        background_sum=np.zeros(1),
        maps=np.zeros((3, 1, 1, 1)),
        image=np.zeros((1, 1, 1)),
    )
    assert eng.load_box_stats(store, "bad") is None  # malformed: recomputed by the caller


def test_shards_keep_order_and_cover_everything() -> None:
    items = list(range(70))
    cut = eng.shards(items, 32)
    assert [x for chunk in cut for x in chunk] == items and len(cut) <= 32
    assert eng.shards([], 32) == []
    assert eng.shards([1, 2], 32) == [[1], [2]]
