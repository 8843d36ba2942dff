"""Grids and warps: site grids, smooth random fields, subject poses, sampling coordinates, thick slices."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from seqtransfer.benchmark.anatomy import Anatomy


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
        affine[:3, 3] = [-s * (n - 1) / 2.0 for s, n in zip(self.spacing, self.shape, strict=True)]
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


def elastic_warp(
    rng: np.random.Generator, shape: Sequence[int], amplitude_mm: float, control_points: int = 5
) -> np.ndarray:
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


def sampling_coordinates(grid: Grid, anatomy: Anatomy, pose: np.ndarray, displacement: np.ndarray) -> np.ndarray:
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
