"""nnU-Net's 3-D U-Net through MONAI, its encoder/decoder split and freezing (METHOD section 6).

The network is MONAI's ``DynUNet`` configured as nnU-Net configures its plain 3-D U-Net:
kernel 3, one stride per resolution level planned from the patch size and the voxel spacing
(:func:`plan_strides`), transposed-convolution up-sampling with kernel = stride, instance
normalisation (affine, as nnU-Net), leaky ReLU (slope 0.01), filters doubling per level from
a base and capped (nnU-Net: 32 -> 320), optional deep supervision.

Two presets:

* ``"nnunet"``: nnU-Net-sized, patch (128, 128, 128), filters 32, 64, 128, 256, 320, 320, for
  a GPU.
* ``"cpu"``: patch (32, 32, 32), filters 16, 32, 64, 128 (four levels).

How the CPU preset was chosen: step time (forward + backward + Adam step, batch 2, 32^3,
Dice + CE, median of 10 steps after warm-up) on the 2-core development machine, 2 threads /
1 thread:

====================================  ==========  =========  ========
network                               parameters  2 threads  1 thread
====================================  ==========  =========  ========
DynUNet 8-16-32-64                    0.35 M      118 ms     205 ms
DynUNet 16-32-64-128 (chosen)         1.40 M      259 ms     483 ms
DynUNet 32-64-128-256                 5.60 M      752 ms     1.44 s
MONAI UNet 16-128, 2 residual units   1.19 M       50 ms      81 ms
MONAI UNet 16-256, 2 residual units   4.81 M       74 ms     102 ms
====================================  ==========  =========  ========

DynUNet 16-128 is the nnU-Net architecture at the capacity of the pilot network of METHOD
section 6 (UNet 16-128, 1.2 M parameters), on which the fine-tuning recipe was validated; a
150-step fine-tuning takes about 40 s and a 1000-step pre-training about 4-5 min. Pass
``filters=(8, 16, 32, 64)`` to halve that. MONAI's UNet is faster because its first
convolution already has stride 2 (it never convolves at full resolution); it stays available
as ``architecture="unet"``. On one H200 the ``"nnunet"`` preset (31 M parameters, 128^3, bf16
autocast) takes 0.083 s per step, 5 GiB peak memory.

Encoder and decoder (the split used to freeze the encoder when fine-tuning along a path):

* ``DynUNet``: encoder = ``input_block``, ``downsamples``, ``bottleneck``; decoder =
  ``upsamples``, ``output_block`` and ``deep_supervision_heads``. (DynUNet also registers the
  same modules a second time under ``skip_layers``; ``named_parameters`` reports each tensor
  once, under the names above, which are registered first.)
* MONAI ``UNet``: encoder = the down-sampling block of every level and the bottom block;
  decoder = every up-sampling block (the last of which produces the output).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from monai.networks.layers import SkipConnection
from monai.networks.nets import DynUNet, UNet
from torch import nn

from seqtransfer.core.config import reject_unknown_keys
from seqtransfer.core.errors import ConfigError

PRESETS: dict[str, dict[str, Any]] = {
    "nnunet": {"patch_size": (128, 128, 128), "base_filters": 32, "max_filters": 320},
    "cpu": {"patch_size": (32, 32, 32), "base_filters": 16, "max_filters": 128},
}
ARCHITECTURES = ("dynunet", "unet")

Stride = tuple[int, int, int]


def plan_strides(
    patch_size: Sequence[int],
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    min_feature_size: int = 4,
    max_levels: int = 6,
) -> list[Stride]:
    """Plan the stride of every resolution level as nnU-Net plans its pooling.

    This is the rule of nnU-Net v2's ``get_pool_and_conv_props`` (with
    ``min_feature_map_size = 4``), with the total number of levels capped:

    1. Level 0 has stride 1 on every axis (full resolution).
    2. Another level is added while fewer than ``max_levels`` exist. An axis is halved in it
       when (a) its current feature-map edge is at least ``2 * min_feature_size`` (so it
       stays >= ``min_feature_size`` after halving) and (b) its current spacing is less
       than twice the smallest current spacing among the axes that pass (a) (nnU-Net's strict
       ``< 2``). Halving doubles the axis' spacing and takes ``ceil(edge / 2)``.
    3. When a single axis passes, it is halved only if its edge is at least
       ``3 * min_feature_size`` (nnU-Net's guard against one-axis levels on small maps).
    4. Planning stops when no axis can be halved.

    So an anisotropic volume (spacing (3, 1, 1)) keeps stride 1 on its coarse axis until the
    halving of the fine axes has brought their spacing within a factor of 2 of it.

    Args:
        patch_size: edge of the network input per axis (voxels).
        spacing: voxel spacing per axis (mm).
        min_feature_size: smallest feature-map edge allowed at the bottleneck.
        max_levels: most resolution levels, the full-resolution level included.

    Returns:
        One stride per level (3 ints each, 1 or 2); the first is ``(1, 1, 1)``.

    Raises:
        ConfigError: a patch edge or spacing is not positive, the lengths differ from 3, or
            ``min_feature_size`` / ``max_levels`` is below 1.
    """
    size = [int(s) for s in patch_size]
    space = [float(s) for s in spacing]
    if len(size) != 3 or len(space) != 3:
        raise ConfigError(f"patch_size and spacing need 3 values each, got {tuple(patch_size)} and {tuple(spacing)}")
    if any(s < 1 for s in size):
        raise ConfigError(f"patch_size must be positive, got {tuple(patch_size)}")
    if any(not math.isfinite(s) or s <= 0 for s in space):
        raise ConfigError(f"spacing must be positive and finite, got {tuple(spacing)}")
    if min_feature_size < 1 or max_levels < 1:
        raise ConfigError(f"min_feature_size and max_levels must be >= 1, got {min_feature_size}, {max_levels}")
    strides: list[Stride] = [(1, 1, 1)]
    while len(strides) < max_levels:
        large = [a for a in range(3) if size[a] >= 2 * min_feature_size]
        if not large:
            break
        finest = min(space[a] for a in large)
        axes = [a for a in large if space[a] / finest < 2]
        if len(axes) == 1 and size[axes[0]] < 3 * min_feature_size:
            break
        stride = [1, 1, 1]
        for a in axes:
            stride[a] = 2
            space[a] *= 2
            size[a] = math.ceil(size[a] / 2)
        strides.append((stride[0], stride[1], stride[2]))
    return strides


def total_stride(strides: Sequence[Sequence[int]]) -> tuple[int, int, int]:
    """Product of the strides per axis: the patch edge must be divisible by it."""
    out = [1, 1, 1]
    for s in strides:
        for a in range(3):
            out[a] *= int(s[a])
    return (out[0], out[1], out[2])


def nnunet_filters(levels: int, base: int = 32, cap: int = 320) -> tuple[int, ...]:
    """Filters per level as nnU-Net sets them: ``min(base * 2**i, cap)``."""
    return tuple(min(base * 2**i, cap) for i in range(levels))


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
        strides = plan_strides(patch, self.spacing, max_levels=self.max_levels)
        if len(strides) < 2:
            raise ConfigError(f"patch_size {patch} is too small for a U-Net: no axis can be halved")
        div = total_stride(strides)
        if any(p % d for p, d in zip(patch, div, strict=True)):
            suggestion = tuple(math.ceil(p / d) * d for p, d in zip(patch, div, strict=True))
            raise ConfigError(
                f"patch_size {patch} is not divisible by the planned total stride {div}; use e.g. {suggestion}"
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
    def strides(self) -> list[Stride]:
        """The planned stride of every level (:func:`plan_strides`)."""
        assert self.patch_size is not None
        return plan_strides(self.patch_size, self.spacing, max_levels=self.max_levels)

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration as a JSON-ready dict."""
        out = asdict(self)
        for key in ("patch_size", "spacing", "filters"):
            out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkConfig:
        """Build from :meth:`to_dict` output.

        Raises:
            ConfigError: an unknown key or an invalid value.
        """
        reject_unknown_keys(cls, data, "network")
        kwargs = dict(data)
        for key in ("patch_size", "spacing", "filters"):
            if kwargs.get(key) is not None:
                kwargs[key] = tuple(kwargs[key])
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid network parameters: {exc}") from exc


def deep_supervision_heads(levels: int) -> int:
    """Number of extra deep-supervision outputs for ``levels`` resolution levels.

    nnU-Net outputs a segmentation at every decoder level (``levels - 1``) and gives the
    lowest one weight 0, so ``levels - 2`` outputs count: the main one plus ``levels - 3``
    heads (at least one).
    """
    return max(1, levels - 3)


def build_network(config: NetworkConfig, generator: torch.Generator | None = None) -> nn.Module:
    """Build the segmentation network of ``config``.

    Weights are initialised from a seed drawn from ``generator`` inside
    ``torch.random.fork_rng``, so the global torch random state is left as it was.

    Args:
        config: the network configuration.
        generator: source of the initialisation seed; a fresh unseeded draw when None.

    Returns:
        The network (on the CPU, in training mode). Its output is ``[B, out_channels, ...]``
        logits; a deeply supervised DynUNet in training mode returns
        ``[B, 1 + heads, out_channels, ...]`` (heads interpolated to full resolution).
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    strides = config.strides
    assert config.filters is not None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if config.architecture == "dynunet":
            return DynUNet(
                spatial_dims=3,
                in_channels=config.in_channels,
                out_channels=config.out_channels,
                kernel_size=[3] * len(strides),
                strides=strides,
                upsample_kernel_size=strides[1:],
                filters=list(config.filters),
                norm_name=("instance", {"affine": True}),
                act_name=("leakyrelu", {"inplace": True, "negative_slope": 0.01}),
                deep_supervision=config.deep_supervision,
                deep_supr_num=deep_supervision_heads(len(strides)),
            )
        return UNet(
            spatial_dims=3,
            in_channels=config.in_channels,
            out_channels=config.out_channels,
            channels=config.filters,
            strides=strides[1:],
            num_res_units=2,
            norm="instance",
        )


def _unet_encoder_prefixes(model: UNet) -> tuple[str, ...]:
    prefixes: list[str] = []
    node: nn.Module = model.model
    path = "model"
    while isinstance(node, nn.Sequential) and len(node) == 3 and isinstance(node[1], SkipConnection):
        prefixes.append(f"{path}.0")
        path = f"{path}.1.submodule"
        node = node[1].submodule
    prefixes.append(path)  # the bottom block
    return tuple(prefixes)


def encoder_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Names of the modules that form the encoder (see the module docstring).

    Raises:
        TypeError: the model is neither a MONAI ``DynUNet`` nor a MONAI ``UNet``.
    """
    if isinstance(model, DynUNet):
        return ("input_block", "downsamples", "bottleneck")
    if isinstance(model, UNet):
        return _unet_encoder_prefixes(model)
    raise TypeError(f"no encoder/decoder split is defined for {type(model).__name__}")


def _in_encoder(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def encoder_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The encoder's parameters by name, in registration order."""
    prefixes = encoder_prefixes(model)
    return {n: p for n, p in model.named_parameters() if _in_encoder(n, prefixes)}


def decoder_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The decoder's parameters by name (every parameter outside the encoder)."""
    prefixes = encoder_prefixes(model)
    return {n: p for n, p in model.named_parameters() if not _in_encoder(n, prefixes)}


def set_train_mode(model: nn.Module, frozen_encoder: bool) -> None:
    """Put ``model`` in training mode, keeping a frozen encoder's statistics fixed.

    With ``frozen_encoder``, every normalisation layer of the encoder that tracks running
    statistics (BatchNorm, or InstanceNorm with ``track_running_stats=True``) is put in eval
    mode, so fine-tuning neither updates its running mean/variance nor normalises with batch
    statistics the frozen weights never saw. nnU-Net's InstanceNorm keeps no running
    statistics and behaves identically in train and eval mode, so for the networks built
    here this is a no-op beyond ``model.train()`` (METHOD section 6, pilot findings).

    Args:
        model: the network.
        frozen_encoder: whether the encoder is frozen.
    """
    model.train()
    if not frozen_encoder:
        return
    prefixes = encoder_prefixes(model)
    for name, module in model.named_modules():
        is_norm = isinstance(module, nn.modules.batchnorm._NormBase)
        if is_norm and module.track_running_stats and _in_encoder(name, prefixes):
            module.eval()


def freeze_encoder(model: nn.Module) -> list[str]:
    """Freeze the encoder: ``requires_grad = False`` on its parameters.

    Also calls :func:`set_train_mode` with ``frozen_encoder=True``. Frozen parameters are
    left out of the optimizer by the trainer, so they stay bit-identical.

    Returns:
        The names of the frozen parameters.
    """
    frozen = encoder_parameters(model)
    for p in frozen.values():
        p.requires_grad_(False)
    set_train_mode(model, frozen_encoder=True)
    return list(frozen)


def select_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def autocast_context(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA (no gradient scaler needed); a null context elsewhere."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
