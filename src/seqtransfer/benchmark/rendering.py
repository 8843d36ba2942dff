"""What the collections' renderers share: tissue means, partial volumes and texture of healthy tissue."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from seqtransfer.benchmark.subject import SubjectAnatomy

#: Healthy tissue means per channel (white matter ~0.4-0.85), as in adult MRI.
ADULT_MEANS: dict[str, dict[str, float]] = {
    "T1": {"CSF": 0.18, "GM": 0.58, "WM": 0.85},
    "T1ce": {"CSF": 0.2, "GM": 0.6, "WM": 0.85},
    "T2": {"CSF": 1.0, "GM": 0.52, "WM": 0.35},
    "FLAIR": {"CSF": 0.08, "GM": 0.58, "WM": 0.42},
}


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


def jitter_means(rng: np.random.Generator, means: dict[str, float], sd: float) -> dict[str, float]:
    return {k: float(v * (1.0 + rng.normal(0.0, sd))) for k, v in means.items()}


def soft_fraction(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Partial-volume fraction of a hard mask."""
    return ndi.gaussian_filter(mask.astype(np.float32), sigma)


def healthy_adult(rng: np.random.Generator, subject: SubjectAnatomy, channel: str, fine: np.ndarray) -> np.ndarray:
    """One clean channel of healthy adult tissue (draws its tissue means, then its texture).

    The partial-volume mixture of the channel's jittered tissue means; T1-weighted channels
    are blended half and half with the template's own T1 (the fine anatomy, deep nuclei
    included); then a per-AAL-region texture (nuclei and cortical regions differ slightly)
    and a fine texture ``fine`` shared by the channels.
    """
    means = jitter_means(rng, ADULT_MEANS[channel], 0.04)
    healthy = tissue_mixture(subject, means)
    if channel in ("T1", "T1ce") and subject.t1 is not None:
        healthy = 0.5 * healthy + 0.5 * subject.t1 * (means["WM"] / 0.86)
    healthy *= region_texture(rng, subject.aal, 0.04)
    healthy *= 1.0 + 0.02 * fine
    return healthy
