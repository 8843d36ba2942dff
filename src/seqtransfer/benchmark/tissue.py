"""The infant tissue collection's cases: isointense T1 and T2 of a 6-month brain."""

from __future__ import annotations

import numpy as np

from seqtransfer.benchmark.geometry import smooth_noise
from seqtransfer.benchmark.rendering import jitter_means, region_texture
from seqtransfer.benchmark.subject import SubjectAnatomy


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
    t1_means = jitter_means(rng, {"CSF": 0.22, "GM": 0.63, "WM": 0.47}, 0.03)
    t2_means = jitter_means(rng, {"CSF": 1.0, "GM": 0.5, "WM": 0.78}, 0.03)
    wm_t1 = t1_means["WM"] + 0.08 * myelin
    wm_t2 = t2_means["WM"] - 0.08 * myelin
    t1 = subject.csf * t1_means["CSF"] + subject.gm * t1_means["GM"] + subject.wm * wm_t1
    t2 = subject.csf * t2_means["CSF"] + subject.gm * t2_means["GM"] + subject.wm * wm_t2
    t1 = t1 * region_texture(rng, subject.aal, 0.04) * (1.0 + 0.02 * fine)
    t2 = t2 * region_texture(rng, subject.aal, 0.04) * (1.0 + 0.02 * fine)
    return np.stack([t1, t2]).astype(np.float32)
