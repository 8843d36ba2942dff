"""NIfTI reading and writing through nibabel, keeping affine and spacing.

A reader returns the array and its :class:`ImageProperties`, as nnU-Net's readers do.
Arrays are in the file's voxel order (nibabel's ``get_fdata`` order, i.e. x, y, z).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from seqtransfer.core.atomic import atomic_path
from seqtransfer.core.errors import DatasetError

NIFTI_ENDINGS = (".nii.gz", ".nii")


@dataclass(frozen=True)
class ImageProperties:
    """Geometry of an image file.

    Attributes:
        shape: spatial shape (3 entries).
        spacing: voxel size in mm along each array axis.
        affine: 4x4 voxel-to-world matrix.
    """

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    affine: np.ndarray


def _load(path: Path) -> nib.Nifti1Image:
    name = path.name
    if not name.endswith(NIFTI_ENDINGS):
        raise DatasetError(f"{path}: not a NIfTI file (expected .nii or .nii.gz)")
    try:
        img = nib.load(str(path))
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: file not found") from exc
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise DatasetError(f"{path}: unreadable NIfTI ({type(exc).__name__}: {exc})".splitlines()[0]) from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise DatasetError(f"{path}: not a NIfTI image ({type(img).__name__})")
    return img


def read_header(path: str | os.PathLike[str]) -> ImageProperties:
    """Read only the geometry of a NIfTI file (cheap: no voxel data).

    Raises:
        DatasetError: the file is missing, not NIfTI or unreadable.
    """
    img = _load(Path(path))
    shape = tuple(int(s) for s in img.shape[:3])
    spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
    return ImageProperties(shape=shape, spacing=spacing, affine=np.asarray(img.affine, dtype=np.float64))


def read_image(path: str | os.PathLike[str], dtype: type = np.float32) -> tuple[np.ndarray, ImageProperties]:
    """Read a NIfTI image.

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        dtype: dtype of the returned array.

    Returns:
        The voxel array (3-D, or 4-D when the file is) and its properties.

    Raises:
        DatasetError: the file is missing, not NIfTI, truncated or otherwise unreadable.
    """
    p = Path(path)
    img = _load(p)
    try:
        data: np.ndarray = np.asarray(img.dataobj, dtype=dtype)  # type of a proxy's read: unknown to nibabel's stubs
    except Exception as exc:  # truncated gzip, short file, ...
        raise DatasetError(f"{p}: unreadable voxel data ({type(exc).__name__}: {exc})".splitlines()[0]) from exc
    shape = tuple(int(s) for s in img.shape[:3])
    spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
    return data, ImageProperties(shape=shape, spacing=spacing, affine=np.asarray(img.affine, dtype=np.float64))


def write_image(path: str | os.PathLike[str], array: np.ndarray, affine: np.ndarray) -> None:
    """Atomically write ``array`` as NIfTI with ``affine``.

    Integer arrays with values in 0..255 (labels) are stored as uint8, as nnU-Net does;
    everything else as float32. The spacing in the header follows from the affine.
    """
    arr = np.asarray(array)
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            arr = arr.astype(np.int16)
        else:
            arr = arr.astype(np.uint8)
    else:
        arr = arr.astype(np.float32)
    img = nib.Nifti1Image(arr, np.asarray(affine, dtype=np.float64))
    img.header.set_xyzt_units("mm")
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    p = Path(path)
    ending = ".nii.gz" if p.name.endswith(".nii.gz") else ".nii"
    with atomic_path(p, suffix=ending) as tmp:
        nib.save(img, str(tmp))


def write_label_like(path: str | os.PathLike[str], label: np.ndarray, reference: str | os.PathLike[str]) -> None:
    """Atomically write a label map with the shape, affine and header of a reference image.

    What nnU-Net does with a prediction: the reference's header is copied (orientation,
    units, descriptions), the data type becomes uint8 (int16 past 255) and the intensity
    scaling is reset.

    Raises:
        DatasetError: the reference is unreadable or its shape differs from the label's.
    """
    ref = _load(Path(reference))
    arr = np.asarray(label)
    if tuple(arr.shape) != tuple(int(s) for s in ref.shape[:3]):
        raise DatasetError(f"{reference}: shape {tuple(ref.shape[:3])} differs from the label's {arr.shape}")
    dtype = np.int16 if arr.size and (arr.min() < 0 or arr.max() > 255) else np.uint8
    header = ref.header.copy()
    header.set_data_dtype(dtype)
    header.set_data_shape(arr.shape)
    img = nib.Nifti1Image(arr.astype(dtype), ref.affine, header=header)
    img.header.set_slope_inter(1.0, 0.0)
    img.set_qform(ref.get_qform(), code=int(ref.header["qform_code"]) or 1)
    img.set_sform(ref.get_sform(), code=int(ref.header["sform_code"]) or 1)
    p = Path(path)
    ending = ".nii.gz" if p.name.endswith(".nii.gz") else ".nii"
    with atomic_path(p, suffix=ending) as tmp:
        nib.save(img, str(tmp))
