"""Merging per-task probabilities into one label map, against independent per-voxel rules."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from seqtransfer.adapt.merge import merge_labels, region_values
from seqtransfer.core.errors import ConfigError


def _plain_reference(probabilities: list[np.ndarray], values: list[int]) -> np.ndarray:
    out = np.zeros(probabilities[0].shape, np.uint8)
    for index in np.ndindex(out.shape):
        p = [float(q[index]) for q in probabilities]
        best = max(range(len(p)), key=lambda k: (p[k], -k))  # the first of equals, like argmax
        out[index] = values[best] if p[best] > 0.5 else 0
    return out


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 4).flatmap(
        lambda k: st.tuples(st.just(k), arrays(np.float32, (k, 3, 4, 2), elements=st.floats(0, 1, width=32)))
    )
)
def test_plain_labels_take_the_most_probable_class_above_half(case) -> None:
    k, stack = case
    values = [3, 1, 7, 2][:k]
    got = merge_labels(list(stack), [(v,) for v in values])
    np.testing.assert_array_equal(got, _plain_reference(list(stack), values))


def test_two_classes_both_above_half_the_more_probable_wins() -> None:
    a = np.array([[[0.9, 0.6, 0.4, 0.2]]], np.float32)
    b = np.array([[[0.7, 0.8, 0.45, 0.51]]], np.float32)
    np.testing.assert_array_equal(merge_labels([a, b], [(1,), (2,)]), [[[1, 2, 0, 2]]])


def test_brats_regions_paint_largest_first_with_and_without_regions_class_order() -> None:
    declared = {"whole": (1, 2, 3), "core": (2, 3), "enhancing": (3,)}
    # given in another order than declared: enhancing, whole, core
    regions = [(3,), (1, 2, 3), (2, 3)]
    assert region_values(regions, declared) == [(1, 1), (2, 2), (0, 3)]
    assert region_values(regions, declared, [5, 6, 7]) == [(1, 5), (2, 6), (0, 7)]
    enh = np.array([0.9, 0.2, 0.9, 0.1], np.float32)
    whole = np.array([0.9, 0.9, 0.3, 0.6], np.float32)
    core = np.array([0.9, 0.7, 0.1, 0.2], np.float32)
    got = merge_labels([enh, whole, core], regions, declared)
    # voxel 0: all three -> 3; 1: whole and core -> 2; 2: only enhancing -> 3; 3: whole only -> 1
    np.testing.assert_array_equal(got, [3, 2, 3, 1])
    np.testing.assert_array_equal(merge_labels([enh, whole, core], regions, declared, [5, 6, 7]), [7, 6, 7, 5])
    with pytest.raises(ConfigError, match="regions_class_order"):
        merge_labels([enh, whole, core], regions, declared, [1, 2])


def test_bad_merges_are_refused() -> None:
    with pytest.raises(ConfigError):
        merge_labels([], [])
    with pytest.raises(ConfigError, match="shapes"):
        merge_labels([np.zeros(3), np.zeros(4)], [(1,), (2,)])
