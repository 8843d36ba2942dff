"""nnU-Net's network planning: presets, the stride of every resolution level, filters per level.

Pure functions of the patch size and the voxel spacing (no torch), so a network's
configuration can be built, validated and hashed without loading the deep-learning stack.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from seqtransfer.core.errors import ConfigError

PRESETS: dict[str, dict[str, Any]] = {
    "nnunet": {"patch_size": (128, 128, 128), "base_filters": 32, "max_filters": 320},
    "cpu": {"patch_size": (32, 32, 32), "base_filters": 16, "max_filters": 128},
}
ARCHITECTURES = ("dynunet", "unet")

Stride = tuple[int, int, int]


def plan_strides(
    patch_size: Sequence[int],
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    min_feature_size: int = 4,
    max_levels: int = 6,
) -> list[Stride]:
    """Plan the stride of every resolution level as nnU-Net plans its pooling.

    This is the rule of nnU-Net v2's ``get_pool_and_conv_props`` (with
    ``min_feature_map_size = 4``), with the total number of levels capped:

    1. Level 0 has stride 1 on every axis (full resolution).
    2. Another level is added while fewer than ``max_levels`` exist. An axis is halved in it
       when (a) its current feature-map edge is at least ``2 * min_feature_size`` (so it
       stays >= ``min_feature_size`` after halving) and (b) its current spacing is less
       than twice the smallest current spacing among the axes that pass (a) (nnU-Net's strict
       ``< 2``). Halving doubles the axis' spacing and takes ``ceil(edge / 2)``.
    3. When a single axis passes, it is halved only if its edge is at least
       ``3 * min_feature_size`` (nnU-Net's guard against one-axis levels on small maps).
    4. Planning stops when no axis can be halved.

    So an anisotropic volume (spacing (3, 1, 1)) keeps stride 1 on its coarse axis until the
    halving of the fine axes has brought their spacing within a factor of 2 of it.

    Args:
        patch_size: edge of the network input per axis (voxels).
        spacing: voxel spacing per axis (mm).
        min_feature_size: smallest feature-map edge allowed at the bottleneck.
        max_levels: most resolution levels, the full-resolution level included.

    Returns:
        One stride per level (3 ints each, 1 or 2); the first is ``(1, 1, 1)``.

    Raises:
        ConfigError: a patch edge or spacing is not positive, the lengths differ from 3, or
            ``min_feature_size`` / ``max_levels`` is below 1.
    """
    size = [int(s) for s in patch_size]
    space = [float(s) for s in spacing]
    if len(size) != 3 or len(space) != 3:
        raise ConfigError(f"patch_size and spacing need 3 values each, got {tuple(patch_size)} and {tuple(spacing)}")
    if any(s < 1 for s in size):
        raise ConfigError(f"patch_size must be positive, got {tuple(patch_size)}")
    if any(not math.isfinite(s) or s <= 0 for s in space):
        raise ConfigError(f"spacing must be positive and finite, got {tuple(spacing)}")
    if min_feature_size < 1 or max_levels < 1:
        raise ConfigError(f"min_feature_size and max_levels must be >= 1, got {min_feature_size}, {max_levels}")
    strides: list[Stride] = [(1, 1, 1)]
    while len(strides) < max_levels:
        large = [a for a in range(3) if size[a] >= 2 * min_feature_size]
        if not large:
            break
        finest = min(space[a] for a in large)
        axes = [a for a in large if space[a] / finest < 2]
        if len(axes) == 1 and size[axes[0]] < 3 * min_feature_size:
            break
        stride = [1, 1, 1]
        for a in axes:
            stride[a] = 2
            space[a] *= 2
            size[a] = math.ceil(size[a] / 2)
        strides.append((stride[0], stride[1], stride[2]))
    return strides


def total_stride(strides: Sequence[Sequence[int]]) -> tuple[int, int, int]:
    """Product of the strides per axis: the patch edge must be divisible by it."""
    out = [1, 1, 1]
    for s in strides:
        for a in range(3):
            out[a] *= int(s[a])
    return (out[0], out[1], out[2])


def nnunet_filters(levels: int, base: int = 32, cap: int = 320) -> tuple[int, ...]:
    """Filters per level as nnU-Net sets them: ``min(base * 2**i, cap)``."""
    return tuple(min(base * 2**i, cap) for i in range(levels))
