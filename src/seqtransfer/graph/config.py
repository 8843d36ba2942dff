"""Parameters of the source graph, saved resolved in ``GRAPH_DIR/params.json``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from seqtransfer.core.config import config_from_mapping, require

MODES = ("paper", "official")


@dataclass(frozen=True)
class GraphConfig:
    """How task affinity is computed (METHOD sections 2-3).

    Attributes:
        size: edge of the common grid volumes are resampled to.
        volumes_per_task: volumes sampled per source task (seeded).
        target_cases: labelled training cases a target contributes (the few-shot draw).
        target_draw: which seeded training draw of the target is used.
        max_pairs: volume pairs per task pair before seeded subsampling (eq. 2 and 4).
        n_components: dimensions of the shared slice PCA.
        max_slices: slices pooled to fit the PCA (seeded subsample).
        alpha: weight of the image distance in eq. 5.
        beta: weight of the label dissimilarity in eq. 5.
        mode: ``paper`` (shared PCA + exact W1, Gaussian SSIM) or ``official`` (the
            published code's per-volume PCA, 1-D W1 and global SSIM; METHOD section 8).
        official_resize: grid the official mode resizes volumes to (128 in the published code).
        seed: seed of every sampling step.
    """

    size: int = 32
    volumes_per_task: int = 20
    target_cases: int = 3
    target_draw: int = 0
    max_pairs: int = 100
    n_components: int = 16
    max_slices: int = 4096
    alpha: float = 0.5
    beta: float = 0.5
    mode: str = "paper"
    official_resize: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.size >= 11, "size must be at least 11 (the SSIM window)"),
            (self.volumes_per_task >= 1, "volumes_per_task must be at least 1"),
            (self.target_cases >= 1, "target_cases must be at least 1"),
            (self.target_draw >= 0, "target_draw must be non-negative"),
            (self.max_pairs >= 1, "max_pairs must be at least 1"),
            (self.n_components >= 1, "n_components must be at least 1"),
            (self.max_slices >= 2, "max_slices must be at least 2"),
            (
                self.alpha >= 0 and self.beta >= 0 and self.alpha + self.beta > 0,
                "alpha and beta must be >= 0, not both 0",
            ),
            (self.mode in MODES, f"mode must be one of {', '.join(MODES)}"),
            (self.official_resize >= 8, "official_resize must be at least 8"),
        ]
        require(checks)

    def to_dict(self) -> dict[str, Any]:
        """The parameters as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GraphConfig:
        """Build from a dict, refusing unknown keys and wrong types.

        Raises:
            ConfigError: unknown key or a value of the wrong type.
        """
        return config_from_mapping(cls, data, "graph")
