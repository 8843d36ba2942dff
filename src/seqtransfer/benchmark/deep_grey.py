"""The deep-grey collection's cases: the subject's AAL nuclei as labels, healthy T1 and T2."""

from __future__ import annotations

import numpy as np

from seqtransfer.benchmark.anatomy import Anatomy
from seqtransfer.benchmark.geometry import smooth_noise
from seqtransfer.benchmark.names import DEEP_GREY_AAL_REGIONS, DEEP_GREY_CHANNELS, DEEP_GREY_LABELS
from seqtransfer.benchmark.rendering import healthy_adult
from seqtransfer.benchmark.subject import SubjectAnatomy


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

    Rendered as the tumour collection renders healthy tissue (:func:`healthy_adult`): T1
    blended with the template's T1, which gives the nuclei their own contrast, and the
    per-region texture, which varies it slightly from subject to subject.

    Args:
        rng: the subject's random stream.
        subject: the subject's anatomy (with ``t1``).

    Returns:
        float32 array ``(2, *shape)`` in :data:`DEEP_GREY_CHANNELS` order.
    """
    fine = smooth_noise(rng, subject.gm.shape, 0.7)
    return np.stack([healthy_adult(rng, subject, name, fine) for name in DEEP_GREY_CHANNELS]).astype(np.float32)
