"""The configurations of the training layer: the network and one training run.

Torch-free (only :mod:`seqtransfer.training.plan` below it), so the CLI, the experiment file
and the selection commands read their defaults from these dataclasses without importing
torch or MONAI.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from seqtransfer.core.config import config_from_mapping, recorded_dict, require
from seqtransfer.core.errors import ConfigError
from seqtransfer.training.plan import ARCHITECTURES, PRESETS, Stride, nnunet_filters, plan_strides, total_stride

__all__ = ["NetworkConfig", "TrainConfig"]

# fields added after models were trained: out of to_dict at their defaults, so recorded keys stay valid
_NETWORK_RECORDED_WHEN_SET = ("kernel_sizes", "strides", "trans_bias")


def _level_triples(levels: Any, what: str, minimum: int) -> list[Stride]:
    """``levels`` as a list of 3-tuples of ints >= ``minimum``, one per resolution level.

    Raises:
        ConfigError: a level that is not 3 such ints.
    """
    out: list[Stride] = []
    for level in levels:
        values = tuple(level) if isinstance(level, (list, tuple)) else ()
        if len(values) != 3 or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in values):
            raise ConfigError(f"{what} must hold 3 integers >= {minimum} per level, got {level!r}")
        out.append((int(values[0]), int(values[1]), int(values[2])))
    return out


@dataclass(frozen=True)
class NetworkConfig:
    """The segmentation network, resolved (saved next to every trained model).

    ``patch_size`` and ``filters`` left as ``None`` are filled from the preset when the
    object is built, so a saved config always holds the values that were used.

    Attributes:
        preset: ``"cpu"`` (small, trains in minutes on 2 cores) or ``"nnunet"`` (GPU).
        in_channels: image channels.
        out_channels: classes, background included (2 for a binary task).
        patch_size: network input edge per axis; preset default when None.
        spacing: voxel spacing the strides are planned for.
        filters: filters per level (one per planned stride); nnU-Net doubling from the
            preset's base, capped, when None.
        deep_supervision: add deep-supervision heads (DynUNet only).
        architecture: ``"dynunet"`` (nnU-Net, default) or ``"unet"`` (MONAI ``UNet`` with two
            residual units per block, instance norm, PReLU; its MONAI defaults).
        max_levels: cap of :func:`plan_strides`.
        kernel_sizes: the convolution kernel of every level, one 3-tuple each (an imported
            nnU-Net plan's, e.g. ``(1, 3, 3)`` on an anisotropic axis); kernel 3 everywhere
            when None. Each level's decoder block uses its level's kernel, as nnU-Net does.
        strides: the stride of every level, one 3-tuple each (an imported nnU-Net plan's);
            planned by :func:`plan_strides` when None (``max_levels`` then unused).
        trans_bias: give the transposed convolutions of the decoder a bias (nnU-Net's do;
            MONAI's ``DynUNet`` default has none).

    ``kernel_sizes``, ``strides`` and ``trans_bias`` are kept out of :meth:`to_dict` while at
    their defaults, so the keys of every model recorded before they existed stay valid.
    """

    preset: str = "cpu"
    in_channels: int = 1
    out_channels: int = 2
    patch_size: tuple[int, int, int] | None = None
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    filters: tuple[int, ...] | None = None
    deep_supervision: bool = False
    architecture: str = "dynunet"
    max_levels: int = 6
    kernel_sizes: tuple[tuple[int, int, int], ...] | None = None
    strides: tuple[tuple[int, int, int], ...] | None = None
    trans_bias: bool = False

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown network preset {self.preset!r}; expected one of {', '.join(PRESETS)}")
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"unknown architecture {self.architecture!r}; expected one of {', '.join(ARCHITECTURES)}")
        if self.in_channels < 1 or self.out_channels < 2:
            raise ConfigError(
                f"need in_channels >= 1 and out_channels >= 2, got {self.in_channels}, {self.out_channels}"
            )
        preset = PRESETS[self.preset]
        patch = tuple(int(v) for v in (self.patch_size if self.patch_size is not None else preset["patch_size"]))
        object.__setattr__(self, "patch_size", patch)
        object.__setattr__(self, "spacing", tuple(float(v) for v in self.spacing))
        if self.strides is None:
            strides = plan_strides(patch, self.spacing, max_levels=self.max_levels)
            if len(strides) < 2:
                raise ConfigError(f"patch_size {patch} is too small for a U-Net: no axis can be halved")
        else:
            strides = _level_triples(self.strides, "strides", minimum=1)
            if len(strides) < 3:
                raise ConfigError(f"strides needs at least 3 levels (a DynUNet), got {len(strides)}")
            if any(v > 2 for stride in strides for v in stride):
                # MONAI pads (kernel - stride + 1) // 2: nnU-Net's (kernel - 1) // 2 only for strides 1 and 2
                raise ConfigError(f"strides must be 1 or 2 on every axis (as nnU-Net plans them), got {tuple(strides)}")
            object.__setattr__(self, "strides", tuple(strides))
        if self.kernel_sizes is not None:
            kernels = _level_triples(self.kernel_sizes, "kernel_sizes", minimum=1)
            if len(kernels) != len(strides):
                raise ConfigError(f"kernel_sizes has {len(kernels)} levels, the strides {len(strides)}")
            if any(k % 2 == 0 for kernel in kernels for k in kernel):
                raise ConfigError(f"kernel_sizes must be odd (a centred kernel), got {tuple(kernels)}")
            object.__setattr__(self, "kernel_sizes", tuple(kernels))
        if (self.kernel_sizes is not None or self.trans_bias) and self.architecture != "dynunet":
            raise ConfigError("kernel_sizes and trans_bias need architecture 'dynunet'")
        div = total_stride(strides)
        if any(p % d for p, d in zip(patch, div, strict=True)):
            suggestion = tuple(math.ceil(p / d) * d for p, d in zip(patch, div, strict=True))
            what = "planned" if self.strides is None else "given"
            raise ConfigError(
                f"patch_size {patch} is not divisible by the {what} total stride {div}; use e.g. {suggestion}"
            )
        if self.filters is None:
            filters = nnunet_filters(len(strides), preset["base_filters"], preset["max_filters"])
        else:
            filters = tuple(int(f) for f in self.filters)
            if len(filters) != len(strides) or any(f < 1 for f in filters):
                raise ConfigError(
                    f"filters {filters} must be {len(strides)} positive ints, one per planned level of patch {patch}"
                )
        object.__setattr__(self, "filters", filters)
        if self.deep_supervision and (self.architecture != "dynunet" or len(strides) < 3):
            raise ConfigError("deep_supervision needs architecture 'dynunet' and at least 3 levels")

    @property
    def level_strides(self) -> list[Stride]:
        """The stride of every level: the given ``strides``, else planned (:func:`plan_strides`)."""
        if self.strides is not None:
            return list(self.strides)
        assert self.patch_size is not None
        return plan_strides(self.patch_size, self.spacing, max_levels=self.max_levels)

    @property
    def level_kernel_sizes(self) -> list[Stride]:
        """The convolution kernel of every level: the given ``kernel_sizes``, else 3 everywhere."""
        if self.kernel_sizes is not None:
            return list(self.kernel_sizes)
        return [(3, 3, 3)] * len(self.level_strides)

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration as a JSON-ready dict (``kernel_sizes``, ``strides``,
        ``trans_bias`` only when set)."""
        out = recorded_dict(self, *_NETWORK_RECORDED_WHEN_SET)
        for key in ("patch_size", "spacing", "filters"):
            out[key] = list(out[key])
        for key in ("kernel_sizes", "strides"):
            if key in out:
                out[key] = [list(level) for level in out[key]]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NetworkConfig:
        """Build from :meth:`to_dict` output (or a ``[network]`` table).

        Raises:
            ConfigError: an unknown key or an invalid value.
        """
        return config_from_mapping(cls, data, "network")


LR_SCHEDULES = ("plateau", "constant")
# fields added after models were trained: out of to_dict at their defaults, so recorded keys stay valid
_RECORDED_WHEN_SET = ("batch_dice", "lr_schedule")


@dataclass(frozen=True)
class TrainConfig:
    """One training run (pre-training or a fine-tuning step).

    Attributes:
        steps: optimizer steps (iterations) to run.
        lr: Adam learning rate (the paper: 0.01).
        batch_size: patches per step (the paper: 2).
        lambda_ewc: EWC strength on a mean-1 Fisher; 0 disables EWC.
        freeze_encoder: freeze the encoder (input block, down-sampling blocks, bottleneck).
        seed: seed of the trainer's random generator.
        checkpoint_every: write ``checkpoint_latest.pth`` every this many steps.
        augment: apply the spatial augmentation.
        oversample_foreground: fraction of each batch forced to contain foreground.
        plateau_interval: steps averaged per ``ReduceLROnPlateau`` update.
        plateau_patience: updates without improvement before the lr is reduced.
        plateau_factor: lr reduction factor.
        min_lr: lower bound of the lr.
        batch_dice: compute the Dice term over the whole batch (nnU-Net's 3-D default) instead
            of per patch and average; kept out of :meth:`to_dict` while False, so the keys of
            models trained before the option existed stay valid.
        lr_schedule: ``"plateau"`` (``ReduceLROnPlateau``, the ``plateau_*`` settings) or
            ``"constant"`` (``lr`` throughout; the ``plateau_*`` settings unused); kept out of
            :meth:`to_dict` while ``"plateau"``, like ``batch_dice``.
    """

    steps: int
    lr: float = 0.01
    batch_size: int = 2
    lambda_ewc: float = 0.0
    freeze_encoder: bool = False
    seed: int = 0
    checkpoint_every: int = 50
    augment: bool = True
    oversample_foreground: float = 1.0 / 3.0
    plateau_interval: int = 10
    plateau_patience: int = 5
    plateau_factor: float = 0.5
    min_lr: float = 1e-6
    batch_dice: bool = False
    lr_schedule: Literal["plateau", "constant"] = "plateau"

    def __post_init__(self) -> None:
        checks = [
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (math.isfinite(self.lr) and self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (
                math.isfinite(self.lambda_ewc) and self.lambda_ewc >= 0,
                f"lambda_ewc must be >= 0, got {self.lambda_ewc}",
            ),
            (self.checkpoint_every >= 1, f"checkpoint_every must be >= 1, got {self.checkpoint_every}"),
            (0.0 <= self.oversample_foreground <= 1.0, "oversample_foreground must be in [0, 1]"),
            (self.plateau_interval >= 1, "plateau_interval must be >= 1"),
            (self.plateau_patience >= 0, "plateau_patience must be >= 0"),
            (0.0 < self.plateau_factor < 1.0, "plateau_factor must be in (0, 1)"),
            (self.min_lr >= 0, "min_lr must be >= 0"),
            (self.lr_schedule in LR_SCHEDULES, f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}"),
        ]
        require(checks)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a JSON-ready dict (``batch_dice``, ``lr_schedule`` only when set)."""
        return recorded_dict(self, *_RECORDED_WHEN_SET)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build from :meth:`to_dict` output.

        Raises:
            ConfigError: an unknown key or an invalid value.
        """
        return config_from_mapping(cls, data, "training")
