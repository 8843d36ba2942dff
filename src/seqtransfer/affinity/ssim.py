"""Standard 3-D SSIM (Wang et al. 2004), vectorised in torch, split into per-volume and
per-pair parts (the quantity averaged by the label similarity, paper eq. 3-4).

Definition (METHOD.md section 2), identical to ``skimage.metrics.structural_similarity(x, y,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)`` on 3-D
arrays: with ``G`` the Gaussian window (sigma 1.5, truncated at 3.5 sigma: 11 taps, weights
summing to 1),

    mu_x = G * x,   var_x = G * x^2 - mu_x^2,   cov_xy = G * (x y) - mu_x mu_y,
    S = (2 mu_x mu_y + C1) (2 cov_xy + C2) / ((mu_x^2 + mu_y^2 + C1) (var_x + var_y + C2)),

``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, ``L = 1``; the score is the mean of S over the valid
region, i.e. without a 5-voxel strip at every border (skimage crops it "to avoid edge
effects"). Every valid voxel's window lies inside the volume, so skimage's boundary mode
('reflect') never reaches the score; the filters here are therefore 'valid' convolutions,
done as three banded matrix products (one per axis), which BLAS runs fast.

Only ``G * (x y)`` depends on both volumes: :func:`ssim_volume_stats` computes the rest once
per volume (cache it), and :func:`ssim_pairs` scores index pairs from such stats. It also
skips the work where a pair's SSIM needs no product: where a window holds only zeros of x,
``mu_x = var_x = G * (x y) = 0`` exactly, and S reduces to y's own *background term*
``b_y = C1 C2 / ((mu_y^2 + C1)(var_y + C2))`` (and b = 1 where the window of y is empty too).
So ``S = b_x b_y`` outside the box where both windows touch their volume's nonzero voxels,
and ``mean S = (sum_all b_x b_y - sum_box b_x b_y + sum_box S) / n_valid``: the filtered
product is computed in that box only. Label volumes are mostly zero (tumour sub-regions,
lesions), so the box is often a small part of the volume, or empty. Since b = 1 exactly
outside a volume's own box, a volume's stats can be cropped to that box
(:class:`BoxStats`): pairs need nothing else.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)  # 5, scipy.ndimage's rule
SSIM_WINDOW = 2 * SSIM_RADIUS + 1  # 11
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_DATA_RANGE = 1.0
_C1 = (SSIM_K1 * SSIM_DATA_RANGE) ** 2
_C2 = (SSIM_K2 * SSIM_DATA_RANGE) ** 2
_DTYPE = torch.float64


def gaussian_window() -> np.ndarray:
    """The 1-D Gaussian window (11 taps, sum 1), as ``scipy.ndimage.gaussian_filter`` builds it."""
    x = np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (x / SSIM_SIGMA) ** 2)
    return weights / weights.sum()


@functools.lru_cache(maxsize=512)
def _band(n: int) -> torch.Tensor:
    """(n - 10, n) matrix whose row o holds the window at columns o .. o + 10."""
    rows = torch.arange(n - 2 * SSIM_RADIUS)[:, None]
    band = torch.zeros(n - 2 * SSIM_RADIUS, n, dtype=_DTYPE)
    band[rows, rows + torch.arange(SSIM_WINDOW)] = torch.from_numpy(gaussian_window())
    return band


def _check_spatial(shape: Sequence[int]) -> None:
    if len(shape) < 3:
        raise ValueError(f"expected (..., X, Y, Z) volumes, got shape {tuple(shape)}")
    if min(shape[-3:]) < SSIM_WINDOW:
        raise ValueError(
            f"win_size exceeds image extent: SSIM's Gaussian window is {SSIM_WINDOW} voxels "
            f"wide, but the volume is {tuple(shape[-3:])}; resample to at least "
            f"{SSIM_WINDOW} voxels per axis"
        )


def gaussian_filter_valid(x: torch.Tensor) -> torch.Tensor:
    """Gaussian-window filter over the last three axes, valid region only.

    Equals ``scipy.ndimage.gaussian_filter(x, 1.5, truncate=3.5)[5:-5, 5:-5, 5:-5]`` for
    any boundary mode.

    Args:
        x: float64 tensor (..., X, Y, Z), each of X, Y, Z >= 11.

    Returns:
        float64 tensor (..., X - 10, Y - 10, Z - 10).

    Raises:
        ValueError: if a spatial axis is shorter than the window.
    """
    _check_spatial(x.shape)
    nx, ny, nz = x.shape[-3:]
    lead = x.shape[:-3]
    out = x.to(_DTYPE) @ _band(nz).T  # (..., X, Y, Z')
    out = _band(ny) @ out  # (..., X, Y', Z')
    out = out.reshape(*lead, nx, -1)
    out = _band(nx) @ out  # (..., X', Y' Z')
    return out.reshape(*lead, nx - 2 * SSIM_RADIUS, ny - 2 * SSIM_RADIUS, nz - 2 * SSIM_RADIUS)


@dataclass(frozen=True, eq=False)
class SSIMStats:
    """Per-volume SSIM quantities, reusable in every pair the volume enters.

    Valid-region coordinates: index o along an axis is the window centred on voxel o + 5.

    Attributes:
        image: tensor (X, Y, Z), the volume itself (needed for G * (x y)); kept as bool or
            uint8 when given so (8x less memory for cached label stats), else float64.
        mean: float64 tensor (X - 10, Y - 10, Z - 10), ``mu = G * x``.
        variance: same shape, ``G * x^2 - mu^2`` (population, as Wang et al.).
        background: same shape, ``C1 C2 / ((mu^2 + C1)(var + C2))``: the SSIM map against
            an all-zero window (1 where x's own window is all zero).
        window_box: per axis the inclusive valid-region range ``(lo, hi)`` of the windows
            that contain a nonzero voxel of x; None when x is all zero.
    """

    image: torch.Tensor
    mean: torch.Tensor
    variance: torch.Tensor
    background: torch.Tensor
    window_box: tuple[tuple[int, int], ...] | None

    @property
    def shape(self) -> tuple[int, int, int]:
        """Spatial shape (X, Y, Z) of the volume."""
        return (int(self.image.shape[0]), int(self.image.shape[1]), int(self.image.shape[2]))


def _from_array(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    array = np.asarray(x)
    # torch.from_numpy warns on read-only arrays (memory-mapped caches); copy those.
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def _as_tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return _from_array(x).to(_DTYPE)


def _as_stored(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    tensor = _from_array(x)
    return tensor if tensor.dtype in (torch.bool, torch.uint8) else tensor.to(_DTYPE)


def _mean_and_variance(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    filtered = gaussian_filter_valid(torch.stack([image, image * image]))
    mean, mean_sq = filtered[0], filtered[1]
    return mean, mean_sq - mean * mean


def _window_box(image: torch.Tensor) -> tuple[tuple[int, int], ...] | None:
    nonzero = image != 0
    box = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        hits = torch.nonzero(nonzero.any(dim=others)).ravel()
        if hits.numel() == 0:
            return None
        # Valid index o sees voxels o .. o + 2r: it touches [lo, hi] iff lo - 2r <= o <= hi.
        last = image.shape[axis] - 2 * SSIM_RADIUS - 1
        lo, hi = int(hits[0]) - 2 * SSIM_RADIUS, int(hits[-1])
        box.append((max(lo, 0), min(hi, last)))
    return tuple(box)


def ssim_volume_stats(x: np.ndarray | torch.Tensor) -> SSIMStats:
    """Precompute the per-volume part of SSIM (eq. 3) for one volume.

    Args:
        x: volume (X, Y, Z), any real dtype (bool labels included); each axis >= 11 voxels.

    Returns:
        The :class:`SSIMStats` of ``x`` (float64, CPU).

    Raises:
        ValueError: if ``x`` is not 3-D or an axis is shorter than the 11-voxel window.
    """
    image = _as_stored(x)
    if image.ndim != 3:
        raise ValueError(f"expected one 3-D volume, got shape {tuple(image.shape)}")
    _check_spatial(image.shape)
    mean, variance = _mean_and_variance(image.to(_DTYPE))
    background = _C1 * _C2 / ((mean * mean + _C1) * (variance + _C2))
    return SSIMStats(image, mean, variance, background, _window_box(image))


def _ssim_map(
    mu_x: torch.Tensor,
    var_x: torch.Tensor,
    mu_y: torch.Tensor,
    var_y: torch.Tensor,
    filtered_product: torch.Tensor,
) -> torch.Tensor:
    mu_xy = mu_x * mu_y
    numerator = (2 * mu_xy + _C1) * (2 * (filtered_product - mu_xy) + _C2)
    denominator = (mu_x * mu_x + mu_y * mu_y + _C1) * (var_x + var_y + _C2)
    return numerator / denominator


def ssim_from_stats(a: SSIMStats, b: SSIMStats, filtered_product: torch.Tensor) -> float:
    """SSIM (eq. 3) from two volumes' stats and their filtered product ``G * (x y)``.

    Args:
        a: stats of x.
        b: stats of y (same shape).
        filtered_product: ``gaussian_filter_valid(a.image.double() * b.image.double())``.

    Returns:
        The mean SSIM over the valid region, as :func:`ssim3d`.
    """
    return float(_ssim_map(a.mean, a.variance, b.mean, b.variance, filtered_product).mean())


def ssim3d(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Mean 3-D SSIM of volume pairs, in batch (the SSIM of eq. 3).

    Equals ``skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1.0)`` for each pair (float64 inputs; skimage
    computes float32 inputs in float32).

    Args:
        a: volumes (B, X, Y, Z), or any (..., X, Y, Z) broadcastable with ``b`` (e.g.
            (X, Y, Z) against (B, X, Y, Z): one against many).
        b: volumes, same spatial shape as ``a``.

    Returns:
        float64 tensor of the broadcast leading shape, e.g. (B,); 0-d for two 3-D volumes.

    Raises:
        ValueError: if the spatial shapes differ or an axis is shorter than 11 voxels (as
            skimage, which refuses images smaller than its window).
    """
    ta, tb = _as_tensor(a), _as_tensor(b)
    _check_spatial(ta.shape)
    _check_spatial(tb.shape)
    if ta.shape[-3:] != tb.shape[-3:]:
        raise ValueError(f"spatial shapes differ: {tuple(ta.shape)} and {tuple(tb.shape)}")
    mu_x, var_x = _mean_and_variance(ta)
    mu_y, var_y = _mean_and_variance(tb)
    product = gaussian_filter_valid(ta * tb)
    return _ssim_map(mu_x, var_x, mu_y, var_y, product).mean(dim=(-3, -2, -1))


@dataclass(frozen=True, eq=False)
class BoxStats:
    """The part of a volume's :class:`SSIMStats` a pair needs: everything inside its window box.

    Outside the window box every window of x is all zero, so ``mu = var = 0`` there and the
    background term is exactly 1 (``C1 C2 / (C1 C2)``). With ``A``, ``B`` the two volumes'
    boxes and ``N`` the number of valid voxels,

        sum S = sum b_x + sum b_y - N + sum over A n B of (1 - b_x - b_y + S),

    since ``(b_x - 1)(b_y - 1)`` vanishes outside ``A n B`` and ``S = b_x b_y`` there. So a
    volume is kept as its maps cropped to its box, the sum of its background map and the
    image region the box's windows read: a sparse label (a tumour sub-region, a lesion) takes
    a small fraction of the memory of the full maps, which is what lets the affinity stream
    features at 128^3 and beyond.

    Attributes:
        shape: spatial shape (X, Y, Z) of the volume.
        window_box: as :attr:`SSIMStats.window_box`; None when x is all zero.
        background_sum: sum of the background map over the whole valid region.
        mean, variance, background: float64 maps cropped to ``window_box`` (empty when None).
        image: the volume over the voxels the box's windows read, ``lo .. hi + 10`` per axis
            (same dtype as :attr:`SSIMStats.image`; empty when None).
    """

    shape: tuple[int, int, int]
    window_box: tuple[tuple[int, int], ...] | None
    background_sum: float
    mean: torch.Tensor
    variance: torch.Tensor
    background: torch.Tensor
    image: torch.Tensor

    @property
    def n_valid(self) -> int:
        """Number of valid-region voxels (windows wholly inside the volume)."""
        return int(np.prod([s - 2 * SSIM_RADIUS for s in self.shape]))

    def nbytes(self) -> int:
        """Bytes held by the tensors."""
        return sum(t.numel() * t.element_size() for t in (self.mean, self.variance, self.background, self.image))


def box_stats(stats: SSIMStats) -> BoxStats:
    """Crop full :class:`SSIMStats` to their window box (copies; the full maps can be freed)."""
    empty = torch.zeros((0, 0, 0), dtype=_DTYPE)
    total = float(stats.background.sum())
    if stats.window_box is None:
        return BoxStats(stats.shape, None, total, empty, empty, empty, torch.zeros((0, 0, 0), dtype=stats.image.dtype))
    out = tuple(slice(lo, hi + 1) for lo, hi in stats.window_box)
    inputs = tuple(slice(lo, hi + 1 + 2 * SSIM_RADIUS) for lo, hi in stats.window_box)
    return BoxStats(
        stats.shape,
        stats.window_box,
        total,
        stats.mean[out].clone(),
        stats.variance[out].clone(),
        stats.background[out].clone(),
        stats.image[inputs].clone(),
    )


def ssim_volume_box_stats(x: np.ndarray | torch.Tensor) -> BoxStats:
    """:func:`ssim_volume_stats` cropped to the window box (:func:`box_stats`)."""
    return box_stats(ssim_volume_stats(x))


def _pair_ssim(a: BoxStats, b: BoxStats) -> float:
    n_valid = a.n_valid
    total = a.background_sum + b.background_sum - n_valid
    if a.window_box is None or b.window_box is None:
        return total / n_valid
    box = [(max(p[0], q[0]), min(p[1], q[1])) for p, q in zip(a.window_box, b.window_box, strict=True)]
    if any(lo > hi for lo, hi in box):
        return total / n_valid

    def crop(stats: BoxStats, extra: int) -> tuple[slice, ...]:
        assert stats.window_box is not None
        pairs = zip(box, stats.window_box, strict=True)
        return tuple(slice(lo - own[0], hi + 1 + extra - own[0]) for (lo, hi), own in pairs)

    out_a, out_b = crop(a, 0), crop(b, 0)
    in_a, in_b = crop(a, 2 * SSIM_RADIUS), crop(b, 2 * SSIM_RADIUS)
    product = gaussian_filter_valid(a.image[in_a].to(_DTYPE) * b.image[in_b].to(_DTYPE))
    bg_a, bg_b = a.background[out_a], b.background[out_b]
    ssim_box = _ssim_map(a.mean[out_a], a.variance[out_a], b.mean[out_b], b.variance[out_b], product)
    return (total + float((1.0 - bg_a - bg_b + ssim_box).sum())) / n_valid


def ssim_pairs(
    stats_i: Sequence[SSIMStats | BoxStats] | Mapping[int, SSIMStats | BoxStats],
    stats_j: Sequence[SSIMStats | BoxStats] | Mapping[int, SSIMStats | BoxStats],
    pairs: np.ndarray,
) -> np.ndarray:
    """SSIM (eq. 3) of index pairs from per-volume stats, the product only where needed.

    Equal to :func:`ssim3d` of the same volumes (up to float64 rounding); see the module
    docstring for the reduction to the box where both volumes' windows are nonzero.

    Args:
        stats_i: :func:`ssim_volume_stats` (or their :func:`box_stats`) of task i's
            volumes, by index (a sequence, or a mapping holding at least the indices that
            occur in ``pairs``).
        stats_j: the same for task j, same grid.
        pairs: int array (P, 2) of (k, l) indices (:func:`sample_pairs`).

    Returns:
        float64 array (P,) of SSIM values.

    Raises:
        ValueError: if two paired volumes differ in shape.
    """
    index = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    scores = np.empty(index.shape[0], dtype=np.float64)
    boxed: dict[tuple[int, int], BoxStats] = {}

    def get(side: int, stats: Sequence[SSIMStats | BoxStats] | Mapping[int, SSIMStats | BoxStats], i: int) -> BoxStats:
        value = stats[i]
        if isinstance(value, BoxStats):
            return value
        if (side, i) not in boxed:
            boxed[(side, i)] = box_stats(value)
        return boxed[(side, i)]

    for row, (k, l) in enumerate(index):
        a, b = get(0, stats_i, int(k)), get(1, stats_j, int(l))
        if a.shape != b.shape:
            raise ValueError(f"label grids differ: {a.shape} and {b.shape}")
        scores[row] = _pair_ssim(a, b)
    return scores
