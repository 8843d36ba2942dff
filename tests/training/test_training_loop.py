"""Training loop: learning, frozen encoder, EWC, checkpoints, bit-identical resume."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from seqtransfer.core.errors import ConfigError, StoreError
from seqtransfer.core.progress import ProgressEvent
from seqtransfer.evaluation import dice_on_cases, mean_dice
from seqtransfer.training.checkpoint import CHECKPOINT_FINAL, CHECKPOINT_LATEST, load_checkpoint, load_weights
from seqtransfer.training.config import NetworkConfig, TrainConfig
from seqtransfer.training.ewc import anchor_from, case_batches, estimate_fisher
from seqtransfer.training.loop import StepLoss, Trainer, _fork_devices, train
from seqtransfer.training.loss import SegmentationLoss
from seqtransfer.training.network import build_network, decoder_parameters, encoder_parameters

PATCH = (16, 16, 16)


def _model(seed: int = 0) -> nn.Module:
    return build_network(
        NetworkConfig("cpu", patch_size=PATCH, filters=(4, 8, 16)), torch.Generator().manual_seed(seed)
    )


class Stop(Exception):
    """Raised by a progress callback to simulate a killed run."""


def test_training_learns_the_bright_cube(cubes) -> None:
    model = _model()
    calls = []
    result = train(
        model,
        cubes(4, size=20, seed=0),
        TrainConfig(steps=60, lr=0.01, augment=False),
        PATCH,
        device="cpu",
        progress=calls.append,
    )
    assert len(result.losses) == len(result.lrs) == 60
    # one ProgressEvent per step: no stage name (the caller gives it), the step, the total, its loss
    assert all(isinstance(c, ProgressEvent) and c.stage == "" for c in calls)
    assert [c.done for c in calls] == list(range(1, 61)) and {c.total for c in calls} == {60}
    assert [c.loss for c in calls] == list(result.losses)
    assert np.mean(result.losses[-10:]) < 0.5 * np.mean(result.losses[:5])
    assert mean_dice(dice_on_cases(model, cubes(3, size=20, seed=9), PATCH, "cpu")) > 0.8


@pytest.mark.parametrize("architecture", ["dynunet", "unet"])
def test_frozen_encoder_stays_bit_identical(cubes, architecture: str) -> None:
    config = NetworkConfig("cpu", patch_size=PATCH, filters=(4, 8, 16), architecture=architecture)
    model = build_network(config, torch.Generator().manual_seed(0))
    encoder_before = {n: p.detach().clone() for n, p in encoder_parameters(model).items()}
    decoder_before = {n: p.detach().clone() for n, p in decoder_parameters(model).items()}
    train(model, cubes(3), TrainConfig(steps=4, lr=0.01, freeze_encoder=True), PATCH, device="cpu")
    encoder_after = encoder_parameters(model)
    assert all(torch.equal(encoder_before[n], encoder_after[n]) for n in encoder_before)
    decoder_after = decoder_parameters(model)
    assert all(not torch.equal(decoder_before[n], decoder_after[n]) for n in decoder_before)


def test_deep_supervision_network_trains(cubes) -> None:
    config = NetworkConfig("cpu", patch_size=(32, 32, 32), filters=(2, 4, 8, 16), deep_supervision=True)
    model = build_network(config, torch.Generator().manual_seed(0))
    result = train(model, cubes(2, size=32), TrainConfig(steps=2, augment=False), (32, 32, 32), device="cpu")
    assert len(result.losses) == 2 and all(np.isfinite(result.losses))


def _previous_task(cubes):
    """A 'previous task' model with its Fisher diagonal and anchor."""
    source = _model(seed=7)
    fisher = estimate_fisher(source, case_batches(cubes(3, seed=11)), SegmentationLoss())
    return source, fisher, anchor_from(source)


def test_ewc_penalty_enters_the_objective(cubes) -> None:
    source, fisher, anchor = _previous_task(cubes)
    config = TrainConfig(steps=4, lr=0.01, lambda_ewc=0.5, freeze_encoder=True, augment=False)
    result = train(source, cubes(3), config, PATCH, fisher=fisher, anchor=anchor, device="cpu")
    assert result.penalties[0] == 0.0  # the first step starts at the anchor
    assert all(p > 0 for p in result.penalties[1:])
    assert all(loss > pen for loss, pen in zip(result.losses, result.penalties, strict=True))


@pytest.mark.parametrize("variant", ["pretrain", "finetune-ewc"])
def test_resume_after_a_kill_is_bit_identical(cubes, tmp_path: Path, variant: str) -> None:
    cases = cubes(3, size=20, seed=3)
    kwargs: dict = {}
    if variant == "finetune-ewc":
        _, fisher, anchor = _previous_task(cubes)
        kwargs = {"fisher": fisher, "anchor": anchor}
        config = TrainConfig(steps=7, lr=0.01, lambda_ewc=0.25, freeze_encoder=True, checkpoint_every=2, seed=4)
    else:
        config = TrainConfig(steps=7, lr=0.01, checkpoint_every=2, seed=4, plateau_interval=2, plateau_patience=0)

    def fresh() -> nn.Module:
        return _model(seed=7) if variant == "finetune-ewc" else _model(seed=1)

    straight = fresh()
    full = train(straight, cases, config, PATCH, out_dir=tmp_path / "a", device="cpu", **kwargs)

    def stop_at_5(event: ProgressEvent) -> None:
        if event.done == 5:
            raise Stop

    killed = fresh()
    with pytest.raises(Stop):
        train(killed, cases, config, PATCH, out_dir=tmp_path / "b", device="cpu", progress=stop_at_5, **kwargs)
    assert (tmp_path / "b" / CHECKPOINT_LATEST).is_file()
    assert not (tmp_path / "b" / CHECKPOINT_FINAL).exists()
    assert load_checkpoint(tmp_path / "b" / CHECKPOINT_LATEST)["step"] == 4

    resumed_model = _model(seed=99)  # different initial weights: everything must come from the checkpoint
    resumed = train(resumed_model, cases, config, PATCH, out_dir=tmp_path / "b", resume=True, device="cpu", **kwargs)

    assert resumed.resumed_from == 4
    assert resumed.losses == full.losses and resumed.lrs == full.lrs and resumed.penalties == full.penalties
    a, b = straight.state_dict(), resumed_model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "b" / CHECKPOINT_LATEST).exists()
    assert (tmp_path / "b" / CHECKPOINT_FINAL).is_file()


def test_resume_of_a_finished_run_returns_its_history(cubes, tmp_path: Path) -> None:
    config = TrainConfig(steps=2, augment=False)
    first = train(_model(), cubes(2), config, PATCH, out_dir=tmp_path, device="cpu")
    model = _model(seed=5)
    again = train(model, cubes(2), config, PATCH, out_dir=tmp_path, resume=True, device="cpu")
    assert again.losses == first.losses and again.resumed_from == 2
    reference = load_weights(_model(seed=6), tmp_path / CHECKPOINT_FINAL).state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())


def test_resume_without_checkpoint_starts_fresh(cubes, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        result = train(
            _model(), cubes(2), TrainConfig(steps=2, augment=False), PATCH, out_dir=tmp_path, resume=True, device="cpu"
        )
    assert result.resumed_from is None and len(result.losses) == 2
    assert "no checkpoint" in caplog.text


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04garbage"])
def test_corrupt_checkpoint_is_a_store_error(cubes, tmp_path: Path, content: bytes) -> None:
    (tmp_path / CHECKPOINT_LATEST).write_bytes(content)
    with pytest.raises(StoreError) as info:
        train(_model(), cubes(2), TrainConfig(steps=2), PATCH, out_dir=tmp_path, resume=True, device="cpu")
    message = str(info.value)
    assert CHECKPOINT_LATEST in message and "\n" not in message


def test_truncated_checkpoint_is_a_store_error(cubes, tmp_path: Path) -> None:
    train(_model(), cubes(2), TrainConfig(steps=2, augment=False), PATCH, out_dir=tmp_path, device="cpu")
    final = tmp_path / CHECKPOINT_FINAL
    final.write_bytes(final.read_bytes()[:2000])
    with pytest.raises(StoreError, match=CHECKPOINT_FINAL):
        load_weights(_model(), final)
    with pytest.raises(StoreError, match=CHECKPOINT_FINAL):
        train(
            _model(), cubes(2), TrainConfig(steps=2, augment=False), PATCH, out_dir=tmp_path, resume=True, device="cpu"
        )


def test_checkpoint_that_does_not_fit_the_model_is_a_store_error(cubes, tmp_path: Path) -> None:
    train(_model(), cubes(2), TrainConfig(steps=1, augment=False), PATCH, out_dir=tmp_path, device="cpu")
    other = build_network(NetworkConfig("cpu", patch_size=PATCH, filters=(2, 4, 8)), torch.Generator().manual_seed(0))
    with pytest.raises(StoreError, match="do not fit"):
        load_weights(other, tmp_path / CHECKPOINT_FINAL)


def test_resume_with_another_configuration_is_refused(cubes, tmp_path: Path) -> None:
    train(_model(), cubes(2), TrainConfig(steps=2, augment=False), PATCH, out_dir=tmp_path, device="cpu")
    with pytest.raises(ConfigError):
        train(
            _model(),
            cubes(2),
            TrainConfig(steps=2, lr=0.001, augment=False),
            PATCH,
            out_dir=tmp_path,
            resume=True,
            device="cpu",
        )


def test_plateau_reduces_the_learning_rate() -> None:
    cases = [(np.zeros((1, 16, 16, 16), np.float32), np.zeros((16, 16, 16), np.uint8))]
    config = TrainConfig(steps=6, lr=0.01, augment=False, plateau_interval=2, plateau_patience=0, plateau_factor=0.5)

    def flat_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return output.mean() * 0.0 + 1.0  # never improves

    result = train(_model(), cases, config, PATCH, loss_fn=flat_loss, device="cpu")
    assert result.lrs == pytest.approx([0.01] * 4 + [0.005] * 2)


def test_resume_restores_the_scheduler(tmp_path: Path) -> None:
    cases = [(np.zeros((1, 16, 16, 16), np.float32), np.zeros((16, 16, 16), np.uint8))]
    config = TrainConfig(steps=8, augment=False, plateau_interval=2, plateau_patience=0, checkpoint_every=4)

    def flat_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return output.mean() * 0.0 + 1.0

    def stop_at_5(event: ProgressEvent) -> None:
        if event.done == 5:
            raise Stop

    with pytest.raises(Stop):
        train(_model(), cases, config, PATCH, out_dir=tmp_path, loss_fn=flat_loss, device="cpu", progress=stop_at_5)
    result = train(_model(), cases, config, PATCH, out_dir=tmp_path, resume=True, loss_fn=flat_loss, device="cpu")
    # reduced at steps 4, 6 and 8 only if the scheduler's best loss survived the restart
    assert result.lrs == pytest.approx([0.01] * 4 + [0.005] * 2 + [0.0025] * 2)


def test_constant_schedule_keeps_the_learning_rate() -> None:
    cases = [(np.zeros((1, 16, 16, 16), np.float32), np.zeros((16, 16, 16), np.uint8))]
    config = TrainConfig(steps=6, augment=False, plateau_interval=2, plateau_patience=0, lr_schedule="constant")

    def flat_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return output.mean() * 0.0 + 1.0

    result = train(_model(), cases, config, PATCH, loss_fn=flat_loss, device="cpu")
    assert result.lrs == (0.01,) * 6


def test_lr_schedule_is_recorded_only_when_not_the_default(cubes, tmp_path: Path) -> None:
    assert "lr_schedule" not in TrainConfig(steps=1).to_dict()  # keys of earlier models unchanged
    constant = TrainConfig(steps=2, augment=False, lr_schedule="constant")
    assert TrainConfig.from_dict(constant.to_dict()) == constant
    train(_model(), cubes(2), TrainConfig(steps=2, augment=False), PATCH, out_dir=tmp_path, device="cpu")
    with pytest.raises(ConfigError, match="different training configuration"):
        train(_model(), cubes(2), constant, PATCH, out_dir=tmp_path, resume=True, device="cpu")


class _ScaledLoss(Trainer):
    """A variant that overrides the step: the default objective, scaled."""

    def step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> StepLoss:
        return StepLoss(3.0 * super().step(batch).objective)


class _CountingSampler(Trainer):
    """A variant that overrides the sampler: records every draw."""

    drawn = 0

    def sample(self, rng: np.random.Generator) -> object:
        self.drawn += 1
        return super().sample(rng)


def test_fit_uses_the_overridden_step_and_sampler(cubes, tmp_path: Path) -> None:
    config = TrainConfig(steps=3, augment=False, checkpoint_every=1)
    plain = train(_model(), cubes(2), config, PATCH, device="cpu")
    scaled = _ScaledLoss(_model(), cubes(2), config, PATCH, device="cpu").fit()
    assert scaled.losses[0] == pytest.approx(3.0 * plain.losses[0])
    counting = _CountingSampler(_model(), cubes(2), config, PATCH, out_dir=tmp_path, device="cpu")
    counted = counting.fit()
    assert counting.drawn == 3 and counted.losses == plain.losses  # the batch after the last is never drawn
    assert load_checkpoint(tmp_path / CHECKPOINT_FINAL)["step"] == 3


def test_the_random_state_is_forked_on_the_training_gpu_only() -> None:
    assert _fork_devices(torch.device("cpu")) == []
    assert _fork_devices(torch.device("cuda", 1)) == [1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_a_gpu_leaves_the_global_random_states_untouched(cubes) -> None:
    torch.manual_seed(5)
    torch.cuda.manual_seed(123)
    cpu, gpu = torch.get_rng_state(), torch.cuda.get_rng_state()
    train(_model(), cubes(2), TrainConfig(steps=2), PATCH, device="cuda")
    assert torch.equal(torch.get_rng_state(), cpu) and torch.equal(torch.cuda.get_rng_state(), gpu)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 0}, "steps"),
        ({"steps": 1, "lr": 0.0}, "lr"),
        ({"steps": 1, "lambda_ewc": -1.0}, "lambda_ewc"),
        ({"steps": 1, "lr_schedule": "cosine"}, "lr_schedule"),
    ],
)
def test_train_config_rejects(kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)


def test_train_config_round_trips() -> None:
    config = TrainConfig(steps=3, lambda_ewc=0.25, freeze_encoder=True)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError):
        TrainConfig.from_dict({"steps": 3, "epochs": 2})


def test_ewc_without_fisher_or_resume_without_folder_is_refused(cubes) -> None:
    with pytest.raises(ConfigError):
        train(_model(), cubes(2), TrainConfig(steps=1, lambda_ewc=0.1), PATCH, device="cpu")
    with pytest.raises(ConfigError):
        train(_model(), cubes(2), TrainConfig(steps=1), PATCH, resume=True, device="cpu")
