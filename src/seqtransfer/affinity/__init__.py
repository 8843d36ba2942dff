"""Task affinity (paper eq. 1-5): image distance, label similarity, their combination.

- :mod:`~seqtransfer.affinity.pairs`: which sample pairs are averaged (eq. 2, 4).
- :mod:`~seqtransfer.affinity.slice_pca`: the shared PCA space of eq. 1.
- :mod:`~seqtransfer.affinity.image_distance`: W1 (eq. 1) and H(i, j) (eq. 2).
- :mod:`~seqtransfer.affinity.ssim`: standard 3-D SSIM (eq. 3), per-volume / per-pair split.
- :mod:`~seqtransfer.affinity.label_similarity`: R(i, j) (eq. 4).
- :mod:`~seqtransfer.affinity.affinity`: w(i, j) (eq. 5) and the scale of H.
- :mod:`~seqtransfer.affinity.official`: the published code's variants (METHOD.md section 8).

Importing this package is cheap: the heavy libraries (POT, scikit-learn, scikit-image,
torch) are imported where they are used, and the SSIM names, whose module needs torch at
import, on first access. A command that only reads a stored graph (``seqtransfer select``)
never loads them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from seqtransfer.affinity.affinity import (
    DEFAULT_ALPHA,
    DEFAULT_BETA,
    affinity,
    robust_h_scale,
)
from seqtransfer.affinity.image_distance import image_distance, wasserstein1
from seqtransfer.affinity.label_similarity import (
    label_similarity,
    label_similarity_from_stats,
)
from seqtransfer.affinity.official import (
    OFFICIAL_ALPHA,
    OFFICIAL_BETA,
    official_affinity,
    official_image_distance,
    official_image_distance_pair,
    official_label_similarity,
    official_pairs,
    official_ssim,
    official_volume_scores,
)
from seqtransfer.affinity.pairs import sample_pairs
from seqtransfer.affinity.slice_pca import SlicePCA, embed_volume, fit_slice_pca
from seqtransfer.core.lazy import lazy_getattr

if TYPE_CHECKING:
    from seqtransfer.affinity.ssim import (
        SSIMStats,
        gaussian_filter_valid,
        ssim3d,
        ssim_from_stats,
        ssim_pairs,
        ssim_volume_stats,
    )

_FROM_SSIM = ("SSIMStats", "gaussian_filter_valid", "ssim3d", "ssim_from_stats", "ssim_pairs", "ssim_volume_stats")


# the SSIM names, imported from seqtransfer.affinity.ssim (torch) on first use
__getattr__ = lazy_getattr(__name__, dict.fromkeys(_FROM_SSIM, "seqtransfer.affinity.ssim"))


__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_BETA",
    "OFFICIAL_ALPHA",
    "OFFICIAL_BETA",
    "SSIMStats",
    "SlicePCA",
    "affinity",
    "embed_volume",
    "fit_slice_pca",
    "gaussian_filter_valid",
    "image_distance",
    "label_similarity",
    "label_similarity_from_stats",
    "official_affinity",
    "official_image_distance",
    "official_image_distance_pair",
    "official_label_similarity",
    "official_pairs",
    "official_ssim",
    "official_volume_scores",
    "robust_h_scale",
    "sample_pairs",
    "ssim3d",
    "ssim_from_stats",
    "ssim_pairs",
    "ssim_volume_stats",
    "wasserstein1",
]
