from __future__ import annotations

from collections.abc import Callable

import numpy as np
import ot
import pytest
from scipy.optimize import linear_sum_assignment, linprog
from scipy.spatial.distance import cdist
from scipy.stats import wasserstein_distance

from seqtransfer.affinity import (
    embed_volume,
    fit_slice_pca,
    image_distance,
    sample_pairs,
    wasserstein1,
)

Factory = Callable[..., list[np.ndarray]]  # conftest.py's volume makers


def transport_lp(a: np.ndarray, b: np.ndarray) -> float:
    """W1 as the transport linear programme, solved by scipy's HiGHS (independent of POT)."""
    n, m = len(a), len(b)
    cost = cdist(a, b)
    rows = np.kron(np.eye(n), np.ones((1, m)))  # sum_l T_kl = 1/n
    cols = np.kron(np.ones((1, n)), np.eye(m))  # sum_k T_kl = 1/m
    result = linprog(
        cost.ravel(),
        A_eq=np.vstack([rows, cols]),
        b_eq=np.concatenate([np.full(n, 1 / n), np.full(m, 1 / m)]),
        bounds=(0, None),
        method="highs",
    )
    assert result.success
    return float(result.fun)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_w1_equal_sizes_equals_pot_emd_and_the_lp(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(12, 5)), rng.normal(loc=0.5, size=(12, 5))
    cost = cdist(a, b)
    weights = np.full(12, 1 / 12)
    w1 = wasserstein1(a, b)
    assert w1 == pytest.approx(ot.emd2(weights, weights, cost), rel=1e-10)
    assert w1 == pytest.approx(transport_lp(a, b), rel=1e-7)
    rows, cols = linear_sum_assignment(cost)
    assert w1 == pytest.approx(cost[rows, cols].sum() / 12, rel=1e-10)


@pytest.mark.parametrize("seed", [3, 4])
def test_w1_unequal_sizes_equals_the_lp(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(7, 3)), rng.normal(loc=0.4, size=(11, 3))
    assert wasserstein1(a, b) == pytest.approx(transport_lp(a, b), rel=1e-7)


def test_w1_in_1d_equals_scipy_for_unequal_sizes() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=17), rng.exponential(size=23)
    assert wasserstein1(a, b) == pytest.approx(wasserstein_distance(a, b), rel=1e-9)
    assert wasserstein1(a[:, None], b[:, None]) == pytest.approx(wasserstein_distance(a, b))


def test_w1_of_a_shift_is_its_length_and_of_itself_zero() -> None:
    a = np.random.default_rng(4).normal(size=(9, 3))
    shift = np.array([3.0, 0.0, 4.0])
    assert wasserstein1(a, a + shift) == pytest.approx(5.0)
    assert wasserstein1(a, a[::-1]) == 0.0


def test_w1_rejects_mismatched_dimensions() -> None:
    with pytest.raises(ValueError):
        wasserstein1(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError):
        wasserstein1(np.zeros((0, 2)), np.zeros((3, 2)))


def _embeddings(seed: int, n: int, shift: float = 0.0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(loc=shift, size=(int(rng.integers(5, 9)), 4)) for _ in range(n)]


def test_image_distance_is_the_brute_force_mean_over_all_pairs() -> None:
    emb_i, emb_j = _embeddings(0, 3), _embeddings(1, 4, shift=1.0)
    expected = np.mean([wasserstein1(a, b) for a in emb_i for b in emb_j])
    assert image_distance(emb_i, emb_j, max_pairs=None) == pytest.approx(expected)
    assert image_distance(emb_i, emb_j, max_pairs=12) == pytest.approx(expected)


def test_image_distance_is_symmetric_over_all_pairs() -> None:
    emb_i, emb_j = _embeddings(2, 3), _embeddings(3, 5, shift=0.5)
    assert image_distance(emb_i, emb_j) == pytest.approx(image_distance(emb_j, emb_i))


def test_image_distance_subset_is_seeded_and_the_mean_over_the_drawn_pairs() -> None:
    emb_i, emb_j = _embeddings(4, 6), _embeddings(5, 7, shift=0.3)
    h = image_distance(emb_i, emb_j, max_pairs=10, rng=np.random.default_rng(11))
    again = image_distance(emb_i, emb_j, max_pairs=10, rng=np.random.default_rng(11))
    other = image_distance(emb_i, emb_j, max_pairs=10, rng=np.random.default_rng(12))
    pairs = sample_pairs(6, 7, max_pairs=10, rng=np.random.default_rng(11))
    expected = np.mean([wasserstein1(emb_i[k], emb_j[l]) for k, l in pairs])
    assert h == again == pytest.approx(expected)
    assert other != h


def test_task_against_itself_with_identical_volumes_is_zero(make_zscored_volumes: Factory) -> None:
    volume = make_zscored_volumes(np.random.default_rng(6), 1, (16, 16, 16))[0]
    pca = fit_slice_pca([volume, volume * 2], n_components=4)
    emb = [embed_volume(pca, volume)] * 3
    assert image_distance(emb, emb) == 0.0


def test_pca_shares_one_space_and_is_deterministic(make_zscored_volumes: Factory) -> None:
    rng = np.random.default_rng(7)
    task_a = make_zscored_volumes(rng, 3, (16, 16, 20))
    task_b = make_zscored_volumes(rng, 2, (16, 16, 12), shift=1.0)
    pool = task_a + task_b  # 84 slices
    pca = fit_slice_pca(pool, n_components=6, max_slices=50, rng=np.random.default_rng(1))
    same = fit_slice_pca(pool, n_components=6, max_slices=50, rng=np.random.default_rng(1))
    other = fit_slice_pca(pool, n_components=6, max_slices=50, rng=np.random.default_rng(2))
    assert pca.n_components == 6 and pca.components.shape == (6, 256)
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(6), atol=1e-8)
    assert pca.fingerprint() == same.fingerprint() != other.fingerprint()
    np.testing.assert_array_equal(pca.components, same.components)
    embeddings = [embed_volume(pca, v) for v in pool]
    assert {e.shape[1] for e in embeddings} == {6}
    assert [e.shape[0] for e in embeddings] == [20, 20, 20, 12, 12]
    # Slice k of a volume embeds to (slice - mean) @ components.T.
    expected = (task_b[1][:, :, 5].ravel() - pca.mean) @ pca.components.T
    np.testing.assert_allclose(embeddings[4][5], expected, rtol=1e-10, atol=1e-10)
    assert image_distance(embeddings[:3], embeddings[3:]) > image_distance(embeddings[:2], embeddings[2:3])


def test_pca_components_capped_by_the_number_of_slices(make_zscored_volumes: Factory) -> None:
    volumes = make_zscored_volumes(np.random.default_rng(8), 1, (16, 16, 5))
    pca = fit_slice_pca(volumes, n_components=16)
    assert pca.n_components == 5
    assert embed_volume(pca, volumes[0]).shape == (5, 5)


def test_pca_all_slices_without_max(make_zscored_volumes: Factory) -> None:
    volumes = make_zscored_volumes(np.random.default_rng(9), 2, (12, 12, 12))
    a = fit_slice_pca(volumes, n_components=3, max_slices=None, rng=np.random.default_rng(0))
    b = fit_slice_pca(volumes, n_components=3, max_slices=24, rng=np.random.default_rng(5))
    # Same pool (24 slices, no subsampling): same subspace whatever the generator.
    np.testing.assert_allclose(a.mean, b.mean)
    projector_a = a.components.T @ a.components
    projector_b = b.components.T @ b.components
    np.testing.assert_allclose(projector_a, projector_b, atol=1e-6)


def test_pca_rejects_mismatched_slices(make_zscored_volumes: Factory) -> None:
    with pytest.raises(ValueError, match="same first two axes"):
        fit_slice_pca([np.zeros((16, 16, 16)), np.zeros((16, 15, 16))])
    pca = fit_slice_pca(make_zscored_volumes(np.random.default_rng(0), 1, (16, 16, 8)), 2)
    with pytest.raises(ValueError, match="does not match"):
        embed_volume(pca, np.zeros((15, 16, 16)))
