"""Which sample pairs (k from task i, l from task j) enter a task-pair average (eq. 1-4).

Eq. 2 and eq. 4 of the paper average a per-pair quantity over all pairs of samples of two
tasks. With tens of cases per task that is hundreds of volume pairs per task pair, so the
average may be estimated on a seeded random subset of distinct pairs (METHOD.md section 2:
"pairs may be a seeded random subset when tasks are large").
"""

from __future__ import annotations

import numpy as np


def default_rng(rng: np.random.Generator | None) -> np.random.Generator:
    """Return ``rng``, or ``np.random.default_rng(0)`` when it is None.

    A fixed seed (0) as the default keeps every affinity reproducible run to run; pass your
    own generator to draw other subsets. Library code never seeds numpy globally.

    Args:
        rng: a generator, or None.

    Returns:
        The generator to use.
    """
    return np.random.default_rng(0) if rng is None else rng


def sample_pairs(
    n_i: int,
    n_j: int,
    max_pairs: int | None = 100,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Index pairs (k, l) over which eq. 2 and eq. 4 average.

    All ``n_i * n_j`` pairs when ``max_pairs`` is None or ``n_i * n_j <= max_pairs``;
    otherwise ``max_pairs`` distinct pairs drawn uniformly without replacement from the
    ``n_i x n_j`` grid by ``rng``. The rng is not touched when all pairs are used. Rows are
    in row-major order of the grid (sorted by k, then l).

    Args:
        n_i: number of samples of task i (>= 1).
        n_j: number of samples of task j (>= 1).
        max_pairs: largest number of pairs to use (>= 1), or None for all.
        rng: random generator for the subset; None means ``np.random.default_rng(0)``.

    Returns:
        int64 array of shape (P, 2): column 0 indexes task i's samples, column 1 task j's.

    Raises:
        ValueError: if a task has no samples or ``max_pairs < 1``.
    """
    if n_i < 1 or n_j < 1:
        raise ValueError(f"both tasks need at least one sample, got {n_i} and {n_j}")
    if max_pairs is not None and max_pairs < 1:
        raise ValueError(f"max_pairs must be >= 1 or None, got {max_pairs}")
    total = n_i * n_j
    if max_pairs is None or total <= max_pairs:
        flat = np.arange(total, dtype=np.int64)
    else:
        flat = np.sort(default_rng(rng).choice(total, size=max_pairs, replace=False))
        flat = flat.astype(np.int64)
    return np.stack(np.divmod(flat, n_j), axis=1)
