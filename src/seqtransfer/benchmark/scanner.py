"""A site's scanner: bias field, contrast curve, blur, Rician noise and intensity units."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from seqtransfer.benchmark.geometry import smooth_upsample


@dataclass(frozen=True, eq=False)  # holds arrays: identity, not value, equality
class SiteAppearance:
    """How one site's scanner renders anatomy.

    Attributes:
        bias_amplitude: standard deviation of the log bias field.
        bias_coarse: the site's coil profile (coarse lattice of the log bias field).
        noise_sigma: Rician noise level relative to white matter (~1 before scaling).
        blur_sigma: Gaussian point-spread in voxels.
        gamma: contrast curve exponent per channel.
        scale: scanner intensity units per channel.
    """

    bias_amplitude: float
    bias_coarse: np.ndarray
    noise_sigma: float
    blur_sigma: float
    gamma: tuple[float, ...]
    scale: tuple[float, ...]


def draw_site_appearance(rng: np.random.Generator, n_channels: int) -> SiteAppearance:
    """Draw a site's scanner: bias field, noise, blur, contrast curve and units.

    Args:
        rng: the site's random stream.
        n_channels: number of channels (each gets its own contrast curve and units).

    Returns:
        The site's appearance.
    """
    return SiteAppearance(
        bias_amplitude=float(rng.uniform(0.03, 0.18)),
        bias_coarse=rng.standard_normal((4, 4, 4)),
        noise_sigma=float(rng.uniform(0.01, 0.05)),
        blur_sigma=float(rng.uniform(0.0, 0.6)),
        gamma=tuple(float(g) for g in np.exp(rng.uniform(np.log(0.7), np.log(1.45), size=n_channels))),
        scale=tuple(float(s) for s in np.exp(rng.uniform(np.log(150.0), np.log(3000.0), size=n_channels))),
    )


def bias_field(rng: np.random.Generator, site: SiteAppearance, shape: Sequence[int]) -> np.ndarray:
    """A smooth multiplicative bias field: the site's coil profile plus a subject part.

    Args:
        rng: the subject's random stream (head position changes the field a little).
        site: the site's appearance.
        shape: the image shape.

    Returns:
        Positive float32 field of ``shape`` with geometric mean about 1.
    """
    coarse = site.bias_coarse + 0.5 * rng.standard_normal(site.bias_coarse.shape)
    log_field = smooth_upsample(coarse, shape)
    log_field -= log_field.mean()
    log_field *= site.bias_amplitude / max(float(log_field.std()), 1e-6)
    return np.exp(log_field).astype(np.float32)


def contrast_curve(image: np.ndarray, gamma: float) -> np.ndarray:
    """The site's intensity mapping: a power law on the non-negative image."""
    return np.power(np.maximum(image, 0.0), gamma, dtype=np.float32)


def rician_noise(rng: np.random.Generator, image: np.ndarray, sigma: float) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise (MRI magnitude images are Rician)."""
    real = image + np.float32(sigma) * rng.standard_normal(image.shape, dtype=np.float32)
    imag = np.float32(sigma) * rng.standard_normal(image.shape, dtype=np.float32)
    return np.hypot(real, imag)


def apply_site(
    rng: np.random.Generator,
    clean: np.ndarray,
    mask: np.ndarray,
    site: SiteAppearance,
    bias: np.ndarray,
    channel: int,
) -> np.ndarray:
    """Acquire one clean channel at a site: blur, contrast curve, bias, noise, mask, units.

    Args:
        rng: the subject's random stream.
        clean: anatomy intensities (white matter about 0.4..1).
        mask: where the image is nonzero (the brain); zero elsewhere so crop-to-nonzero works.
        site: the site's appearance.
        bias: :func:`bias_field` of this subject (shared by its channels: same coil).
        channel: index into the site's per-channel curve and units.

    Returns:
        float32 image, non-negative, zero outside ``mask``.
    """
    image = ndi.gaussian_filter(clean, site.blur_sigma) if site.blur_sigma > 0.05 else clean
    image = contrast_curve(image, site.gamma[channel]) * bias
    image = rician_noise(rng, image, site.noise_sigma)
    image = np.where(mask, image * np.float32(site.scale[channel]), np.float32(0.0))
    return image.astype(np.float32)
