from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy.stats import wasserstein_distance
from skimage.transform import resize
from sklearn.decomposition import PCA

from seqtransfer.affinity import (
    OFFICIAL_ALPHA,
    OFFICIAL_BETA,
    official_affinity,
    official_image_distance,
    official_image_distance_pair,
    official_label_similarity,
    official_pairs,
    official_ssim,
    official_volume_scores,
)

Factory = Callable[..., list[np.ndarray]]  # conftest.py's volume makers


def test_ssim_against_a_hand_computation() -> None:
    rng = np.random.default_rng(0)
    a = (rng.random((8, 9, 10)) > 0.7).astype(np.uint8)
    b = (rng.random((8, 9, 10)) > 0.5).astype(np.uint8)
    x, y = a.astype(float).ravel(), b.astype(float).ravel()
    n = x.size
    mx, my = x.sum() / n, y.sum() / n
    vx, vy = ((x - mx) ** 2).sum() / n, ((y - my) ** 2).sum() / n
    cov = ((x - mx) * (y - my)).sum() / (n - 1)  # np.cov: ddof = 1
    c = 0.09
    expected = (2 * mx * my + c) * (2 * cov + c) / ((mx**2 + my**2 + c) * (vx + vy + c))
    assert official_ssim(a, b) == pytest.approx(expected, rel=1e-12)


def test_ssim_of_identical_labels_is_nearly_one() -> None:
    a = (np.random.default_rng(1).random((10, 10, 10)) > 0.5).astype(np.uint8)
    # Not exactly 1: the covariance is the sample one, the variances the population ones.
    assert official_ssim(a, a) == pytest.approx(1.0, abs=1e-3)
    assert official_ssim(a, a) > 1.0


def test_ssim_size_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        official_ssim(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)))


def test_volume_scores_follow_the_published_recipe(make_zscored_volumes: Factory) -> None:
    volume = make_zscored_volumes(np.random.default_rng(2), 1, (20, 18, 22))[0]
    resized = resize(volume.astype(np.float64), (16, 16, 16), anti_aliasing=True)
    expected = PCA(n_components=0.75).fit_transform(resized.reshape(256, 16)).ravel()
    ours = official_volume_scores(volume, resize_to=16)
    np.testing.assert_allclose(ours, expected)
    assert ours.size % 256 == 0


def test_image_distance_pair_runs_and_is_zero_on_itself(make_zscored_volumes: Factory) -> None:
    rng = np.random.default_rng(3)
    a, b = make_zscored_volumes(rng, 2, (18, 18, 18))
    d = official_image_distance_pair(a, b, resize_to=16)
    assert d > 0
    assert d == pytest.approx(
        wasserstein_distance(official_volume_scores(a, resize_to=16), official_volume_scores(b, resize_to=16))
    )
    assert official_image_distance_pair(a, a, resize_to=16) == 0.0


def test_pairs_redraw_side_j_for_each_volume_of_side_i() -> None:
    pairs = official_pairs(12, 15, n_pairs=10, rng=np.random.default_rng(4))
    assert pairs.shape == (100, 2)
    assert len(set(pairs[:, 0])) == 10
    blocks = pairs[:, 1].reshape(10, 10)
    assert all(len(set(block)) == 10 for block in blocks)
    assert len({tuple(sorted(block)) for block in blocks}) > 1
    np.testing.assert_array_equal(pairs, official_pairs(12, 15, n_pairs=10, rng=np.random.default_rng(4)))
    assert official_pairs(3, 4, n_pairs=10).shape == (12, 2)


def test_task_level_means_over_the_pairs(make_ball_labels: Factory, make_zscored_volumes: Factory) -> None:
    rng = np.random.default_rng(5)
    vols_i = make_zscored_volumes(rng, 3, (16, 16, 16))
    vols_j = make_zscored_volumes(rng, 4, (16, 16, 16), shift=1.0)
    pairs = official_pairs(3, 4, n_pairs=2, rng=np.random.default_rng(6))
    expected = np.mean([official_image_distance_pair(vols_i[k], vols_j[l], resize_to=16) for k, l in pairs])
    got = official_image_distance(vols_i, vols_j, 2, np.random.default_rng(6), resize_to=16)
    assert got == pytest.approx(expected)
    labels_i = make_ball_labels(rng, 3, (12, 12, 12))
    labels_j = make_ball_labels(rng, 4, (12, 12, 12))
    expected = np.mean([official_ssim(labels_i[k], labels_j[l]) for k, l in pairs])
    got = official_label_similarity(labels_i, labels_j, 2, np.random.default_rng(6))
    assert got == pytest.approx(expected)


def test_affinity_constants() -> None:
    assert (OFFICIAL_ALPHA, OFFICIAL_BETA) == (0.0044, 2.4756)
    assert official_affinity(10.0, 0.6) == pytest.approx(0.044 + 2.4756 * 0.4)
    np.testing.assert_allclose(official_affinity(np.array([0.0, 1.0]), np.array([1.0, 0.0])), [0.0, 0.0044 + 2.4756])
