"""Label similarity R(i, j) between two tasks (paper eq. 3-4, METHOD.md section 2).

Eq. 3: two label maps on the common grid are compared by standard 3-D SSIM
(:func:`seqtransfer.affinity.ssim.ssim3d`). Eq. 4: R(i, j) is the mean SSIM over sample pairs
(k from task i, l from task j), all of them or a seeded random subset (same rule as the image
distance, :func:`seqtransfer.affinity.pairs.sample_pairs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from seqtransfer.affinity.pairs import sample_pairs
from seqtransfer.core.lazy import lazy_getattr

if TYPE_CHECKING:
    from seqtransfer.affinity.ssim import SSIMStats, ssim3d

__all__ = ["label_similarity", "label_similarity_from_stats", "ssim3d"]


# ``ssim3d``, re-exported from seqtransfer.affinity.ssim (torch) on first use
__getattr__ = lazy_getattr(__name__, {"ssim3d": "seqtransfer.affinity.ssim"})


def label_similarity_from_stats(
    stats_i: Sequence[SSIMStats],
    stats_j: Sequence[SSIMStats],
    max_pairs: int | None = 100,
    rng: np.random.Generator | None = None,
) -> float:
    """R(i, j) of eq. 4 from cached per-volume SSIM stats (one per label volume).

    Same value as :func:`label_similarity` on the volumes the stats came from, for the same
    rng; use it when each label volume's :func:`ssim_volume_stats` is computed once and
    cached (a volume enters the R of every task pair its task is in).

    Args:
        stats_i: :func:`ssim_volume_stats` of each of task i's label volumes.
        stats_j: the same for task j (same grid).
        max_pairs: largest number of volume pairs, or None for all.
        rng: generator for the subset; None means ``np.random.default_rng(0)``.

    Returns:
        R(i, j), the mean SSIM.

    Raises:
        ValueError: if a task has no volumes or the grids differ.
    """
    from seqtransfer.affinity.ssim import ssim_pairs  # torch, imported where used

    pairs = sample_pairs(len(stats_i), len(stats_j), max_pairs, rng)
    return float(ssim_pairs(stats_i, stats_j, pairs).mean())


def label_similarity(
    labels_i: Sequence[np.ndarray],
    labels_j: Sequence[np.ndarray],
    max_pairs: int | None = 100,
    rng: np.random.Generator | None = None,
) -> float:
    """Label similarity R(i, j) of eq. 4: the mean 3-D SSIM (eq. 3) over sample pairs.

    ``R(i, j) = mean over (k, l) of SSIM(labels_i[k], labels_j[l])``, over all pairs when
    ``len(labels_i) * len(labels_j) <= max_pairs`` (or ``max_pairs`` is None), otherwise over
    ``max_pairs`` distinct pairs drawn by ``rng``. The per-volume part of SSIM is computed
    once for each volume that enters a drawn pair; each pair then only filters the product
    of the two labels where both are nonzero nearby (:func:`ssim_pairs`).

    Args:
        labels_i: task i's binary label volumes (X, Y, Z) on the common grid (bool/uint8).
        labels_j: task j's, same grid.
        max_pairs: largest number of volume pairs, or None for all.
        rng: generator for the subset; None means ``np.random.default_rng(0)``.

    Returns:
        R(i, j), the mean SSIM.

    Raises:
        ValueError: if a task has no volumes, the grids differ, or an axis is shorter than
            SSIM's 11-voxel window.
    """
    from seqtransfer.affinity.ssim import ssim_pairs, ssim_volume_stats  # torch, imported where used

    pairs = sample_pairs(len(labels_i), len(labels_j), max_pairs, rng)
    stats_i = {int(k): ssim_volume_stats(labels_i[int(k)]) for k in np.unique(pairs[:, 0])}
    stats_j = {int(l): ssim_volume_stats(labels_j[int(l)]) for l in np.unique(pairs[:, 1])}
    return float(ssim_pairs(stats_i, stats_j, pairs).mean())
