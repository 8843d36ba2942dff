"""The tumour-like collection's cases: glioma-like labels and their T1, T1ce, T2 and FLAIR."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from seqtransfer.benchmark.anatomy import Anatomy
from seqtransfer.benchmark.geometry import random_rotation, smooth_noise
from seqtransfer.benchmark.names import TUMOUR_CHANNELS, TUMOUR_LABELS
from seqtransfer.benchmark.rendering import healthy_adult, jitter_means, soft_fraction
from seqtransfer.benchmark.subject import SubjectAnatomy

#: Tumour means per channel: NCR, ED, ET (T1: hypointense; T1ce: enhancing rim, dark core;
#: T2: fluid-bright necrosis and oedema; FLAIR: oedema brightest).
_TUMOUR_MEANS: dict[str, dict[str, float]] = {
    "T1": {"NCR": 0.28, "ED": 0.5, "ET": 0.5},
    "T1ce": {"NCR": 0.25, "ED": 0.5, "ET": 1.6},
    "T2": {"NCR": 0.9, "ED": 0.82, "ET": 0.68},
    "FLAIR": {"NCR": 0.5, "ED": 1.0, "ET": 0.78},
}


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labelled, n = ndi.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(labelled.ravel())
    sizes[0] = 0
    return labelled == int(np.argmax(sizes))


def _ellipsoid_distance(
    rng: np.random.Generator, shape: Sequence[int], centre: np.ndarray, radius: float
) -> np.ndarray:
    """Normalised distance to ``centre`` in a randomly oriented, randomly elongated ellipsoid."""
    axes = radius * rng.uniform(0.75, 1.3, size=3)
    rotation = random_rotation(rng, 90.0)
    grids = [np.arange(n, dtype=np.float32) - c for n, c in zip(shape, centre, strict=True)]
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
    fractions = {name: soft_fraction(labels == value, 0.4) for value, name in enumerate(TUMOUR_LABELS, start=1)}
    tumour_total = np.clip(sum(fractions.values()), 0.0, 1.0)
    heterogeneity = smooth_noise(rng, shape, 1.0)
    oedema_strength = np.clip(0.8 + 0.15 * smooth_noise(rng, shape, 2.0), 0.5, 1.0)
    fine = smooth_noise(rng, shape, 0.7)
    channels = []
    for name in TUMOUR_CHANNELS:
        healthy = healthy_adult(rng, subject, name, fine)
        tumour = jitter_means(rng, _TUMOUR_MEANS[name], 0.06)
        lesion = np.zeros(shape, dtype=np.float32)
        for cls in TUMOUR_LABELS:
            value = tumour[cls] * (1.0 + 0.08 * heterogeneity)
            if cls == "ED":
                value = oedema_strength * value + (1.0 - oedema_strength) * healthy
            lesion += fractions[cls] * value
        channels.append((1.0 - tumour_total) * healthy + lesion)
    return np.stack(channels).astype(np.float32)
