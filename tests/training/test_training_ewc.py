"""EWC: the penalty's formula and the whole-set, per-case, mean-1 Fisher diagonal."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seqtransfer.training.config import NetworkConfig
from seqtransfer.training.ewc import anchor_from, case_batches, estimate_fisher, ewc_penalty
from seqtransfer.training.loss import SegmentationLoss
from seqtransfer.training.network import build_network, decoder_parameters, freeze_encoder


def _model(seed: int = 0) -> nn.Module:
    config = NetworkConfig("cpu", patch_size=(16, 16, 16), filters=(2, 4, 8))
    return build_network(config, torch.Generator().manual_seed(seed))


def test_penalty_is_zero_at_the_anchor() -> None:
    model = _model()
    fisher = {n: torch.rand_like(p) + 0.5 for n, p in model.named_parameters()}
    penalty = ewc_penalty(model, fisher, anchor_from(model), lambda_ewc=3.0)
    assert penalty.item() == 0.0


def test_penalty_matches_a_hand_computation_and_grows() -> None:
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0]]))
        model.bias.copy_(torch.tensor([0.5]))
    anchor = anchor_from(model)
    fisher = {"weight": torch.tensor([[2.0, 0.5]]), "bias": torch.tensor([4.0])}
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.5, 1.0]]))  # moves by +0.5 and -1
        model.bias.copy_(torch.tensor([0.25]))  # moves by -0.25
    # 0.1 * (2 * 0.25 + 0.5 * 1 + 4 * 0.0625) = 0.1 * 1.25
    assert ewc_penalty(model, fisher, anchor, 0.1).item() == pytest.approx(0.125)
    with torch.no_grad():
        model.weight.add_(torch.tensor([[0.5, -1.0]]))  # twice as far from the anchor
    assert ewc_penalty(model, fisher, anchor, 0.1).item() > 0.125


def test_penalty_has_gradient_only_through_fisher_entries() -> None:
    model = nn.Linear(2, 1)
    anchor = anchor_from(model)
    with torch.no_grad():
        model.weight.add_(1.0)
        model.bias.add_(1.0)
    ewc_penalty(model, {"weight": torch.ones(1, 2)}, anchor, 1.0).backward()
    assert torch.allclose(model.weight.grad, torch.full((1, 2), 2.0))
    assert model.bias.grad is None


def test_penalty_refuses_unknown_names() -> None:
    model = nn.Linear(2, 1)
    with pytest.raises(KeyError):
        ewc_penalty(model, {"nope": torch.ones(1)}, anchor_from(model), 1.0)


def _independent_fisher(model: nn.Module, cases, names: list[str]) -> dict[str, torch.Tensor]:
    """Per-case squared gradients averaged over the set, by plain backward passes."""
    loss_fn = SegmentationLoss()
    params = dict(model.named_parameters())
    acc = {n: torch.zeros_like(params[n]) for n in names}
    model.eval()
    for image, label in cases:
        model.zero_grad()
        x = torch.from_numpy(image)[None]
        y = torch.from_numpy(label)[None, None]
        loss_fn(model(x), y).backward()
        for n in names:
            acc[n] += params[n].grad ** 2
    total = sum(float(v.sum()) for v in acc.values()) / len(cases)
    entries = sum(v.numel() for v in acc.values())
    return {n: v / len(cases) / (total / entries) for n, v in acc.items()}


def test_fisher_shape_mean_and_whole_set(cubes) -> None:
    model = _model()
    freeze_encoder(model)
    cases = cubes(4, size=16, seed=1)
    fisher = estimate_fisher(model, list(case_batches(cases)), SegmentationLoss())

    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert list(fisher) == list(trainable) == list(decoder_parameters(model))
    assert all(fisher[n].shape == p.shape for n, p in trainable.items())
    flat = torch.cat([f.flatten() for f in fisher.values()])
    assert flat.mean().item() == pytest.approx(1.0, rel=1e-6)
    assert (flat >= 0).all()

    expected = _independent_fisher(model, cases, list(fisher))
    for n in fisher:
        torch.testing.assert_close(fisher[n], expected[n], rtol=1e-4, atol=1e-6)

    last_only = estimate_fisher(model, list(case_batches(cases[-1:])), SegmentationLoss())
    assert not all(torch.allclose(fisher[n], last_only[n], rtol=1e-3) for n in fisher)


def test_fisher_does_not_depend_on_the_batching(cubes) -> None:
    model = _model()
    cases = cubes(4, size=16, seed=2)
    singles = list(case_batches(cases))
    pairs = [
        (torch.cat([singles[i][0], singles[i + 1][0]]), torch.cat([singles[i][1], singles[i + 1][1]])) for i in (0, 2)
    ]
    a = estimate_fisher(model, singles, SegmentationLoss())
    b = estimate_fisher(model, [{"image": x, "label": y} for x, y in pairs], SegmentationLoss())
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-5, atol=1e-7)


def test_fisher_restores_mode_and_flags(cubes) -> None:
    model = _model()
    freeze_encoder(model)
    model.train()
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    params = dict(model.named_parameters())  # every parameter, frozen ones included
    fisher = estimate_fisher(model, case_batches(cubes(2)), SegmentationLoss(), parameters=params, normalize=False)
    assert set(fisher) == set(params)
    assert model.training
    assert flags == {n: p.requires_grad for n, p in model.named_parameters()}
    assert all(p.grad is None for p in model.parameters())


def test_case_batches_crops_to_the_patch(cubes) -> None:
    ((image, label),) = cubes(1, size=24)
    ((x, y),) = list(case_batches([(image, label)], patch_size=(16, 16, 16)))
    assert x.shape == (1, 1, 16, 16, 16) and y.shape == (1, 1, 16, 16, 16)
    assert int(y.sum()) == int(label.sum())  # the cube (edge <= 11) is kept whole


def test_fisher_of_an_empty_loader_is_an_error() -> None:
    with pytest.raises(ValueError):
        estimate_fisher(_model(), [], SegmentationLoss())
