"""What each dataset is (name, channels, labels, sites, grids), its random streams, and how a case renders."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqtransfer.benchmark.anatomy import Anatomy, TemplateTables
from seqtransfer.benchmark.config import BenchmarkConfig
from seqtransfer.benchmark.deep_grey import deep_grey_labels, render_deep_grey_modalities
from seqtransfer.benchmark.geometry import Grid, rendering_grid, site_grid, thick_slices
from seqtransfer.benchmark.lesion import lesion_labels, render_flair_lesion
from seqtransfer.benchmark.names import (
    DEEP_GREY_CHANNELS,
    DEEP_GREY_DATASET,
    DEEP_GREY_LABELS,
    DEEP_GREY_SITES,
    LESION_CHANNELS,
    LESION_DATASET,
    LESION_LABELS,
    LESION_SITES,
    NEW_TARGET_CHANNELS,
    NEW_TARGET_DATASET,
    NEW_TARGET_LABELS,
    NEW_TARGET_SITE,
    TISSUE_CHANNELS,
    TISSUE_DATASET,
    TISSUE_LABELS,
    TISSUE_SITE,
    TUMOUR_CHANNELS,
    TUMOUR_DATASET,
    TUMOUR_LABELS,
)
from seqtransfer.benchmark.scanner import SiteAppearance, apply_site, bias_field
from seqtransfer.benchmark.subject import subject_anatomy
from seqtransfer.benchmark.tissue import render_tissue_modalities
from seqtransfer.benchmark.tumour import render_tumour_modalities, tumour_labels

#: iSeg subjects are 6-month infants: the adult template scaled down.
INFANT_HEAD_SCALE = 0.8
#: Extra-axial CSF around the infant brain, in template mm (wide subarachnoid spaces).
INFANT_CSF_SHELL_MM = 4.0

#: The ``kind`` entry of a random stream's seed: a site's scanner, or one of its cases.
SITE_STREAM = 0
CASE_STREAM = 1


def random_stream(seed: int, collection: int, site: int, kind: int, case: int = 0) -> np.random.Generator:
    """The random stream of a site's scanner or of one case: ``SeedSequence([seed, collection, site, kind, case])``.

    Args:
        seed: the benchmark's seed.
        collection: :attr:`Collection.index`.
        site: index of the site in its collection.
        kind: :data:`SITE_STREAM` or :data:`CASE_STREAM`.
        case: index of the case at its site (0 for a site's stream).

    Returns:
        A generator of its own: no other stream draws from it.
    """
    return np.random.default_rng(np.random.SeedSequence([seed, collection, site, kind, case]))


def case_id(site: str, index: int) -> str:
    """Case id of the ``index``-th (0-based) case of ``site``: ``inst3_017`` for 16."""
    return f"{site}_{index + 1:03d}"


@dataclass(frozen=True)
class Collection:
    """What one dataset is: its name, channels, labels, sites and their grids.

    ``index`` names its random streams (:func:`random_stream`); ``kind`` how a case is rendered
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


def source_collections(config: BenchmarkConfig, anatomy: Anatomy) -> list[Collection]:
    """The collections :func:`~seqtransfer.benchmark.make_benchmark` writes: tumour, tissue, lesion (and deep grey).

    Args:
        config: what to generate (``size``, ``tumour_sites``, ``deep_grey``).
        anatomy: the template (its field of view sets the grids).

    Returns:
        The collections in writing order; the deep-grey one last, only with ``config.deep_grey``.
    """
    fov = anatomy.field_of_view
    iso = site_grid(fov, config.size)
    # The infant head is smaller; its scan's field of view shrinks with it (finer voxels).
    infant = site_grid(fov * INFANT_HEAD_SCALE, config.size)
    return [
        Collection(
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
        Collection(
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
        Collection(
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
    ] + ([deep_grey_collection(config, anatomy)] if config.deep_grey else [])


def deep_grey_collection(config: BenchmarkConfig, anatomy: Anatomy) -> Collection:
    """The optional deep-grey collection: adult sites on the tumour grid, streams of its own (5)."""
    return Collection(
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


def new_target_collection(config: BenchmarkConfig, anatomy: Anatomy) -> Collection:
    """The new hospital: a tumour-like site on the tumour grid, with streams of its own (4)."""
    return Collection(
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


def render_case(
    collection: Collection,
    config: BenchmarkConfig,
    anatomy: Anatomy,
    tables: TemplateTables,
    site_index: int,
    case_index: int,
    appearance: SiteAppearance,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one case: (channels ``(C, *shape)`` float32, labels uint8)."""
    rng = random_stream(config.seed, collection.index, site_index, CASE_STREAM, case_index)
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
