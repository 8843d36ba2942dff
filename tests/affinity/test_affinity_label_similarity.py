from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from seqtransfer.affinity import (
    label_similarity,
    label_similarity_from_stats,
    sample_pairs,
    ssim3d,
    ssim_volume_stats,
)

Factory = Callable[..., list[np.ndarray]]  # conftest.py's volume makers


def test_mean_over_all_pairs_by_brute_force(make_ball_labels: Factory) -> None:
    rng = np.random.default_rng(0)
    labels_i = make_ball_labels(rng, 3, (16, 18, 17))
    labels_j = make_ball_labels(rng, 4, (16, 18, 17))
    expected = np.mean([float(ssim3d(a, b)) for a in labels_i for b in labels_j])
    assert label_similarity(labels_i, labels_j, max_pairs=None) == pytest.approx(expected)
    assert label_similarity(labels_j, labels_i) == pytest.approx(expected)


def test_subset_is_seeded_and_the_mean_over_the_drawn_pairs(make_ball_labels: Factory) -> None:
    rng = np.random.default_rng(1)
    labels_i = make_ball_labels(rng, 5, (16, 16, 16))
    labels_j = make_ball_labels(rng, 6, (16, 16, 16))
    r = label_similarity(labels_i, labels_j, max_pairs=7, rng=np.random.default_rng(3))
    pairs = sample_pairs(5, 6, max_pairs=7, rng=np.random.default_rng(3))
    expected = np.mean([float(ssim3d(labels_i[k], labels_j[l])) for k, l in pairs])
    assert r == pytest.approx(expected)
    stats_i = [ssim_volume_stats(x) for x in labels_i]
    stats_j = [ssim_volume_stats(x) for x in labels_j]
    cached = label_similarity_from_stats(stats_i, stats_j, max_pairs=7, rng=np.random.default_rng(3))
    assert cached == pytest.approx(r, abs=1e-14)


def test_identical_tasks_give_one(make_ball_labels: Factory) -> None:
    labels = make_ball_labels(np.random.default_rng(2), 3, (16, 16, 16))
    assert label_similarity(labels, labels, max_pairs=None) != pytest.approx(1.0)
    same = [labels[0]] * 2
    assert label_similarity(same, same) == pytest.approx(1.0, abs=1e-12)


def test_grid_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="differ"):
        label_similarity([np.zeros((16, 16, 16))], [np.zeros((16, 16, 18))])
    with pytest.raises(ValueError):
        label_similarity([], [np.zeros((16, 16, 16))])
