"""One subject: the template sampled through the subject's pose and warp onto its grid."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from seqtransfer.benchmark.anatomy import LABEL_MAPS, LINEAR_MAPS, Anatomy, TemplateTables
from seqtransfer.benchmark.geometry import Grid, elastic_warp, random_affine, sampling_coordinates


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
