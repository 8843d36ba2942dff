"""What the benchmark's datasets, sites, channels and labels are called, and how objectives group."""

from __future__ import annotations

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
