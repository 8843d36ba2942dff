"""One PCA space shared by every volume of every task (METHOD.md section 2, eq. 1).

Eq. 1 compares two volumes as distributions after PCA. A separate PCA per volume (the
published code) puts the volumes in different coordinate systems, so one PCA is fitted on
slice vectors pooled from all tasks: every volume then becomes the uniform empirical
distribution of its slices' d-dimensional embeddings, all in the same space.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from seqtransfer.affinity.pairs import default_rng


def volume_slices(volume: np.ndarray) -> np.ndarray:
    """The slices of a volume along its last axis, each flattened.

    Args:
        volume: array of shape (X, Y, Z).

    Returns:
        Array of shape (Z, X * Y): row k is ``volume[:, :, k].ravel()``.

    Raises:
        ValueError: if the volume is not 3-D.
    """
    if volume.ndim != 3:
        raise ValueError(f"expected a 3-D volume, got shape {volume.shape}")
    return np.moveaxis(volume, -1, 0).reshape(volume.shape[-1], -1)


@dataclass(frozen=True, eq=False)
class SlicePCA:
    """A fitted slice PCA: ``embedding = (slice - mean) @ components.T``.

    Attributes:
        slice_shape: (X, Y) of the slices it was fitted on.
        mean: float64 array (X * Y,), the mean slice vector.
        components: float64 array (d, X * Y), orthonormal rows (principal axes).
        explained_variance_ratio: float64 array (d,), for reporting.
    """

    slice_shape: tuple[int, int]
    mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray

    @property
    def n_components(self) -> int:
        """Dimension d of the embedding space."""
        return int(self.components.shape[0])

    def fingerprint(self) -> str:
        """sha256 hex digest of the shape and arrays, for cache keys of embeddings (computed
        once per object: the arrays are read-only)."""
        cached = self.__dict__.get("_fingerprint")
        if cached is not None:
            return cached
        digest = hashlib.sha256()
        digest.update(repr(self.slice_shape).encode())
        for array in (self.mean, self.components, self.explained_variance_ratio):
            contiguous = np.ascontiguousarray(array, dtype=np.float64)
            digest.update(repr(contiguous.shape).encode())
            digest.update(contiguous.tobytes())
        value = digest.hexdigest()
        self.__dict__["_fingerprint"] = value  # a frozen dataclass: bypass its __setattr__
        return value


class Volume(Protocol):
    """What :func:`fit_slice_pca` reads of a volume: an array, or one loaded on indexing."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def ndim(self) -> int: ...

    def __getitem__(self, index: Any, /) -> Any: ...


def fit_slice_pca(
    volumes: Sequence[Volume],
    n_components: int = 16,
    max_slices: int | None = 4096,
    rng: np.random.Generator | None = None,
) -> SlicePCA:
    """Fit the shared slice PCA of eq. 1 on slices pooled from all tasks' volumes.

    Slices are taken along the last axis and flattened to X * Y vectors. When the pool holds
    more than ``max_slices`` slices, a random subset of ``max_slices`` distinct slices (drawn
    by ``rng``) is used. ``n_components`` is capped by the number of slices used and by
    X * Y. The solver is scikit-learn's "auto" choice, seeded from ``rng`` (its randomized
    solver is used on large pools), so the fit is deterministic for a given generator.

    Args:
        volumes: preprocessed volumes, shapes (X, Y, Z_v) with one common (X, Y); any
            sequence of objects with ``shape``, ``ndim`` and numpy indexing (e.g. volumes
            loaded on access, so that only one is in memory at a time).
        n_components: requested embedding dimension d (>= 1).
        max_slices: largest number of slices fitted on (>= 2), or None for all.
        rng: random generator for the subset and the solver; None means
            ``np.random.default_rng(0)``.

    Returns:
        The fitted :class:`SlicePCA`.

    Raises:
        ValueError: on no volumes, a non-3-D volume, differing slice shapes, fewer than two
            slices in all, ``n_components < 1`` or ``max_slices < 2``.
    """
    if n_components < 1:
        raise ValueError(f"n_components must be >= 1, got {n_components}")
    if max_slices is not None and max_slices < 2:
        raise ValueError(f"max_slices must be >= 2 or None, got {max_slices}")
    if len(volumes) == 0:
        raise ValueError("fit_slice_pca needs at least one volume")
    shapes = {tuple(v.shape[:-1]) for v in volumes}
    if any(v.ndim != 3 for v in volumes) or len(shapes) != 1:
        raise ValueError(
            "all volumes must be 3-D with the same first two axes (X, Y); got shapes "
            f"{sorted({tuple(v.shape) for v in volumes})}"
        )
    slice_shape = (int(volumes[0].shape[0]), int(volumes[0].shape[1]))
    generator = default_rng(rng)
    n_total = sum(int(v.shape[-1]) for v in volumes)
    if n_total < 2:
        raise ValueError(f"a PCA needs at least two slices, got {n_total}")
    if max_slices is not None and n_total > max_slices:
        chosen = np.sort(generator.choice(n_total, size=max_slices, replace=False))
    else:
        chosen = np.arange(n_total)
    # Gather only the chosen slices, one volume at a time (each volume is indexed once, so a
    # sequence that loads volumes lazily holds one at a time); the pool may not fit in memory.
    offsets = np.cumsum([0] + [int(v.shape[-1]) for v in volumes])
    owner = np.searchsorted(offsets, chosen, side="right") - 1
    samples = np.empty((chosen.size, slice_shape[0] * slice_shape[1]), dtype=np.float64)
    for volume_index in np.unique(owner):
        rows = np.flatnonzero(owner == volume_index)
        local = chosen[rows] - offsets[volume_index]
        block = np.asarray(volumes[int(volume_index)][:, :, local])  # (X, Y, k)
        samples[rows] = np.moveaxis(block, -1, 0).reshape(rows.size, -1)
    from sklearn.decomposition import PCA  # imported where used: reading a stored PCA does not need it

    d = min(n_components, samples.shape[0], samples.shape[1])
    pca = PCA(n_components=d, random_state=int(generator.integers(2**31 - 1)))
    pca.fit(samples)
    arrays = [
        np.asarray(pca.mean_, dtype=np.float64),
        np.asarray(pca.components_, dtype=np.float64),
        np.asarray(pca.explained_variance_ratio_, dtype=np.float64),
    ]
    for array in arrays:
        array.setflags(write=False)
    return SlicePCA(slice_shape, *arrays)


def embed_volume(pca: SlicePCA, volume: np.ndarray) -> np.ndarray:
    """A volume as the uniform empirical distribution of its slice embeddings (eq. 1).

    Args:
        pca: the shared slice PCA.
        volume: array (X, Y, Z) with (X, Y) equal to ``pca.slice_shape``.

    Returns:
        float64 array (Z, d): one row per slice, each of weight 1 / Z.

    Raises:
        ValueError: if the volume is not 3-D or its slices do not match the PCA.
    """
    if volume.ndim != 3 or tuple(volume.shape[:2]) != pca.slice_shape:
        raise ValueError(f"volume of shape {volume.shape} does not match the PCA's slices {pca.slice_shape}")
    slices = volume_slices(volume).astype(np.float64, copy=False)
    return (slices - pca.mean) @ pca.components.T
