"""The white-matter lesion collection's cases: WMH labels and their FLAIR."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from seqtransfer.benchmark.geometry import smooth_noise
from seqtransfer.benchmark.rendering import ADULT_MEANS, jitter_means, region_texture, soft_fraction, tissue_mixture
from seqtransfer.benchmark.subject import SubjectAnatomy


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
    coords_mm = [np.arange(n, dtype=np.float32) * s for n, s in zip(shape, spacing_arr, strict=True)]
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
    means = jitter_means(rng, ADULT_MEANS["FLAIR"], 0.04)
    fine = smooth_noise(rng, lesion.shape, 0.7)
    healthy = tissue_mixture(subject, means) * region_texture(rng, subject.aal, 0.04) * (1.0 + 0.02 * fine)
    fraction = soft_fraction(lesion, 0.5)
    bright = means["WM"] * rng.uniform(1.9, 2.5) * (1.0 + 0.06 * smooth_noise(rng, lesion.shape, 1.0))
    return ((1.0 - fraction) * healthy + fraction * bright)[None].astype(np.float32)
