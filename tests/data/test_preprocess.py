from pathlib import Path

import numpy as np
import pytest

from seqtransfer.core.errors import ConfigError
from seqtransfer.data.dataset import parse_dataset
from seqtransfer.data.io import write_image
from seqtransfer.data.preprocess import (
    PreprocessCache,
    PreprocessConfig,
    crop_to_nonzero,
    preprocess_arrays,
    zscore_foreground,
)


def test_crop_to_nonzero_box_of_all_channels() -> None:
    images = np.zeros((2, 10, 10, 10), np.float32)
    images[0, 2:5, 3:6, 4:9] = 1
    images[1, 6, 7, 1] = 2
    label = np.arange(1000).reshape(10, 10, 10)
    cropped, lab = crop_to_nonzero(images, label)
    assert cropped.shape == (2, 5, 5, 8)
    np.testing.assert_array_equal(lab, label[2:7, 3:8, 1:9])


def test_zscore_inside_foreground_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    images = np.zeros((1, 8, 8, 8), np.float32)
    images[0, 2:6, 2:6, 2:6] = rng.normal(50, 7, size=(4, 4, 4))
    z = zscore_foreground(images)
    fg = images[0] != 0
    expected = (images[0][fg] - images[0][fg].mean()) / images[0][fg].std()
    np.testing.assert_allclose(z[0][fg], expected, rtol=1e-4, atol=1e-5)
    assert np.all(z[0][~fg] == 0)


def test_preprocess_arrays_resamples_to_grid() -> None:
    images = np.zeros((2, 20, 30, 12), np.float32)
    images[:, 2:18, 4:26, 1:11] = 5 + np.arange(2)[:, None, None, None]
    images[:, 5:9, 5:9, 5:9] += 3
    label = np.zeros((20, 30, 12), np.int64)
    label[5:9, 5:9, 5:9] = 2
    img, lab, box = preprocess_arrays(images, label, PreprocessConfig(size=16))
    assert box == ((2, 18), (4, 26), (1, 11))
    assert img.shape == (2, 16, 16, 16) and img.dtype == np.float32
    assert lab.shape == (16, 16, 16) and lab.dtype == np.uint8
    assert set(np.unique(lab)) == {0, 2}
    # the bright block stays where the label is
    assert img[0][lab == 2].mean() > img[0][lab == 0].mean()


def test_config_validation() -> None:
    with pytest.raises(ConfigError):
        PreprocessConfig(size=2)
    assert PreprocessConfig(size=16).fingerprint() != PreprocessConfig(size=32).fingerprint()


def test_cache_key_follows_content_and_parameters(dataset_factory, tmp_path: Path) -> None:
    root = dataset_factory(n_cases=2)
    dataset, _ = parse_dataset(root)
    case = dataset.cases[0]
    cache = PreprocessCache(tmp_path / "c", PreprocessConfig(size=8))
    key = cache.key(case)
    assert key == PreprocessCache(tmp_path / "c", PreprocessConfig(size=8)).key(case)
    assert key != PreprocessCache(tmp_path / "c", PreprocessConfig(size=12)).key(case)
    first = np.array(cache.load(case).image)
    # new content in the same file gives a new key and new arrays
    img = np.zeros((12, 14, 10), np.float32)
    img[2:10, 2:12, 2:8] = 7.0
    img[4:6, 4:6, 4:6] = 30.0
    write_image(case.images[0], img, np.eye(4))
    fresh = PreprocessCache(tmp_path / "c", PreprocessConfig(size=8))
    assert fresh.key(case) != key
    assert not np.allclose(np.array(fresh.load(case).image), first)


def test_corrupt_cache_entry_is_recomputed(dataset_factory, tmp_path: Path) -> None:
    root = dataset_factory(n_cases=1)
    dataset, _ = parse_dataset(root)
    case = dataset.cases[0]
    cache = PreprocessCache(tmp_path / "c", PreprocessConfig(size=8))
    expected = np.array(cache.load(case).image)
    entry = next((tmp_path / "c" / "preprocessed").glob("*/*"))
    (entry / "image.npy").write_bytes(b"broken")
    again = PreprocessCache(tmp_path / "c", PreprocessConfig(size=8))
    np.testing.assert_array_equal(np.array(again.load(case).image), expected)
    assert again.computed == 1


def test_restore_label_inverts_the_preprocessing_geometry(dataset_factory, tmp_path: Path) -> None:
    from seqtransfer.data.io import read_image
    from seqtransfer.data.preprocess import restore_label

    root = dataset_factory(n_cases=1, shape=(20, 24, 16))
    dataset, _ = parse_dataset(root)
    case = dataset.cases[0]
    affine = read_image(case.label)[1].affine
    image = np.zeros((20, 24, 16), np.float32)
    image[2:18, 3:21, 1:15] = 10.0
    label = np.zeros((20, 24, 16), np.uint8)
    label[6:14, 8:16, 4:12] = 1
    for path in case.images:
        write_image(path, image, affine)
    write_image(case.label, label, affine)
    cache = PreprocessCache(tmp_path / "c", PreprocessConfig(size=16))
    pre = cache.load(case)
    shape, box = cache.geometry(case)
    assert shape == (20, 24, 16) and box == ((2, 18), (3, 21), (1, 15))
    restored = restore_label(np.asarray(pre.label), shape, box)
    assert restored.shape == label.shape
    inter = np.logical_and(restored, label).sum()
    assert 2 * inter / (restored.sum() + label.sum()) > 0.9  # nearest there and back: nearly the same mask
    assert restored[:2].sum() == 0 and restored[18:].sum() == 0  # outside the box stays background


def test_cube_fingerprint_is_the_digest_of_version_and_size() -> None:
    import hashlib
    import json

    from seqtransfer.data.preprocess import PREPROCESS_VERSION

    blob = json.dumps({"size": 24, "version": PREPROCESS_VERSION}, sort_keys=True)
    assert PreprocessConfig(size=24).fingerprint() == hashlib.sha256(blob.encode()).hexdigest()[:16]
    assert PreprocessConfig(size=24, spacing=(1.0, 1.0, 1.0)).fingerprint() != PreprocessConfig(size=24).fingerprint()
    assert PreprocessConfig(size=24, spacing=(1, 1, 1)).spacing == (1.0, 1.0, 1.0)
    for bad in [(1.0, 1.0), (1.0, 0.0, 1.0), (1.0, float("nan"), 1.0), "x"]:
        with pytest.raises(ConfigError, match="spacing"):
            PreprocessConfig(spacing=bad)  # type: ignore[arg-type]


def test_spacing_grid_keeps_the_physical_extent_and_inverts_exactly(dataset_factory, tmp_path: Path) -> None:
    from seqtransfer.data.io import read_image
    from seqtransfer.data.preprocess import restore_label

    # spacing (1, 1.2, 2) mm; the nonzero box is 10 x 12 x 8 voxels = 10 x 14.4 x 16 mm
    root = dataset_factory(n_cases=1, shape=(12, 14, 10), channels=("T1",), labels=("x",))
    case = parse_dataset(root)[0].cases[0]
    target = (0.5, 0.6, 1.0)  # exactly 2x finer on every axis
    cache = PreprocessCache(tmp_path / "c", PreprocessConfig(size=16, spacing=target))
    pre = cache.load(case)
    assert pre.image.shape == (1, 20, 24, 16) and pre.label.shape == (20, 24, 16)
    shape, box = cache.geometry(case)
    label, _ = read_image(case.label)
    restored = restore_label(np.asarray(pre.label), shape, box)
    np.testing.assert_array_equal(restored, label.astype(np.uint8))  # nearest 2x up, then 2x down: exact
    assert PreprocessConfig(spacing=(2.0, 2.4, 4.0)).grid_shape((10, 12, 8), (1.0, 1.2, 2.0)) == (5, 6, 4)
    with pytest.raises(ConfigError, match="coarser spacing"):
        PreprocessConfig(spacing=(0.001, 0.001, 0.001)).grid_shape((10, 12, 8), (1.0, 1.2, 2.0))


def test_median_spacing_is_per_axis(dataset_factory, tmp_path: Path) -> None:
    from seqtransfer.data.preprocess import median_spacing

    cases = []
    for i, spacing in enumerate([(1.0, 1.0, 3.0), (0.8, 1.0, 2.0), (1.2, 0.5, 2.5)]):
        root = dataset_factory(f"Dataset00{i}_S", n_cases=1, spacing=spacing)
        cases += parse_dataset(root)[0].cases
    assert median_spacing(cases) == pytest.approx((1.0, 1.0, 2.5))


def test_concurrent_writers_never_remove_a_readable_entry(dataset_factory, tmp_path: Path) -> None:
    """Pool workers may preprocess one case at once: a late writer keeps the entry in place."""
    import threading

    from seqtransfer.data.preprocess import PreprocessCache

    root = dataset_factory("Dataset001_A", n_cases=6, shape=(12, 12, 12))
    cases = parse_dataset(root)[0].cases
    first = PreprocessCache(tmp_path / "c", PreprocessConfig(size=8))
    entry = first._entry(first.key(cases[0]))
    reference = np.array(first.load(cases[0]).image)
    inode = (entry / "image.npy").stat().st_ino
    # a second writer of the same case finishes later: its copy is dropped, the entry stays
    late = PreprocessCache(tmp_path / "c", PreprocessConfig(size=8))
    late._write(
        entry, reference, np.zeros((8, 8, 8), dtype=np.uint8), cases[0], {"shape": [12, 12, 12], "box": [[0, 12]] * 3}
    )
    assert (entry / "image.npy").stat().st_ino == inode
    assert not [p for p in entry.parent.iterdir() if p.name != entry.name]  # no temporary left
    # an unreadable leftover is replaced
    (entry / "image.npy").write_bytes(b"broken")
    assert np.array_equal(PreprocessCache(tmp_path / "c", PreprocessConfig(size=8)).load(cases[0]).image, reference)

    # many threads, separate cache objects, the same cases at once: every load succeeds
    errors: list[BaseException] = []

    def work() -> None:
        try:
            cache = PreprocessCache(tmp_path / "race", PreprocessConfig(size=8))
            for case in cases:
                cache.load(case, keep=False)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
