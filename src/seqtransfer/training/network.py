"""nnU-Net's 3-D U-Net through MONAI, its encoder/decoder split and freezing (METHOD section 6).

The network is MONAI's ``DynUNet`` configured as nnU-Net configures its plain 3-D U-Net:
kernel 3, one stride per resolution level planned from the patch size and the voxel spacing
(:func:`plan_strides`), transposed-convolution up-sampling with kernel = stride, instance
normalisation (affine, as nnU-Net), leaky ReLU (slope 0.01), filters doubling per level from
a base and capped (nnU-Net: 32 -> 320), optional deep supervision. A configuration may
instead give every level's kernel and stride (an imported nnU-Net plan's, see
:mod:`seqtransfer.nnunet`): then each decoder block convolves with its own level's kernel, as
nnU-Net's decoder does (:class:`LevelKernelDynUNet`).

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
from collections.abc import Sequence
from typing import Any, cast

import torch
from monai.networks.blocks.dynunet_block import UnetUpBlock
from monai.networks.layers import SkipConnection
from monai.networks.nets import DynUNet, UNet
from torch import nn

from seqtransfer.training.config import NetworkConfig


def deep_supervision_heads(levels: int) -> int:
    """Number of extra deep-supervision outputs for ``levels`` resolution levels.

    nnU-Net outputs a segmentation at every decoder level (``levels - 1``) and gives the
    lowest one weight 0, so ``levels - 2`` outputs count: the main one plus ``levels - 3``
    heads (at least one).
    """
    return max(1, levels - 3)


class LevelKernelDynUNet(DynUNet):
    """MONAI's ``DynUNet`` whose decoder block at each level convolves with that level's kernel.

    MONAI's decoder block that receives level ``i``'s skip connection uses the kernel of
    level ``i + 1`` (the one below); nnU-Net's ``UNetDecoder`` uses level ``i``'s own kernel
    (``encoder.kernel_sizes[-(s + 2)]`` for decoder stage ``s``). The two agree when every
    level has the same kernel (the planned networks: kernel 3), and differ for an nnU-Net
    plan with an anisotropic kernel such as ``(1, 3, 3)`` at the top levels: this class
    builds nnU-Net's decoder, so such a plan's weights fit. Modules, names and the order in
    which they are created (hence a seeded initialisation) are MONAI's.
    """

    def get_upsamples(self) -> nn.ModuleList:
        """The up-sampling blocks, deepest first, each with the kernel of the level it returns to."""
        inp, out = list(self.filters[1:][::-1]), list(self.filters[:-1][::-1])
        strides, kernel_size = self.strides[1:][::-1], self.kernel_size[:-1][::-1]
        upsample_kernel_size = self.upsample_kernel_size[::-1]
        return self.get_module_list(
            inp,
            out,
            kernel_size,
            strides,
            UnetUpBlock,  # type: ignore[arg-type]  # MONAI annotates the block as nn.Module
            upsample_kernel_size,
            trans_bias=self.trans_bias,
        )


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
    strides = config.level_strides
    assert config.filters is not None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if config.architecture == "dynunet":
            # kernel 3 everywhere: MONAI's DynUNet as it is; given kernels: nnU-Net's decoder rule
            network_class = DynUNet if config.kernel_sizes is None else LevelKernelDynUNet
            return network_class(
                spatial_dims=3,
                in_channels=config.in_channels,
                out_channels=config.out_channels,
                kernel_size=config.level_kernel_sizes,
                strides=strides,
                upsample_kernel_size=strides[1:],
                filters=list(config.filters),
                norm_name=("instance", {"affine": True}),
                act_name=("leakyrelu", {"inplace": True, "negative_slope": 0.01}),
                deep_supervision=config.deep_supervision,
                deep_supr_num=deep_supervision_heads(len(strides)),
                trans_bias=config.trans_bias,
            )
        return UNet(
            spatial_dims=3,
            in_channels=config.in_channels,
            out_channels=config.out_channels,
            channels=config.filters,
            # MONAI's UNet takes a per-axis stride for each level too; its annotation says int
            strides=cast(Sequence[int], strides[1:]),
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
