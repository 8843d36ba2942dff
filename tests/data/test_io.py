from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from seqtransfer.core.errors import DatasetError
from seqtransfer.data.io import read_header, read_image, write_image


@pytest.mark.parametrize("ending", [".nii.gz", ".nii"])
def test_round_trip_keeps_affine_spacing_and_values(tmp_path: Path, ending: str) -> None:
    affine = np.array([[0.0, -1.5, 0.0, 10.0], [0.8, 0.0, 0.0, -4.0], [0.0, 0.0, 3.0, 7.5], [0, 0, 0, 1]])
    data = np.random.default_rng(1).normal(size=(6, 7, 5)).astype(np.float32)
    path = tmp_path / f"img{ending}"
    write_image(path, data, affine)
    back, props = read_image(path)
    np.testing.assert_array_equal(back, data)
    np.testing.assert_allclose(props.affine, affine, atol=1e-6)
    # spacing is the column norms of the affine, independent of its rotation
    np.testing.assert_allclose(props.spacing, (0.8, 1.5, 3.0), rtol=1e-6)
    assert props.shape == (6, 7, 5)
    assert read_header(path).spacing == props.spacing
    # an independent reader agrees
    np.testing.assert_allclose(nib.load(str(path)).affine, affine, atol=1e-6)


def test_labels_are_written_as_uint8(tmp_path: Path) -> None:
    write_image(tmp_path / "lab.nii.gz", np.array([[[0, 1], [2, 3]]], dtype=np.int64), np.eye(4))
    assert nib.load(str(tmp_path / "lab.nii.gz")).get_data_dtype() == np.uint8


def test_write_is_atomic_and_leaves_no_temporaries(tmp_path: Path) -> None:
    path = tmp_path / "x.nii.gz"
    write_image(path, np.ones((3, 3, 3)), np.eye(4))
    assert [p.name for p in tmp_path.iterdir()] == ["x.nii.gz"]


def test_unreadable_and_non_nifti_files_raise_dataset_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a gzip stream at all")
    with pytest.raises(DatasetError, match="bad.nii.gz"):
        read_image(bad)
    other = tmp_path / "img.mha"
    other.write_bytes(b"x")
    with pytest.raises(DatasetError, match="not a NIfTI"):
        read_image(other)
    with pytest.raises(DatasetError, match="not found"):
        read_image(tmp_path / "missing.nii.gz")
