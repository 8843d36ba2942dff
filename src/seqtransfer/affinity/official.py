"""The published code's affinity, exactly (METHOD.md section 8), for ``mode="official"``.

These reproduce the authors' scripts (``ICA.py``, ``OCA.py``, ``task_affinity_estimation.py``)
so that results can be compared; the default method is in the sibling modules. The published
choices, kept here on purpose:

- image distance: each volume resized to 128^3 (``skimage.transform.resize``, anti-aliasing),
  reshaped to a (128 * 128) x 128 matrix (rows: voxels of a slice; columns: slices), its
  *own* ``PCA(n_components=0.75)``, the component scores flattened, and the 1-D
  ``scipy.stats.wasserstein_distance`` between two such flattened arrays. Separate PCAs are
  not in one space, which is why this is not the default.
- label similarity: SSIM with one global window over the whole volume, ``C1 = C2 =
  (0.3 * 1)^2``; means and variances from ``np.mean`` / ``np.var`` (population) and the
  covariance from ``np.cov`` (sample, ddof = 1), as the published ``compute_ssim`` does.
- pairs: ``for a in random.sample(side_i, 10): for b in random.sample(side_j, 10)`` -- the 10
  volumes of side j are drawn afresh for each volume of side i (100 pairs).
- affinity: ``0.0044 * W + 2.4756 * (1 - SSIM)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from seqtransfer.affinity.pairs import default_rng

OFFICIAL_ALPHA = 0.0044
OFFICIAL_BETA = 2.4756
OFFICIAL_RESIZE = 128
OFFICIAL_PCA_VARIANCE = 0.75
OFFICIAL_K = 0.3
OFFICIAL_N_PAIRS = 10


def official_volume_scores(volume: np.ndarray, resize_to: int = OFFICIAL_RESIZE) -> np.ndarray:
    """A volume's flattened per-volume PCA scores (the published ``pca_transform``).

    Resize to ``resize_to``^3 with anti-aliasing, reshape to (resize_to^2, resize_to), fit
    ``PCA(n_components=0.75)`` on that matrix and flatten its component scores. Per-volume
    work: cache it when a volume enters many pairs.

    Args:
        volume: a 3-D image.
        resize_to: edge of the resized cube (128 in the published code).

    Returns:
        1-D float64 array of length ``resize_to^2 * k`` (k components for 75 % variance).

    Raises:
        ValueError: if the volume is not 3-D.
    """
    from skimage.transform import resize  # imported where used (start-up of other commands)
    from sklearn.decomposition import PCA

    if volume.ndim != 3:
        raise ValueError(f"expected a 3-D volume, got shape {volume.shape}")
    resized = resize(np.asarray(volume, dtype=np.float64), (resize_to,) * 3, anti_aliasing=True)
    matrix = resized.reshape(resize_to * resize_to, resize_to)
    scores = PCA(n_components=OFFICIAL_PCA_VARIANCE).fit_transform(matrix)
    return np.asarray(scores, dtype=np.float64).ravel()


def official_image_distance_pair(vol_a: np.ndarray, vol_b: np.ndarray, resize_to: int = OFFICIAL_RESIZE) -> float:
    """The published image distance of two volumes: 1-D W1 between flattened PCA scores.

    Args:
        vol_a: a 3-D image.
        vol_b: another 3-D image (any shape; both are resized).
        resize_to: edge of the resized cube.

    Returns:
        ``scipy.stats.wasserstein_distance`` of the two flattened score arrays.
    """
    from scipy.stats import wasserstein_distance

    return float(
        wasserstein_distance(official_volume_scores(vol_a, resize_to), official_volume_scores(vol_b, resize_to))
    )


def official_pairs(
    n_i: int,
    n_j: int,
    n_pairs: int = OFFICIAL_N_PAIRS,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """The published pair sampling: n_pairs of side i, each with n_pairs fresh of side j.

    The published loops are ``for a in random.sample(i, 10): for b in random.sample(j, 10)``:
    side j's sample is redrawn for every a. ``random.sample`` fails on a side with fewer than
    10 volumes; here such a side is used whole instead.

    Args:
        n_i: number of volumes of task i (>= 1).
        n_j: number of volumes of task j (>= 1).
        n_pairs: volumes drawn per side (>= 1).
        rng: generator; None means ``np.random.default_rng(0)``.

    Returns:
        int64 array (min(n_pairs, n_i) * min(n_pairs, n_j), 2) of (k, l) indices.

    Raises:
        ValueError: if a side is empty or ``n_pairs < 1``.
    """
    if n_i < 1 or n_j < 1:
        raise ValueError(f"both tasks need at least one volume, got {n_i} and {n_j}")
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    generator = default_rng(rng)
    rows = []
    for k in generator.choice(n_i, size=min(n_pairs, n_i), replace=False):
        for l in generator.choice(n_j, size=min(n_pairs, n_j), replace=False):
            rows.append((int(k), int(l)))
    return np.asarray(rows, dtype=np.int64)


def _mean_over_pairs(
    side_i: Sequence[np.ndarray],
    side_j: Sequence[np.ndarray],
    per_volume: Callable[[np.ndarray], np.ndarray],
    per_pair: Callable[[np.ndarray, np.ndarray], float],
    n_pairs: int,
    rng: np.random.Generator | None,
) -> float:
    pairs = official_pairs(len(side_i), len(side_j), n_pairs, rng)
    # Each volume's per-volume work is done once, though it enters up to n_pairs pairs.
    cache_i = {int(k): per_volume(side_i[int(k)]) for k in np.unique(pairs[:, 0])}
    cache_j = {int(l): per_volume(side_j[int(l)]) for l in np.unique(pairs[:, 1])}
    return float(np.mean([per_pair(cache_i[int(k)], cache_j[int(l)]) for k, l in pairs]))


def official_image_distance(
    vols_i: Sequence[np.ndarray],
    vols_j: Sequence[np.ndarray],
    n_pairs: int = OFFICIAL_N_PAIRS,
    rng: np.random.Generator | None = None,
    resize_to: int = OFFICIAL_RESIZE,
) -> float:
    """The published task image distance: mean pair distance over the published pairs.

    Args:
        vols_i: task i's images.
        vols_j: task j's images.
        n_pairs: volumes drawn per side (10 in the published code).
        rng: generator; None means ``np.random.default_rng(0)``.
        resize_to: edge of the resized cube.

    Returns:
        Mean of :func:`official_image_distance_pair` over :func:`official_pairs`.
    """
    from scipy.stats import wasserstein_distance

    return _mean_over_pairs(
        vols_i,
        vols_j,
        lambda v: official_volume_scores(v, resize_to),
        lambda a, b: float(wasserstein_distance(a, b)),
        n_pairs,
        rng,
    )


def official_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """The published SSIM: one global window, ``C1 = C2 = (0.3 * 1)^2``.

    ``(2 mu_a mu_b + C1)(2 s_ab + C2) / ((mu_a^2 + mu_b^2 + C1)(v_a + v_b + C2))`` with
    ``mu`` from ``np.mean``, ``v`` from ``np.var`` (population) and ``s_ab`` from ``np.cov``
    of the flattened arrays (sample covariance, ddof = 1), exactly as published.

    Args:
        a: a label volume.
        b: a label volume with as many voxels.

    Returns:
        The global SSIM.

    Raises:
        ValueError: if the volumes have different numbers of voxels.
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.size != y.size:
        raise ValueError(f"label volumes differ in size: {np.shape(a)} and {np.shape(b)}")
    c1 = c2 = (OFFICIAL_K * 1.0) ** 2
    mu_x, mu_y = x.mean(), y.mean()
    covariance = np.cov(x, y)[0, 1]
    numerator = (2 * mu_x * mu_y + c1) * (2 * covariance + c2)
    denominator = (mu_x**2 + mu_y**2 + c1) * (x.var() + y.var() + c2)
    return float(numerator / denominator)


def official_label_similarity(
    labels_i: Sequence[np.ndarray],
    labels_j: Sequence[np.ndarray],
    n_pairs: int = OFFICIAL_N_PAIRS,
    rng: np.random.Generator | None = None,
) -> float:
    """The published task label similarity: mean :func:`official_ssim` over the pairs.

    Args:
        labels_i: task i's label volumes.
        labels_j: task j's label volumes (same number of voxels).
        n_pairs: volumes drawn per side (10 in the published code).
        rng: generator; None means ``np.random.default_rng(0)``.

    Returns:
        Mean global SSIM over :func:`official_pairs`.
    """
    return _mean_over_pairs(labels_i, labels_j, lambda v: np.asarray(v), official_ssim, n_pairs, rng)


def official_affinity(W: float | np.ndarray, S: float | np.ndarray) -> float | np.ndarray:
    """The published affinity ``0.0044 * W + 2.4756 * (1 - S)`` (a distance, as eq. 5 here).

    The published script writes ``alpha * W + beta * S + C`` with ``beta = -2.4756`` and
    ``C = 2.4756``; the same thing.

    Args:
        W: official image distance(s).
        S: official label similarity(ies), broadcastable with ``W``.

    Returns:
        A float for scalars, else a float64 array.
    """
    w = OFFICIAL_ALPHA * np.asarray(W, dtype=np.float64) + OFFICIAL_BETA * (1.0 - np.asarray(S, dtype=np.float64))
    return float(w) if w.ndim == 0 else w
