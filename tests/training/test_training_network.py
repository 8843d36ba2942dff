"""Network: nnU-Net stride planning, presets, encoder/decoder split, freezing, device."""

from __future__ import annotations

import contextlib

import pytest
import torch
from monai.networks.nets import DynUNet, UNet
from torch import nn

from seqtransfer.core.errors import ConfigError
from seqtransfer.training.config import NetworkConfig
from seqtransfer.training.network import (
    autocast_context,
    build_network,
    decoder_parameters,
    encoder_parameters,
    encoder_prefixes,
    freeze_encoder,
    select_device,
    set_train_mode,
)
from seqtransfer.training.plan import plan_strides, total_stride

ISO = (1, 1, 1)


@pytest.mark.parametrize(
    ("patch", "spacing", "expected"),
    [
        # 128 -> 64 -> 32 -> 16 -> 8 -> 4: five halvings, six levels (nnU-Net 3d_fullres)
        ((128, 128, 128), (1.0, 1.0, 1.0), [ISO] + [(2, 2, 2)] * 5),
        # the CPU preset: 32 -> 16 -> 8 -> 4
        ((32, 32, 32), (1.0, 1.0, 1.0), [ISO] + [(2, 2, 2)] * 3),
        ((16, 16, 16), (1.0, 1.0, 1.0), [ISO, (2, 2, 2), (2, 2, 2)]),
        # anisotropic: axis 0 (3 mm) waits until the in-plane spacing has reached 2 mm
        ((32, 128, 128), (3.0, 1.0, 1.0), [ISO, (1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2)]),
        # spacing ratio exactly 2 is not "< 2": one in-plane halving first
        ((64, 64, 64), (2.0, 1.0, 1.0), [ISO, (1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2)]),
        # a short axis stops halving at edge 4 while the others go on
        ((16, 64, 64), (1.0, 1.0, 1.0), [ISO, (2, 2, 2), (2, 2, 2), (1, 2, 2), (1, 2, 2)]),
        # a lone axis needs edge >= 12 (nnU-Net's 3 * min size guard)
        ((8, 8, 12), (1.0, 1.0, 1.0), [ISO, (2, 2, 2)]),
        ((8, 8, 24), (1.0, 1.0, 1.0), [ISO, (2, 2, 2), (1, 1, 2)]),
    ],
)
def test_plan_strides_follows_nnunet(patch, spacing, expected) -> None:
    assert plan_strides(patch, spacing) == expected


def test_plan_strides_caps_the_levels() -> None:
    assert len(plan_strides((256, 256, 256), max_levels=6)) == 6
    assert len(plan_strides((256, 256, 256), max_levels=3)) == 3


@pytest.mark.parametrize(
    ("patch", "spacing"),
    [((0, 32, 32), (1, 1, 1)), ((32, 32), (1, 1)), ((32, 32, 32), (1, 0, 1)), ((32, 32, 32), (1, float("nan"), 1))],
)
def test_plan_strides_rejects_bad_input(patch, spacing) -> None:
    with pytest.raises(ConfigError):
        plan_strides(patch, spacing)


def test_presets_resolve_patch_and_filters() -> None:
    cpu = NetworkConfig("cpu")
    assert cpu.patch_size == (32, 32, 32)
    assert cpu.filters == (16, 32, 64, 128)
    gpu = NetworkConfig("nnunet")
    assert gpu.patch_size == (128, 128, 128)
    assert gpu.filters == (32, 64, 128, 256, 320, 320)
    assert NetworkConfig.from_dict(gpu.to_dict()) == gpu


@pytest.mark.parametrize(
    "kwargs",
    [
        {"preset": "huge"},
        {"architecture": "vnet"},
        {"patch_size": (36, 36, 36)},  # not divisible by the planned total stride 8
        {"patch_size": (4, 4, 4)},
        {"filters": (8, 16)},  # 4 levels planned
        {"out_channels": 1},
        {"architecture": "unet", "deep_supervision": True},
    ],
)
def test_network_config_rejects(kwargs) -> None:
    with pytest.raises(ConfigError):
        NetworkConfig(**kwargs)


def test_indivisible_patch_message_suggests_a_size() -> None:
    with pytest.raises(ConfigError, match=r"\(40, 40, 40\)"):
        NetworkConfig("cpu", patch_size=(36, 36, 36))


def test_total_stride() -> None:
    assert total_stride(plan_strides((32, 128, 128), (3.0, 1.0, 1.0))) == (8, 32, 32)


def _tiny(**kwargs) -> NetworkConfig:
    return NetworkConfig("cpu", patch_size=(16, 16, 16), filters=(4, 8, 16), **kwargs)


def test_dynunet_is_configured_like_nnunet() -> None:
    model = build_network(_tiny(), torch.Generator().manual_seed(0))
    assert isinstance(model, DynUNet)
    norms = [m for m in model.modules() if isinstance(m, nn.InstanceNorm3d)]
    acts = [m for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert norms and all(n.affine and not n.track_running_stats for n in norms)
    assert acts and all(a.negative_slope == pytest.approx(0.01) for a in acts)
    assert all(c.kernel_size == (3, 3, 3) for c in model.modules() if type(c) is nn.Conv3d and c.out_channels != 2)
    out = model(torch.zeros(1, 1, 16, 16, 16))
    assert out.shape == (1, 2, 16, 16, 16)


def test_build_network_is_seeded_and_leaves_global_rng_alone() -> None:
    before = torch.get_rng_state()
    a = build_network(_tiny(), torch.Generator().manual_seed(3))
    b = build_network(_tiny(), torch.Generator().manual_seed(3))
    c = build_network(_tiny(), torch.Generator().manual_seed(4))
    assert torch.equal(torch.get_rng_state(), before)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_deep_supervision_output_is_stacked_in_training_only() -> None:
    config = NetworkConfig("cpu", patch_size=(32, 32, 32), filters=(2, 4, 8, 16), deep_supervision=True)
    model = build_network(config, torch.Generator().manual_seed(0))
    x = torch.zeros(1, 1, 32, 32, 32)
    assert model(x).shape == (1, 2, 2, 32, 32, 32)  # main output + one head (4 levels)
    model.eval()
    assert model(x).shape == (1, 2, 32, 32, 32)


@pytest.mark.parametrize(
    "config",
    [
        _tiny(),
        NetworkConfig("cpu", patch_size=(32, 32, 32), filters=(2, 4, 8, 16), deep_supervision=True),
        NetworkConfig("cpu", patch_size=(16, 16, 16), filters=(4, 8, 16), architecture="unet"),
    ],
    ids=["dynunet", "dynunet-ds", "unet"],
)
def test_encoder_and_decoder_partition_the_parameters(config) -> None:
    model = build_network(config, torch.Generator().manual_seed(0))
    enc, dec = encoder_parameters(model), decoder_parameters(model)
    names = [n for n, _ in model.named_parameters()]
    assert enc and dec
    assert set(enc).isdisjoint(dec)
    assert set(enc) | set(dec) == set(names)
    assert len(enc) + len(dec) == len(names)
    if isinstance(model, DynUNet):
        assert encoder_prefixes(model) == ("input_block", "downsamples", "bottleneck")
        assert all(n.split(".")[0] in {"input_block", "downsamples", "bottleneck"} for n in enc)
        assert all(n.split(".")[0] in {"upsamples", "output_block", "deep_supervision_heads"} for n in dec)
        if config.deep_supervision:
            assert any(n.startswith("deep_supervision_heads") for n in dec)
    else:
        assert isinstance(model, UNet)
        # the final up-sampling block, which produces the output, is decoder
        assert any(n.startswith("model.2.") for n in dec)
        assert not any(n.startswith("model.2.") for n in enc)


def test_unet_encoder_is_the_down_path_and_bottom() -> None:
    model = build_network(NetworkConfig("cpu", architecture="unet"), torch.Generator().manual_seed(0))
    assert encoder_prefixes(model) == (
        "model.0",
        "model.1.submodule.0",
        "model.1.submodule.1.submodule.0",
        "model.1.submodule.1.submodule.1.submodule",
    )


def test_encoder_prefixes_refuses_other_models() -> None:
    with pytest.raises(TypeError):
        encoder_prefixes(nn.Linear(2, 2))


def test_freeze_encoder_sets_requires_grad() -> None:
    model = build_network(_tiny(), torch.Generator().manual_seed(0))
    frozen = freeze_encoder(model)
    assert set(frozen) == set(encoder_parameters(model))
    assert all(not p.requires_grad for p in encoder_parameters(model).values())
    assert all(p.requires_grad for p in decoder_parameters(model).values())


def test_set_train_mode_keeps_encoder_batchnorm_in_eval() -> None:
    strides = [1, 2, 2]
    model = DynUNet(3, 1, 2, [3, 3, 3], strides, strides[1:], filters=[4, 8, 16], norm_name="batch")
    set_train_mode(model, frozen_encoder=True)
    enc_bn = [
        m
        for n, m in model.named_modules()
        if n.startswith(("input_block", "bottleneck")) and isinstance(m, nn.BatchNorm3d)
    ]
    dec_bn = [m for n, m in model.named_modules() if n.startswith("upsamples") and isinstance(m, nn.BatchNorm3d)]
    assert enc_bn and dec_bn
    assert not any(m.training for m in enc_bn)
    assert all(m.training for m in dec_bn)
    set_train_mode(model, frozen_encoder=False)
    assert all(m.training for m in enc_bn)


def test_set_train_mode_is_plain_train_with_instance_norm() -> None:
    model = build_network(_tiny(), torch.Generator().manual_seed(0))
    model.eval()
    set_train_mode(model, frozen_encoder=True)
    assert all(m.training for m in model.modules())


def test_device_and_autocast_on_cpu() -> None:
    if not torch.cuda.is_available():
        assert select_device() == torch.device("cpu")
    assert isinstance(autocast_context(torch.device("cpu")), contextlib.nullcontext)


# the keys NetworkConfig.to_dict had before kernel_sizes, strides and trans_bias: every recorded
# model key hashes a dict of exactly these
KEYS_BEFORE_EXPLICIT_LEVELS = {
    "preset",
    "in_channels",
    "out_channels",
    "patch_size",
    "spacing",
    "filters",
    "deep_supervision",
    "architecture",
    "max_levels",
}
ANISOTROPIC = {
    "patch_size": (16, 16, 8),
    "filters": (4, 8, 16),
    "kernel_sizes": ((3, 3, 1), (3, 3, 3), (3, 3, 3)),
    "strides": ((1, 1, 1), (2, 2, 1), (2, 2, 2)),
}


@pytest.mark.parametrize("config", [NetworkConfig(), NetworkConfig("nnunet", spacing=(3.0, 1.0, 1.0)), _tiny()])
def test_explicit_level_fields_stay_out_of_the_dict_at_their_defaults(config: NetworkConfig) -> None:
    recorded = config.to_dict()
    assert set(recorded) == KEYS_BEFORE_EXPLICIT_LEVELS
    # a dict recorded before the fields existed reads back as the same configuration and dict
    old = {k: v for k, v in recorded.items() if k in KEYS_BEFORE_EXPLICIT_LEVELS}
    again = NetworkConfig.from_dict(old)
    assert again == config and again.to_dict() == recorded
    assert again.kernel_sizes is None and again.strides is None and again.trans_bias is False


def test_explicit_levels_are_recorded_and_read_back() -> None:
    config = NetworkConfig("nnunet", trans_bias=True, **ANISOTROPIC)
    recorded = config.to_dict()
    assert recorded["kernel_sizes"] == [[3, 3, 1], [3, 3, 3], [3, 3, 3]]
    assert recorded["strides"] == [[1, 1, 1], [2, 2, 1], [2, 2, 2]]
    assert recorded["trans_bias"] is True
    assert NetworkConfig.from_dict(recorded) == config
    assert config.level_strides == [(1, 1, 1), (2, 2, 1), (2, 2, 2)]
    assert config.level_kernel_sizes == [(3, 3, 1), (3, 3, 3), (3, 3, 3)]
    # planned: kernel 3 on every planned level
    assert _tiny().level_kernel_sizes == [(3, 3, 3)] * 3
    assert _tiny().level_strides == plan_strides((16, 16, 16))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"strides": ((1, 1, 1), (2, 2, 2))}, "at least 3 levels"),
        ({"strides": ((1, 1, 1), (2, 2, 2), (3, 3, 3))}, "1 or 2"),
        ({"strides": ((1, 1, 1), (2, 2), (2, 2, 2))}, "3 integers"),
        ({"strides": ((1, 1, 1), (2, 2, 2), (2, 2, 2)), "patch_size": (16, 16, 6)}, "given total stride"),
        ({"kernel_sizes": ((3, 3, 3), (3, 3, 3))}, "kernel_sizes has 2 levels"),
        ({"kernel_sizes": ((3, 3, 2), (3, 3, 3), (3, 3, 3))}, "odd"),
        ({"kernel_sizes": ((3, 3, 0), (3, 3, 3), (3, 3, 3))}, "3 integers >= 1"),
        ({"filters": (4, 8)}, "filters"),
    ],
)
def test_explicit_levels_are_validated(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        NetworkConfig("nnunet", **{**ANISOTROPIC, **change})


def test_kernels_and_trans_bias_need_the_dynunet() -> None:
    with pytest.raises(ConfigError, match="dynunet"):
        NetworkConfig("cpu", patch_size=(16, 16, 16), filters=(4, 8, 16), architecture="unet", trans_bias=True)


def test_explicit_planned_levels_build_the_planned_network() -> None:
    planned = _tiny()
    explicit = _tiny(strides=tuple(planned.level_strides), kernel_sizes=((3, 3, 3),) * 3)
    a = build_network(planned, torch.Generator().manual_seed(5))
    b = build_network(explicit, torch.Generator().manual_seed(5))
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    x = torch.randn(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.eval()(x), b.eval()(x))


def test_given_kernels_and_strides_shape_every_level_as_nnunet() -> None:
    config = NetworkConfig("nnunet", trans_bias=True, **ANISOTROPIC)
    model = build_network(config, torch.Generator().manual_seed(0))
    assert isinstance(model, DynUNet)
    kernels = config.level_kernel_sizes
    assert model.input_block.conv1.conv.kernel_size == kernels[0]
    assert model.downsamples[0].conv1.conv.stride == (2, 2, 1)
    assert model.bottleneck.conv1.conv.kernel_size == kernels[2]
    # decoder block s returns to level (levels - 2 - s) and convolves with that level's kernel (nnU-Net)
    for s, up in enumerate(model.upsamples):
        level = len(kernels) - 2 - s
        assert up.conv_block.conv1.conv.kernel_size == kernels[level]
        assert up.conv_block.conv2.conv.kernel_size == kernels[level]
        assert up.transp_conv.conv.stride == config.level_strides[level + 1]
        assert up.transp_conv.conv.bias is not None
    assert model.eval()(torch.zeros(1, 1, 16, 16, 8)).shape == (1, 2, 16, 16, 8)
    assert not any("transp_conv" in n and n.endswith("bias") for n, _ in build_network(_tiny()).named_parameters())
