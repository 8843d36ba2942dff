"""Sliding-window prediction of whole volumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqtransfer.evaluation.inference import dice_on_cases, predict_volume
from seqtransfer.training.config import NetworkConfig
from seqtransfer.training.network import build_network


def _model(**kwargs) -> torch.nn.Module:
    config = NetworkConfig("cpu", patch_size=(16, 16, 16), filters=(4, 8, 16), **kwargs)
    return build_network(config, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("shape", [(20, 24, 18), (16, 16, 16), (12, 20, 9)], ids=["larger", "equal", "smaller"])
def test_prediction_has_the_input_shape(shape) -> None:
    model = _model()
    image = np.random.default_rng(0).normal(size=(1, *shape)).astype(np.float32)
    label = predict_volume(model, image, (16, 16, 16), device="cpu")
    assert label.shape == shape and label.dtype == np.uint8
    assert set(np.unique(label).tolist()) <= {0, 1}
    assert model.training  # mode restored


def test_deep_supervision_network_predicts_one_map() -> None:
    config = NetworkConfig("cpu", patch_size=(32, 32, 32), filters=(2, 4, 8, 16), deep_supervision=True)
    model = build_network(config, torch.Generator().manual_seed(0))
    label = predict_volume(model, np.zeros((1, 40, 32, 36), np.float32), (32, 32, 32), device="cpu")
    assert label.shape == (40, 32, 36)


def test_prediction_is_the_argmax_of_the_logits() -> None:
    class Threshold(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([torch.zeros_like(x), x], dim=1)  # class 1 where x > 0

    image = np.random.default_rng(1).normal(size=(1, 24, 20, 18)).astype(np.float32)
    label = predict_volume(Threshold(), image, (16, 16, 16), device="cpu")
    assert np.array_equal(label, (image[0] > 0).astype(np.uint8))
    assert dice_on_cases(Threshold(), [(image, (image[0] > 0).astype(np.uint8))], (16, 16, 16), "cpu") == [1.0]


def test_image_must_have_a_channel_axis() -> None:
    with pytest.raises(ValueError):
        predict_volume(_model(), np.zeros((16, 16, 16), np.float32), (16, 16, 16), device="cpu")
