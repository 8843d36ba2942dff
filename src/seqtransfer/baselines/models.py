"""The networks of the MST and MTL baselines, built from nnU-Net's DynUNet (METHOD section 7).

DynUNet's forward pass is a recursion over skip layers; here it is unrolled into an encoder
(:func:`encode`: input block, down-sampling blocks, bottleneck, one feature map per level) and
a decoder (:func:`decode`: the up-sampling blocks, deepest first, each fed its level's skip),
so that features can be fused between networks or shared between heads.

* :class:`MultiSourceNet` (MST, multi-source transfer): the frozen encoders of the top-k
  source models run side by side; at every level their feature maps are concatenated and
  fused by a learned 1x1x1 convolution (initialised to their average) into the channels the
  decoder expects; the decoder (initialised from the best-ranked source) and the fusions are
  trained on the target.
* :class:`MultiTaskNet` (MTL): one shared encoder and decoder trunk with one output head
  (DynUNet's 1x1x1 output block) per task; head 0 is the target's, the one scored.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import cast

import torch
from monai.networks.nets import DynUNet
from torch import nn

from seqtransfer.core.errors import ConfigError


def _require_dynunet(model: nn.Module, what: str) -> DynUNet:
    if not isinstance(model, DynUNet):
        raise ConfigError(f"{what} needs the DynUNet architecture, got {type(model).__name__}")
    if model.deep_supervision:
        raise ConfigError(f"{what} needs a DynUNet without deep supervision")
    return model


def encode(model: DynUNet, x: torch.Tensor) -> list[torch.Tensor]:
    """Encoder features of every level: input block, each down-sampling block, the bottleneck."""
    feats = [model.input_block(x)]
    for down in model.downsamples:
        feats.append(down(feats[-1]))
    feats.append(model.bottleneck(feats[-1]))
    return feats


def decode(model: DynUNet, feats: Sequence[torch.Tensor]) -> torch.Tensor:
    """The decoder's full-resolution features (the input of the output block)."""
    out = feats[-1]
    for up, skip in zip(model.upsamples, reversed(feats[:-1]), strict=True):
        out = up(out, skip)
    return out


def penultimate(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per-voxel penultimate-layer features of a DynUNet (the output block's input)."""
    net = _require_dynunet(model, "penultimate features")
    return decode(net, encode(net, x))


class MultiSourceNet(nn.Module):
    """MST: frozen encoders of several sources fused per level by learned 1x1x1 convolutions.

    Args:
        sources: trained DynUNets (same configuration), best-ranked first; their encoders
            are copied and frozen, the first one's decoder is copied and trained.
    """

    def __init__(self, sources: Sequence[nn.Module]) -> None:
        super().__init__()
        if not sources:
            raise ConfigError("MST needs at least one source model")
        nets = [_require_dynunet(s, "MST") for s in sources]
        self.encoders = nn.ModuleList(
            nn.ModuleDict(
                {
                    "input_block": copy.deepcopy(n.input_block),
                    "downsamples": copy.deepcopy(n.downsamples),
                    "bottleneck": copy.deepcopy(n.bottleneck),
                }
            )
            for n in nets
        )
        for p in self.encoders.parameters():
            p.requires_grad_(False)
        filters = list(nets[0].filters)
        k = len(nets)
        self.fuse = nn.ModuleList()
        for channels in filters:
            conv = nn.Conv3d(k * channels, channels, kernel_size=1, bias=True)
            with torch.no_grad():  # start as the average of the sources' features
                conv.weight.zero_()
                bias = conv.bias
                assert bias is not None  # bias=True above
                bias.zero_()
                for i in range(k):
                    conv.weight[:, i * channels : (i + 1) * channels, 0, 0, 0] = torch.eye(channels) / k
            self.fuse.append(conv)
        self.upsamples = copy.deepcopy(nets[0].upsamples)
        self.output_block = copy.deepcopy(nets[0].output_block)

    def _encode(self, index: int, x: torch.Tensor) -> list[torch.Tensor]:
        enc = cast(nn.ModuleDict, self.encoders[index])
        feats = [enc["input_block"](x)]
        for down in cast(nn.ModuleList, enc["downsamples"]):
            feats.append(down(feats[-1]))
        feats.append(enc["bottleneck"](feats[-1]))
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_source = [self._encode(i, x) for i in range(len(self.encoders))]
        fused = [conv(torch.cat([f[level] for f in per_source], dim=1)) for level, conv in enumerate(self.fuse)]
        out = fused[-1]
        for up, skip in zip(self.upsamples, reversed(fused[:-1]), strict=True):
            out = up(out, skip)
        return self.output_block(out)

    def encoder_state(self) -> dict[str, torch.Tensor]:
        """Copies of the frozen encoders' parameters (to check they never move)."""
        return {n: p.detach().clone() for n, p in self.encoders.named_parameters()}


class MultiTaskNet(nn.Module):
    """MTL: a shared DynUNet trunk with one output head per task (head 0: the target).

    Args:
        base: the DynUNet whose encoder and decoder are shared.
        n_tasks: number of heads.
    """

    def __init__(self, base: nn.Module, n_tasks: int) -> None:
        super().__init__()
        if n_tasks < 1:
            raise ConfigError("MTL needs at least one task")
        self.trunk = _require_dynunet(base, "MTL")
        self.heads = nn.ModuleList(copy.deepcopy(self.trunk.output_block) for _ in range(n_tasks))
        for i, head in enumerate(self.heads):  # distinct initialisations, from a seeded stream
            if i:
                gen = torch.Generator().manual_seed(1000 + i)
                for p in head.parameters():
                    with torch.no_grad():
                        p.copy_(torch.empty_like(p).uniform_(-0.1, 0.1, generator=gen))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The shared full-resolution features."""
        return decode(self.trunk, encode(self.trunk, x))

    def forward(self, x: torch.Tensor, task: int = 0) -> torch.Tensor:
        return self.heads[task](self.features(x))
