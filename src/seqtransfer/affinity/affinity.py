"""Task affinity w(i, j) (paper eq. 5), used as a distance by eq. 6-9 (METHOD.md section 2).

The paper combines image distance H (eq. 2) and label similarity R (eq. 4) into one affinity.
The landmark and path equations (6-9) treat it as a *distance* (small = related), so

    w(i, j) = alpha * H(i, j) / H_scale + beta * (1 - R(i, j)),   alpha, beta >= 0.

H is in the units of the PCA embedding and R in [-1, 1] (SSIM), so H is divided by a robust
scale of H over the source graph (:func:`robust_h_scale`) before the two are weighed; without
calibration data alpha = beta = 0.5.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_ALPHA = 0.5
DEFAULT_BETA = 0.5


def affinity(
    H: float | np.ndarray,
    R: float | np.ndarray,
    alpha: float = DEFAULT_ALPHA,
    beta: float = DEFAULT_BETA,
    h_scale: float = 1.0,
) -> float | np.ndarray:
    """Eq. 5 as a distance: ``alpha * H / h_scale + beta * (1 - R)``.

    Args:
        H: image distance(s) H(i, j) (eq. 2), scalar or array.
        R: label similarity(ies) R(i, j) (eq. 4), broadcastable with ``H``.
        alpha: weight of the image term, finite and >= 0.
        beta: weight of the label term, finite and >= 0.
        h_scale: scale dividing H (:func:`robust_h_scale`), finite and > 0.

    Returns:
        w(i, j): a float when ``H`` and ``R`` are scalars, else a float64 array of their
        broadcast shape.

    Raises:
        ValueError: if alpha or beta is negative or not finite, or h_scale is not a finite
            positive number.
    """
    for name, value in (("alpha", alpha), ("beta", beta)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    if not math.isfinite(h_scale) or h_scale <= 0:
        raise ValueError(f"h_scale must be a finite number > 0, got {h_scale}")
    w = alpha * np.asarray(H, dtype=np.float64) / h_scale + beta * (1.0 - np.asarray(R, dtype=np.float64))
    return float(w) if w.ndim == 0 else w


def robust_h_scale(h_values: np.ndarray) -> float:
    """H_scale of eq. 5: the median of the positive finite H values over the graph's edges.

    The median, not the mean or the maximum, so that a few far-off tasks (another organ,
    another scanner) do not shrink every other edge's image term; positive values only, since
    H = 0 occurs only on a task against itself or a duplicate. Falls back to 1.0 (H used
    unscaled) when there are no such values.

    Args:
        h_values: H(i, j) over the source graph's edges, any shape.

    Returns:
        The scale, > 0.
    """
    values = np.asarray(h_values, dtype=np.float64).ravel()
    values = values[np.isfinite(values) & (values > 0)]
    return float(np.median(values)) if values.size else 1.0
