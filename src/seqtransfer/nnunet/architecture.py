"""nnU-Net's ``PlainConvUNet`` as seqtransfer's ``DynUNet``: the plan, the axes, the weights.

A trained nnU-Net v2 ``3d_fullres`` model is a ``PlainConvUNet`` of
``dynamic_network_architectures`` built from ``plans.json``
(``configurations.3d_fullres.architecture``). With two convolutions per stage in the encoder
and the decoder, instance normalisation (affine), leaky ReLU and no dropout it is, layer for
layer, MONAI's ``DynUNet`` as :func:`~seqtransfer.training.network.build_network` builds it
from a :class:`~seqtransfer.training.config.NetworkConfig` with the plan's kernels and strides:

==========================================  ==============================================
nnU-Net                                     DynUNet
==========================================  ==============================================
``encoder.stages[0]``                       ``input_block``
``encoder.stages[i]``, ``0 < i < n - 1``    ``downsamples[i - 1]``
``encoder.stages[n - 1]``                   ``bottleneck``
``decoder.transpconvs[s]``                  ``upsamples[s].transp_conv`` (with its bias)
``decoder.stages[s]``                       ``upsamples[s].conv_block``
``decoder.seg_layers[n - 2]``               ``output_block``
``decoder.seg_layers[s]``, ``s < n - 2``    dropped: deep-supervision heads
==========================================  ==============================================

nnU-Net's convolutions before a normalisation carry a bias, DynUNet's do not: instance
normalisation subtracts each channel's mean over the volume, which removes a per-channel
constant exactly, so the bias changes nothing and is dropped (the tests check the outputs).

Axes: seqtransfer reads NIfTI through nibabel, whose arrays are ``(x, y, z)``; nnU-Net's
default reader for NIfTI (``SimpleITKIO``) gives ``(z, y, x)``, and the plans may transpose
the axes again (``transpose_forward``). Each of our axes is one of the network's; kernels,
strides, the patch size, the spacing and every convolution weight are permuted accordingly.
``NibabelIO`` keeps nibabel's order; a reader that reorients (``NibabelIOWithReorient``) or
reads other files has no fixed correspondence and is refused.

No nnU-Net code is imported: the plans and dataset are JSON, the checkpoint is read with
``torch.load(weights_only=True)`` and the few numpy types nnU-Net's trainer pickles
(:func:`load_nnunet_checkpoint`).
"""

from __future__ import annotations

import logging
import math
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqtransfer.core.errors import ConfigError, StoreError
from seqtransfer.nnunet.results import CONFIGURATION, NotImportable
from seqtransfer.training.config import NetworkConfig
from seqtransfer.training.network import build_network

logger = logging.getLogger(__name__)

__all__ = [
    "ImportedNetwork",
    "PlainUNetPlan",
    "import_network",
    "load_nnunet_checkpoint",
    "map_weights",
    "network_axes",
    "plain_unet_plan",
]

#: readers whose arrays are nibabel's axes reversed, or in nibabel's order
_REVERSING_READERS = ("SimpleITKIO",)
_KEEPING_READERS = ("NibabelIO",)
#: normalisation schemes close to seqtransfer's z-score inside the nonzero voxels
_ZSCORE = "ZScoreNormalization"


@dataclass(frozen=True)
class PlainUNetPlan:
    """The parts of an nnU-Net ``PlainConvUNet`` plan that decide the weights' shapes.

    Every per-level value is in the network's axis order (nnU-Net's arrays after
    ``transpose_forward``).

    Attributes:
        features: output channels of every stage.
        kernel_sizes: the convolution kernel of every stage.
        strides: the stride of every stage (its first convolution's).
        conv_bias: whether the convolutions (and transposed convolutions) carry a bias.
    """

    features: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, int, int], ...]
    strides: tuple[tuple[int, int, int], ...]
    conv_bias: bool

    @property
    def n_stages(self) -> int:
        """Resolution levels."""
        return len(self.features)


@dataclass(frozen=True)
class ImportedNetwork:
    """An nnU-Net model as a seqtransfer network.

    Attributes:
        config: the network configuration (preset ``nnunet``, the plan's levels in our axes).
        state: the weights, as ``build_network(config).state_dict()`` names them.
        reader: nnU-Net's image reader of the dataset.
        axes: for each of our axes (x, y, z) the network axis it is.
        normalization: nnU-Net's normalisation scheme of the channel.
        warnings: what differs from a model trained by seqtransfer, one line each.
    """

    config: NetworkConfig
    state: dict[str, torch.Tensor]
    reader: str
    axes: tuple[int, int, int]
    normalization: str
    warnings: tuple[str, ...]


def _numpy_globals() -> list[Any]:
    """The numpy types nnU-Net's checkpoints pickle (``_best_ema`` and the logged Dice are
    numpy scalars): the scalar constructor, under numpy 2's and numpy 1's module names, and
    the numeric dtypes. Constructing these runs no code from the file."""
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    dtypes = {type(np.dtype(code)) for code in "?bhilqBHILQefd"}
    return [
        (scalar, "numpy._core.multiarray.scalar"),
        (scalar, "numpy.core.multiarray.scalar"),
        np.dtype,
        *sorted(dtypes, key=lambda t: t.__name__),
    ]


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else ""
    first = first if len(first) <= 160 else first[:157] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _foreign_globals(file: Path) -> list[str]:
    """The globals a checkpoint pickles beyond torch's safe ones and nnU-Net's numpy numbers."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(file)
    except Exception:  # noqa: BLE001 - a damaged file: no names to give
        return []
    allowed = {name for entry in _numpy_globals() for name in _global_names(entry)}
    return [n for n in names if n not in allowed]


def _global_names(entry: Any) -> list[str]:
    if isinstance(entry, tuple):
        return [entry[1]]
    return [f"{entry.__module__}.{entry.__qualname__}"]


def load_nnunet_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read an nnU-Net v2 ``checkpoint_final.pth`` safely (``weights_only``), on the CPU.

    Raises:
        StoreError: the file is missing, corrupt, holds other Python objects than tensors,
            containers and numpy numbers, or has no ``network_weights``.
    """
    file = Path(path)
    if not file.is_file():
        raise StoreError(f"{file}: checkpoint not found")
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        foreign = _foreign_globals(file)
        if foreign:  # a readable file that pickles other objects: loading them could run code
            raise StoreError(
                f"{file}: the checkpoint holds Python objects that are not loaded without running code from it "
                f"({', '.join(foreign[:3])})"
            ) from exc
        raise StoreError(f"{file}: corrupt or unreadable nnU-Net checkpoint ({_one_line(exc)})") from exc
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        raise StoreError(f"{file}: corrupt or unreadable nnU-Net checkpoint ({_one_line(exc)})") from exc
    if not isinstance(state, dict) or not isinstance(state.get("network_weights"), Mapping):
        raise StoreError(f"{file}: not an nnU-Net checkpoint (no network_weights)")
    return state


def _class_name(value: Any) -> str:
    """``"torch.nn.modules.conv.Conv3d"`` -> ``"Conv3d"`` (plans name classes by dotted path)."""
    return str(value).rsplit(".", 1)[-1] if value is not None else "None"


def _per_stage(value: Any, n: int, what: str) -> list[Any]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [value] * n
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise NotImportable(f"plans: {what} must have one entry per stage ({n}), got {value!r}")
    return list(value)


def _triple(value: Any, what: str) -> tuple[int, int, int]:
    values = [value] * 3 if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(values, (list, tuple)) or len(values) != 3 or not all(isinstance(v, int) for v in values):
        raise NotImportable(f"plans: {what} must be 3 integers per stage (a 3-D network), got {value!r}")
    return (int(values[0]), int(values[1]), int(values[2]))


def _architecture_kwargs(configuration: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The network class name and its keyword arguments, from the plans' current format
    (``architecture``) or the format of nnU-Net v2 before 2.4 (``UNet_class_name`` ...)."""
    arch = configuration.get("architecture")
    if isinstance(arch, Mapping):
        return str(arch.get("network_class_name", "")), dict(arch.get("arch_kwargs") or {})
    if "UNet_class_name" in configuration:  # nnU-Net v2 < 2.4: plain U-Net settings, fixed norm and nonlinearity
        n = len(configuration.get("conv_kernel_sizes") or [])
        base = int(configuration.get("UNet_base_num_features", 32))
        cap = int(configuration.get("unet_max_num_features", 320))
        return str(configuration["UNet_class_name"]), {
            "n_stages": n,
            "features_per_stage": [min(base * 2**i, cap) for i in range(n)],
            "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": configuration.get("conv_kernel_sizes"),
            "strides": configuration.get("pool_op_kernel_sizes"),
            "n_conv_per_stage": configuration.get("n_conv_per_stage_encoder"),
            "n_conv_per_stage_decoder": configuration.get("n_conv_per_stage_decoder"),
            "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-5, "affine": True},
            "dropout_op": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        }
    raise NotImportable("plans: the configuration names no network architecture")


def plain_unet_plan(configuration: Mapping[str, Any]) -> PlainUNetPlan:
    """The ``PlainConvUNet`` of a plans configuration, when DynUNet can reproduce it exactly.

    Args:
        configuration: ``plans["configurations"]["3d_fullres"]``.

    Raises:
        NotImportable: another architecture (a residual encoder, ...), another number of
            convolutions per stage, another normalisation or nonlinearity, dropout, pooling
            instead of strided convolutions, fewer than 3 stages; the message says which.
    """
    name, kwargs = _architecture_kwargs(configuration)
    short = _class_name(name)
    if short != "PlainConvUNet":
        raise NotImportable(f"architecture {short}: only nnU-Net's PlainConvUNet maps onto DynUNet")
    n = kwargs.get("n_stages")
    if not isinstance(n, int) or n < 3:
        raise NotImportable(f"PlainConvUNet with {n!r} stages: DynUNet needs at least 3")
    if _class_name(kwargs.get("conv_op")) != "Conv3d":
        raise NotImportable(f"conv_op {_class_name(kwargs.get('conv_op'))}: only 3-D networks are imported")
    encoder_convs = _per_stage(kwargs.get("n_conv_per_stage"), n, "n_conv_per_stage")
    decoder_convs = _per_stage(kwargs.get("n_conv_per_stage_decoder"), n - 1, "n_conv_per_stage_decoder")
    if any(c != 2 for c in encoder_convs) or any(c != 2 for c in decoder_convs):
        raise NotImportable(
            f"n_conv_per_stage {encoder_convs} / decoder {decoder_convs}: DynUNet has 2 convolutions per stage"
        )
    norm = _class_name(kwargs.get("norm_op"))
    norm_kwargs = dict(kwargs.get("norm_op_kwargs") or {})
    if norm != "InstanceNorm3d" or not norm_kwargs.get("affine", False):
        raise NotImportable(f"norm_op {norm} {norm_kwargs}: DynUNet's is InstanceNorm3d with affine parameters")
    if norm_kwargs.get("track_running_stats", False) or not math.isclose(float(norm_kwargs.get("eps", 1e-5)), 1e-5):
        raise NotImportable(f"norm_op_kwargs {norm_kwargs}: DynUNet's instance norm has eps 1e-5, no running stats")
    dropout = kwargs.get("dropout_op")
    dropout_p = float((kwargs.get("dropout_op_kwargs") or {}).get("p", 0.0))
    if dropout is not None and dropout_p > 0:
        raise NotImportable(f"dropout {_class_name(dropout)} p={dropout_p}: DynUNet is built without dropout")
    nonlin = _class_name(kwargs.get("nonlin"))
    slope = float((kwargs.get("nonlin_kwargs") or {}).get("negative_slope", 0.01))
    if nonlin != "LeakyReLU" or not math.isclose(slope, 0.01):
        raise NotImportable(f"nonlin {nonlin} (slope {slope:g}): DynUNet uses LeakyReLU with slope 0.01")
    if kwargs.get("nonlin_first", False):
        raise NotImportable("nonlin_first: DynUNet normalises before the nonlinearity")
    if kwargs.get("pool", "conv") != "conv":
        raise NotImportable(f"pool {kwargs.get('pool')!r}: DynUNet down-samples with strided convolutions")
    features = tuple(int(f) for f in _per_stage(kwargs.get("features_per_stage"), n, "features_per_stage"))
    kernels = tuple(_triple(k, "kernel_sizes") for k in _per_stage(kwargs.get("kernel_sizes"), n, "kernel_sizes"))
    strides = tuple(_triple(s, "strides") for s in _per_stage(kwargs.get("strides"), n, "strides"))
    if any(v not in (1, 2) for s in strides for v in s):
        raise NotImportable(f"strides {[list(s) for s in strides]}: DynUNet reproduces nnU-Net's padding for 1 and 2")
    if any(k % 2 == 0 for kernel in kernels for k in kernel):
        raise NotImportable(f"kernel_sizes {[list(k) for k in kernels]}: even kernels are not centred")
    return PlainUNetPlan(features, kernels, strides, bool(kwargs.get("conv_bias", False)))


def image_reader(plans: Mapping[str, Any], dataset_json: Mapping[str, Any]) -> str:
    """The reader nnU-Net used: the plans' ``image_reader_writer``, else the dataset's
    ``overwrite_image_reader_writer``, else nnU-Net's choice for NIfTI (``SimpleITKIO``)."""
    for value in (plans.get("image_reader_writer"), dataset_json.get("overwrite_image_reader_writer")):
        if value:
            return _class_name(value)
    return "SimpleITKIO"


def network_axes(plans: Mapping[str, Any], dataset_json: Mapping[str, Any]) -> tuple[str, tuple[int, int, int]]:
    """nnU-Net's reader and, for each of our axes (nibabel's x, y, z), the network axis it is.

    The reader's array axis ``r`` is nibabel's ``2 - r`` for ``SimpleITKIO`` and ``r`` for
    ``NibabelIO``; the network's axis ``i`` is the reader's ``transpose_forward[i]``.

    Raises:
        NotImportable: another reader, or a ``transpose_forward`` that is not a permutation.
    """
    reader = image_reader(plans, dataset_json)
    if reader not in _REVERSING_READERS + _KEEPING_READERS:
        raise NotImportable(
            f"image reader {reader}: only SimpleITKIO (axes reversed) and NibabelIO (axes kept) read NIfTI "
            "in a fixed axis order that seqtransfer's nibabel arrays can follow"
        )
    transpose = list(plans.get("transpose_forward", [0, 1, 2]))
    if sorted(transpose) != [0, 1, 2]:
        raise NotImportable(f"plans: transpose_forward {transpose} is not a permutation of the 3 axes")
    reader_axis = [2 - a for a in range(3)] if reader in _REVERSING_READERS else [0, 1, 2]
    axes = tuple(transpose.index(reader_axis[a]) for a in range(3))
    return reader, (axes[0], axes[1], axes[2])


def _ours(values: Sequence[Any], axes: Sequence[int]) -> tuple[Any, Any, Any]:
    """A per-axis value in the network's order, in ours."""
    return (values[axes[0]], values[axes[1]], values[axes[2]])


def _weight(tensor: torch.Tensor, axes: Sequence[int]) -> torch.Tensor:
    """A (transposed) convolution weight ``[a, b, d0, d1, d2]`` with its spatial axes in our order."""
    return tensor.permute(0, 1, 2 + axes[0], 2 + axes[1], 2 + axes[2]).contiguous()


def _level_prefix(level: int, n_stages: int) -> str:
    if level == 0:
        return "input_block"
    if level == n_stages - 1:
        return "bottleneck"
    return f"downsamples.{level - 1}"


def _strip_wrappers(weights: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict without the prefixes of ``torch.compile`` and DDP wrappers."""
    out = {}
    for key, value in weights.items():
        name = str(key)
        for prefix in ("_orig_mod.", "module."):
            name = name.removeprefix(prefix)
        out[name] = value
    return out


def map_weights(weights: Mapping[str, Any], plan: PlainUNetPlan, axes: Sequence[int]) -> dict[str, torch.Tensor]:
    """nnU-Net's ``PlainConvUNet`` weights under DynUNet's parameter names, in our axes.

    Convolution biases before an instance norm are left out (the norm cancels them); the
    deep-supervision heads are left out.

    Args:
        weights: the checkpoint's ``network_weights``.
        plan: its plan (:func:`plain_unet_plan`).
        axes: for each of our axes the network axis (:func:`network_axes`).

    Returns:
        ``{DynUNet parameter name: tensor}`` for every parameter of the DynUNet.

    Raises:
        NotImportable: a weight the plan calls for is missing or has another shape.
    """
    source = _strip_wrappers(weights)
    n = plan.n_stages
    pairs: list[tuple[str, str, bool]] = []  # (nnU-Net name, DynUNet name, spatial weight)
    for level in range(n):
        ours = _level_prefix(level, n)
        for j in range(2):
            theirs = f"encoder.stages.{level}.0.convs.{j}"
            pairs += [
                (f"{theirs}.conv.weight", f"{ours}.conv{j + 1}.conv.weight", True),
                (f"{theirs}.norm.weight", f"{ours}.norm{j + 1}.weight", False),
                (f"{theirs}.norm.bias", f"{ours}.norm{j + 1}.bias", False),
            ]
    for s in range(n - 1):
        pairs.append((f"decoder.transpconvs.{s}.weight", f"upsamples.{s}.transp_conv.conv.weight", True))
        if plan.conv_bias:
            pairs.append((f"decoder.transpconvs.{s}.bias", f"upsamples.{s}.transp_conv.conv.bias", False))
        for j in range(2):
            theirs = f"decoder.stages.{s}.convs.{j}"
            ours = f"upsamples.{s}.conv_block"
            pairs += [
                (f"{theirs}.conv.weight", f"{ours}.conv{j + 1}.conv.weight", True),
                (f"{theirs}.norm.weight", f"{ours}.norm{j + 1}.weight", False),
                (f"{theirs}.norm.bias", f"{ours}.norm{j + 1}.bias", False),
            ]
    pairs += [
        (f"decoder.seg_layers.{n - 2}.weight", "output_block.conv.conv.weight", True),
        (f"decoder.seg_layers.{n - 2}.bias", "output_block.conv.conv.bias", False),
    ]
    missing = [theirs for theirs, _, _ in pairs if theirs not in source]
    if missing:
        raise NotImportable(f"checkpoint lacks {len(missing)} weight(s) of the plan's PlainConvUNet, e.g. {missing[0]}")
    out = {}
    for theirs, ours, spatial in pairs:
        tensor = source[theirs]
        if not isinstance(tensor, torch.Tensor):
            raise NotImportable(f"checkpoint: {theirs} is not a tensor")
        out[ours] = _weight(tensor, axes) if spatial else tensor.clone()
    return out


def _channels(weights: Mapping[str, Any], plan: PlainUNetPlan) -> tuple[int, int]:
    """Input channels and output classes, read from the first convolution and the last head."""
    source = _strip_wrappers(weights)
    first = source.get("encoder.stages.0.0.convs.0.conv.weight")
    head = source.get(f"decoder.seg_layers.{plan.n_stages - 2}.weight")
    if not isinstance(first, torch.Tensor) or not isinstance(head, torch.Tensor):
        raise NotImportable("checkpoint: the first convolution or the segmentation head is missing")
    return int(first.shape[1]), int(head.shape[0])


def _check_labels(dataset_json: Mapping[str, Any], out_channels: int) -> None:
    labels = dataset_json.get("labels")
    if isinstance(labels, Mapping) and any(isinstance(v, (list, tuple)) for v in labels.values()):
        raise NotImportable("region-based training (sigmoid outputs): seqtransfer's models are softmax over 2 classes")
    if out_channels != 2:
        raise NotImportable(
            f"{out_channels} output classes: the graph's tasks are binary (2 classes, background included)"
        )


def import_network(
    checkpoint: Mapping[str, Any], plans: Mapping[str, Any], dataset_json: Mapping[str, Any]
) -> ImportedNetwork:
    """A trained nnU-Net ``3d_fullres`` model as a seqtransfer network with its weights.

    Args:
        checkpoint: the checkpoint (:func:`load_nnunet_checkpoint`).
        plans: the model folder's ``plans.json``.
        dataset_json: the model folder's ``dataset.json``.

    Returns:
        The network configuration, the mapped weights (every key of
        ``build_network(config).state_dict()``) and what differs from a seqtransfer model.

    Raises:
        NotImportable: the model cannot be mapped exactly; one line says why.
    """
    configurations = plans.get("configurations")
    if not isinstance(configurations, Mapping) or CONFIGURATION not in configurations:
        raise NotImportable(f"plans: no {CONFIGURATION} configuration")
    configuration = configurations[CONFIGURATION]
    plan = plain_unet_plan(configuration)
    reader, axes = network_axes(plans, dataset_json)
    in_channels, out_channels = _channels(checkpoint["network_weights"], plan)
    if in_channels != 1:
        raise NotImportable(f"{in_channels} input channels: the graph's tasks are single-channel")
    _check_labels(dataset_json, out_channels)
    try:
        patch = _triple(list(configuration["patch_size"]), "patch_size")
        spacing = tuple(float(v) for v in configuration["spacing"])
    except (KeyError, TypeError, ValueError) as exc:
        raise NotImportable(f"plans: {CONFIGURATION} has no valid patch_size and spacing ({exc})") from exc
    if len(spacing) != 3:
        raise NotImportable(f"plans: {CONFIGURATION} spacing {list(spacing)} is not 3-D")
    try:
        config = NetworkConfig(
            preset="nnunet",
            in_channels=1,
            out_channels=2,
            patch_size=_ours(patch, axes),
            spacing=_ours(spacing, axes),
            filters=plan.features,
            deep_supervision=False,
            kernel_sizes=tuple(_ours(k, axes) for k in plan.kernel_sizes),
            strides=tuple(_ours(s, axes) for s in plan.strides),
            trans_bias=plan.conv_bias,
        )
    except ConfigError as exc:
        raise NotImportable(f"plans: {exc}") from exc
    mapped = map_weights(checkpoint["network_weights"], plan, axes)
    model = build_network(config, torch.Generator().manual_seed(0))
    params = dict(model.named_parameters())
    unmapped = sorted(set(params) - set(mapped))
    if unmapped:  # the mapping above covers DynUNet: a miss is a programming error
        raise RuntimeError(f"DynUNet parameters left unmapped: {unmapped[:3]}")
    with torch.no_grad():
        for name, tensor in mapped.items():
            if params[name].shape != tensor.shape:
                raise NotImportable(
                    f"checkpoint: {name} has shape {tuple(tensor.shape)}, "
                    f"the plan's network {tuple(params[name].shape)}"
                )
            params[name].copy_(tensor)
    schemes = list(configuration.get("normalization_schemes") or [_ZSCORE])
    normalization = str(schemes[0])
    warnings = []
    if normalization != _ZSCORE:
        warnings.append(
            f"normalisation {normalization}: seqtransfer z-scores each case inside its nonzero voxels, so the "
            "model's zero-shot outputs will differ from nnU-Net's (fine-tuning adapts)"
        )
    return ImportedNetwork(
        config=config,
        state={k: v.detach().clone() for k, v in model.state_dict().items()},
        reader=reader,
        axes=axes,
        normalization=normalization,
        warnings=tuple(warnings),
    )
