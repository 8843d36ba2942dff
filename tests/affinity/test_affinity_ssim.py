from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi
from skimage.metrics import structural_similarity

from seqtransfer.affinity import (
    gaussian_filter_valid,
    ssim3d,
    ssim_from_stats,
    ssim_pairs,
    ssim_volume_stats,
)

Factory = Callable[..., list[np.ndarray]]  # conftest.py's volume makers


def skimage_ssim(x: np.ndarray, y: np.ndarray) -> float:
    return float(
        structural_similarity(
            np.asarray(x, dtype=np.float64),
            np.asarray(y, dtype=np.float64),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
        )
    )


def test_valid_filter_equals_scipy_gaussian_cropped() -> None:
    x = np.random.default_rng(0).random((2, 16, 13, 19))
    ours = gaussian_filter_valid(torch.from_numpy(x)).numpy()
    for b in range(2):
        full = ndi.gaussian_filter(x[b], 1.5, truncate=3.5, mode="reflect")
        np.testing.assert_allclose(ours[b], full[5:-5, 5:-5, 5:-5], atol=1e-12)


@pytest.mark.parametrize("shape", [(16, 16, 16), (20, 17, 23), (11, 12, 24)])
@pytest.mark.parametrize("kind", ["binary", "float"])
def test_batch_equals_skimage(shape: tuple[int, int, int], kind: str) -> None:
    rng = np.random.default_rng(1)
    if kind == "binary":
        a = (rng.random((4, *shape)) > 0.6).astype(np.uint8)
        b = (rng.random((4, *shape)) > 0.4).astype(np.uint8)
    else:
        a, b = rng.random((4, *shape)), rng.random((4, *shape))
    ours = ssim3d(a, b).numpy()
    assert ours.shape == (4,)
    expected = [skimage_ssim(a[i], b[i]) for i in range(4)]
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def test_identical_inputs_give_one() -> None:
    rng = np.random.default_rng(2)
    a = np.stack([rng.random((18, 18, 18)), (rng.random((18, 18, 18)) > 0.5).astype(float)])
    np.testing.assert_allclose(ssim3d(a, a).numpy(), 1.0, atol=1e-12)


def test_one_against_many_broadcasts() -> None:
    rng = np.random.default_rng(3)
    one = (rng.random((16, 16, 16)) > 0.5).astype(np.float64)
    many = (rng.random((3, 16, 16, 16)) > 0.5).astype(np.float64)
    ours = ssim3d(one, many).numpy()
    np.testing.assert_allclose(ours, [skimage_ssim(one, m) for m in many], atol=1e-6)
    assert ssim3d(one, many[0]).shape == ()


def test_torch_bool_and_read_only_inputs() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.random((16, 16, 16)) > 0.5, rng.random((16, 16, 16)) > 0.5
    b.setflags(write=False)
    expected = skimage_ssim(a, b)
    assert float(ssim3d(torch.from_numpy(a), b)) == pytest.approx(expected, abs=1e-6)
    fast = ssim_pairs([ssim_volume_stats(a)], [ssim_volume_stats(b)], np.array([[0, 0]]))
    assert fast[0] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("shape", [(10, 16, 16), (16, 16, 5)])
def test_smaller_than_window_raises_like_skimage(shape: tuple[int, int, int]) -> None:
    x = np.zeros(shape)
    with pytest.raises(ValueError):
        structural_similarity(x, x, gaussian_weights=True, sigma=1.5, data_range=1.0)
    with pytest.raises(ValueError, match="window"):
        ssim3d(x, x)
    with pytest.raises(ValueError, match="window"):
        ssim_volume_stats(x)


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="differ"):
        ssim3d(np.zeros((16, 16, 16)), np.zeros((16, 16, 17)))


def test_stats_split_equals_ssim3d() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.random((17, 19, 16)), (rng.random((17, 19, 16)) > 0.5).astype(np.float64)
    sx, sy = ssim_volume_stats(x), ssim_volume_stats(y)
    product = gaussian_filter_valid(sx.image.double() * sy.image.double())
    assert ssim_from_stats(sx, sy, product) == pytest.approx(float(ssim3d(x, y)), abs=1e-12)


def test_window_box_of_empty_and_of_a_point() -> None:
    empty = ssim_volume_stats(np.zeros((20, 20, 20)))
    assert empty.window_box is None
    np.testing.assert_allclose(empty.background.numpy(), 1.0)
    point = np.zeros((20, 20, 20))
    point[12, 3, 19] = 1
    # Valid index o (0..9) sees voxels o..o+10.
    assert ssim_volume_stats(point).window_box == ((2, 9), (0, 3), (9, 9))


def test_pairs_fast_path_equals_skimage_on_sparse_labels(make_ball_labels: Factory) -> None:
    rng = np.random.default_rng(6)
    labels = make_ball_labels(rng, 6, (24, 22, 20))
    labels.append(np.zeros((24, 22, 20), dtype=np.uint8))
    labels.append(np.ones((24, 22, 20), dtype=np.uint8))
    corner = np.zeros((24, 22, 20), dtype=np.uint8)
    corner[:3, :3, :3] = 1
    labels.append(corner)
    stats = [ssim_volume_stats(x) for x in labels]
    assert stats[0].image.dtype == torch.uint8  # labels are cached compactly
    pairs = np.array([(k, l) for k in range(len(labels)) for l in range(len(labels))])
    ours = ssim_pairs(stats, stats, pairs)
    expected = [skimage_ssim(labels[k], labels[l]) for k, l in pairs]
    np.testing.assert_allclose(ours, expected, atol=1e-6)
    dense = ssim3d(np.stack([labels[k] for k, _ in pairs]), np.stack([labels[l] for _, l in pairs]))
    np.testing.assert_allclose(ours, dense.numpy(), atol=1e-12)


def test_pairs_shape_mismatch_raises() -> None:
    a = ssim_volume_stats(np.zeros((16, 16, 16)))
    b = ssim_volume_stats(np.zeros((16, 16, 17)))
    with pytest.raises(ValueError, match="differ"):
        ssim_pairs([a], [b], np.array([[0, 0]]))


@settings(max_examples=25, deadline=None)
@given(
    shape=st.tuples(*(st.integers(11, 15) for _ in range(3))),
    seed=st.integers(0, 2**32 - 1),
    density=st.floats(0.0, 1.0),
    binary=st.booleans(),
)
def test_property_equals_skimage(shape: tuple[int, int, int], seed: int, density: float, binary: bool) -> None:
    rng = np.random.default_rng(seed)
    if binary:
        x = (rng.random(shape) < density).astype(np.float64)
        y = (rng.random(shape) < density).astype(np.float64)
    else:
        x, y = rng.random(shape) * density, rng.random(shape)
    expected = skimage_ssim(x, y)
    assert float(ssim3d(x, y)) == pytest.approx(expected, abs=1e-6)
    fast = ssim_pairs([ssim_volume_stats(x)], [ssim_volume_stats(y)], np.array([[0, 0]]))
    assert fast[0] == pytest.approx(expected, abs=1e-6)
