"""Patch sampling (nnU-Net foreground oversampling) and MONAI augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqtransfer.core.errors import ConfigError
from seqtransfer.training.augment import (
    AugmentConfig,
    PatchSampler,
    build_augmentation,
    center_patch,
    crop_patch,
    foreground_flags,
    sample_patch,
)


@pytest.mark.parametrize(
    ("batch", "expected"),
    [(1, [False]), (2, [False, True]), (3, [False, False, True]), (6, [False] * 4 + [True] * 2)],
)
def test_foreground_flags_follow_nnunet(batch, expected) -> None:
    assert foreground_flags(batch) == expected


def _volume(shape=(40, 36, 32), fg_at=(35, 3, 30)):
    image = np.arange(np.prod(shape), dtype=np.float32).reshape((1, *shape))
    label = np.zeros(shape, dtype=np.uint8)
    label[fg_at] = 1
    return image, label


def test_patch_of_the_volume_size_is_the_identity() -> None:
    image, label = _volume((16, 16, 16), (3, 4, 5))
    rng = np.random.default_rng(0)
    for forced in (False, True):
        img, lbl = sample_patch(image, label, (16, 16, 16), forced, rng)
        assert np.array_equal(img, image) and np.array_equal(lbl, label)


def test_forced_patch_contains_the_only_foreground_voxel() -> None:
    image, label = _volume()
    rng = np.random.default_rng(0)
    for _ in range(20):
        img, lbl = sample_patch(image, label, (16, 16, 16), True, rng)
        assert lbl.sum() == 1
        # the patch is a true crop of the volume (no padding needed here)
        x, y, z = np.argwhere(lbl)[0]
        assert img[0, x, y, z] == image[0, 35, 3, 30]


def test_random_patches_stay_inside_and_rarely_hit_a_single_voxel() -> None:
    image, label = _volume()
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(50):
        img, lbl = sample_patch(image, label, (16, 16, 16), False, rng)
        lo = np.unravel_index(int(img[0, 0, 0, 0]), label.shape)  # image = arange: its value is its index
        assert np.array_equal(img, image[:, lo[0] : lo[0] + 16, lo[1] : lo[1] + 16, lo[2] : lo[2] + 16])
        hits += int(lbl.sum())
    assert hits < 25


def test_small_volume_is_padded_with_zeros() -> None:
    image = np.ones((2, 10, 16, 12), dtype=np.float32)
    label = np.ones((10, 16, 12), dtype=np.uint8)
    img, lbl = sample_patch(image, label, (16, 16, 16), False, np.random.default_rng(0))
    assert img.shape == (2, 16, 16, 16) and lbl.shape == (16, 16, 16)
    assert img.sum() == 2 * 10 * 16 * 12 and lbl.sum() == 10 * 16 * 12
    assert np.all(img[:, 3:13, :, 2:14] == 1)  # centred: pad 3 + 3 and 2 + 2


def test_crop_patch_pads_outside() -> None:
    image, label = _volume((4, 4, 4), (0, 0, 0))
    img, lbl = crop_patch(image, label, (-2, 0, 0), (4, 4, 4))
    assert lbl[2, 0, 0] == 1 and np.all(img[:, :2] == 0)


def test_center_patch_is_centred_on_foreground() -> None:
    image, label = _volume((32, 32, 32), (28, 28, 28))
    img, lbl = center_patch(image, label, (16, 16, 16))
    assert lbl.sum() == 1 and img.shape == (1, 16, 16, 16)


def test_sampler_replays_from_the_generator_state(cubes) -> None:
    sampler = PatchSampler(cubes(3, size=20), (16, 16, 16), augment=AugmentConfig(1.0, 30, 1.0, (0.7, 1.4), 1.0))
    rng = np.random.default_rng(5)
    sampler.batch(2, rng)
    state = rng.bit_generator.state
    x1, y1 = sampler.batch(2, rng)
    rng2 = np.random.default_rng(123)
    rng2.bit_generator.state = state
    x2, y2 = PatchSampler(sampler.cases, (16, 16, 16), augment=AugmentConfig(1.0, 30, 1.0, (0.7, 1.4), 1.0)).batch(
        2, rng2
    )
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == (2, 1, 16, 16, 16) and x1.dtype == torch.float32
    assert y1.shape == (2, 1, 16, 16, 16) and y1.dtype == torch.uint8
    assert set(torch.unique(y1).tolist()) <= {0, 1}


def test_augmentation_changes_the_patch_and_keeps_labels_discrete(cubes) -> None:
    ((image, label),) = cubes(1, size=16)
    transform = build_augmentation(AugmentConfig(rotation_prob=1.0, scale_prob=1.0, elastic_prob=1.0))
    transform.set_random_state(seed=0)
    out = transform({"image": image, "label": label[None].astype(np.float32)})
    img = np.asarray(out["image"])
    lbl = np.asarray(out["label"])
    assert img.shape == image.shape and lbl.shape == (1, 16, 16, 16)
    assert not np.allclose(img, image)
    assert set(np.unique(lbl).tolist()) <= {0.0, 1.0}


def test_no_augmentation_with_zero_probabilities(cubes) -> None:
    ((image, label),) = cubes(1, size=16)
    transform = build_augmentation(AugmentConfig(rotation_prob=0.0, scale_prob=0.0, elastic_prob=0.0))
    out = transform({"image": image, "label": label[None].astype(np.float32)})
    assert np.allclose(np.asarray(out["image"]), image)


@pytest.mark.parametrize(
    "kwargs", [{"rotation_prob": 1.5}, {"scale_range": (1.4, 0.7)}, {"elastic_sigma": (-1.0, 2.0)}]
)
def test_augment_config_rejects(kwargs) -> None:
    with pytest.raises(ConfigError):
        AugmentConfig(**kwargs)


def test_sampler_rejects_mismatched_cases() -> None:
    with pytest.raises(ConfigError):
        PatchSampler([(np.zeros((1, 8, 8, 8), np.float32), np.zeros((8, 8, 7), np.uint8))], (8, 8, 8))
    with pytest.raises(ConfigError):
        PatchSampler([], (8, 8, 8))


def test_a_three_voxel_structure_is_sampled_into_patches_at_the_nnunet_rate() -> None:
    """16^3 cases with a 3-voxel structure, 8^3 patches: a third of every batch holds foreground."""
    from seqtransfer.training.augment import PatchSampler

    rng = np.random.default_rng(0)
    cases = []
    for _ in range(4):
        label = np.zeros((16, 16, 16), np.uint8)
        x, y, z = rng.integers(1, 14, size=3)
        label[x, y, z : z + 3] = 1  # 3 voxels: 0.07 % of the volume
        cases.append((rng.normal(size=(1, 16, 16, 16)).astype(np.float32), label))
    sampler = PatchSampler(cases, (8, 8, 8), augment=None, oversample_foreground=1.0 / 3.0)
    batches, batch_size = 200, 3
    with_foreground = []
    for _ in range(batches):
        labels = sampler.draw(batch_size, rng).labels.numpy()
        with_foreground.append([bool(labels[i].any()) for i in range(batch_size)])
    flags = np.array(with_foreground)
    assert flags[:, 2].all()  # the forced patch (nnU-Net: the last third of the batch) always has foreground
    random_rate = flags[:, :2].mean()  # unforced patches: foreground only by chance (~ (8/16)^3 of positions)
    assert random_rate < 0.5
    assert flags.mean() >= 1.0 / 3.0
