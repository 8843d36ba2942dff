"""One label map from the binary predictions of several tasks of one dataset.

Each adapted task predicts the probability of its own foreground. They are merged into the
dataset's label values the way nnU-Net turns its outputs into a segmentation:

* plain labels (one value per label): each voxel gets the most probable class whose
  probability is above 0.5, else background;
* region labels (a label is a list of values, e.g. BraTS' whole tumour ``[1, 2, 3]``, tumour
  core ``[2, 3]``, enhancing ``[3]``): regions are painted from the largest to the smallest
  (declaration order among equals), each voxel whose probability of the region is above 0.5
  taking the region's value; the value is the dataset's ``regions_class_order`` entry for the
  region when it declares one, else the region's smallest value that no later (smaller)
  region contains.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from seqtransfer.core.errors import ConfigError


def region_values(
    regions: Sequence[tuple[int, ...]],
    declared: Mapping[str, tuple[int, ...]] | None = None,
    regions_class_order: Sequence[int] | None = None,
) -> list[tuple[int, int]]:
    """The painting order and value of each region: ``[(index into regions, value), ...]``.

    Args:
        regions: the label values of each predicted region.
        declared: the dataset's labels in declaration order (background excluded), which
            ``regions_class_order`` follows.
        regions_class_order: nnU-Net's ``regions_class_order`` of the dataset, if any.

    Raises:
        ConfigError: ``regions_class_order`` does not fit the declared labels.
    """
    order = sorted(range(len(regions)), key=lambda i: -len(regions[i]))  # stable: declaration order among equals
    declared_list = list(declared.values()) if declared is not None else []
    if regions_class_order is not None and len(regions_class_order) != len(declared_list):
        raise ConfigError(f"regions_class_order has {len(regions_class_order)} entries for {len(declared_list)} labels")
    painted: list[tuple[int, int]] = []
    for position, index in enumerate(order):
        values = regions[index]
        if regions_class_order is not None and values in declared_list:
            value = int(regions_class_order[declared_list.index(values)])
        else:
            later = {v for i in order[position + 1 :] for v in regions[i]}
            own = sorted(set(values) - later)
            value = own[0] if own else max(values)
        painted.append((index, value))
    return painted


def merge_labels(
    probabilities: Sequence[np.ndarray],
    values: Sequence[tuple[int, ...]],
    declared: Mapping[str, tuple[int, ...]] | None = None,
    regions_class_order: Sequence[int] | None = None,
) -> np.ndarray:
    """Merge per-task foreground probabilities into one label map (module docstring).

    Args:
        probabilities: one foreground probability map per task, all of one shape.
        values: each task's label values (one value: a plain label; several: a region).
        declared: the dataset's labels (for ``regions_class_order``).
        regions_class_order: nnU-Net's ``regions_class_order``, for region labels.

    Returns:
        uint8 label map (int16 when a value exceeds 255).

    Raises:
        ConfigError: no task, or maps of different shapes.
    """
    if not probabilities or len(probabilities) != len(values):
        raise ConfigError("merge_labels needs one probability map per task")
    shape = probabilities[0].shape
    if any(p.shape != shape for p in probabilities):
        raise ConfigError("probability maps of different shapes cannot be merged")
    top = max(max(v) for v in values)
    dtype = np.uint8 if top <= 255 else np.int16
    if all(len(v) == 1 for v in values):
        stack = np.stack([np.asarray(p, dtype=np.float32) for p in probabilities])
        best = np.argmax(stack, axis=0)
        best_p = np.take_along_axis(stack, best[None], axis=0)[0]
        lut = np.array([v[0] for v in values], dtype=dtype)
        return np.where(best_p > 0.5, lut[best], 0).astype(dtype)
    out = np.zeros(shape, dtype=dtype)
    for index, value in region_values(values, declared, regions_class_order):
        out[np.asarray(probabilities[index]) > 0.5] = value
    return out
