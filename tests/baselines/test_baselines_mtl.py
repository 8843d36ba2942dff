"""The MTL baseline on the one trainer: its mixed batches, checkpoints and a bit-identical resume."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from seqtransfer.baselines.models import MultiTaskNet
from seqtransfer.baselines.train import MultiTaskTrainer, mtl_config, train_mtl
from seqtransfer.core.errors import ConfigError
from seqtransfer.core.progress import ProgressEvent
from seqtransfer.training.augment import AugmentConfig, PatchSampler
from seqtransfer.training.checkpoint import CHECKPOINT_FINAL, CHECKPOINT_LATEST, load_checkpoint
from seqtransfer.training.config import NetworkConfig, TrainConfig
from seqtransfer.training.loss import SegmentationLoss
from seqtransfer.training.network import build_network

PATCH = (16, 16, 16)

Cases = list[tuple[np.ndarray, np.ndarray]]


class Stop(Exception):
    """Raised by a progress callback to stop a run after a given step."""


def _tasks(cubes: Callable[..., Cases]) -> list[Cases]:
    """The target (2 cases) and two sources: toy cubes of 20^3."""
    return [cubes(2, size=20, seed=0), cubes(3, size=20, seed=1), cubes(3, size=20, seed=2)]


def _model(seed: int = 0, heads: int = 3) -> MultiTaskNet:
    base = build_network(
        NetworkConfig("cpu", patch_size=PATCH, filters=(4, 8, 16)), torch.Generator().manual_seed(seed)
    )
    return MultiTaskNet(base, heads)


def _hand_written_mtl(model: MultiTaskNet, tasks: list[Cases], steps: int, seed: int, augment: bool) -> list[float]:
    """The mixed-batch loop written out, as MTL trained before it used the trainer: per step the
    source task, one target patch, one source patch, then torch's seed; Adam at a constant lr."""
    model.train()
    samplers = [PatchSampler(cases, PATCH, augment=AugmentConfig() if augment else None) for cases in tasks]
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    criterion = SegmentationLoss()
    losses = []
    for _ in range(steps):
        source = 1 + int(rng.integers(len(samplers) - 1))
        xt, yt = samplers[0].batch(1, rng)
        xs, ys = samplers[source].batch(1, rng)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(0, 2**63 - 1)))
            features = model.features(torch.cat([xt, xs]))
            loss = criterion(model.heads[0](features[:1]), yt) + criterion(model.heads[source](features[1:]), ys)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("augment", [False, True])
def test_trainer_draws_and_trains_as_the_hand_written_loop(augment: bool, cubes: Callable[..., Cases]) -> None:
    steps = 4 if augment else 12
    reference = _model()
    expected = _hand_written_mtl(reference, _tasks(cubes), steps, seed=5, augment=augment)
    model = _model()
    result = train_mtl(model, _tasks(cubes), mtl_config(steps, seed=5, augment=augment), PATCH, device="cpu")
    assert list(result.losses) == expected
    assert _same_weights(model, reference)
    assert set(result.lrs) == {0.01} and set(result.penalties) == {0.0}


@pytest.mark.parametrize(
    "config",
    [
        mtl_config(5, seed=4),
        TrainConfig(steps=5, seed=4, augment=False, plateau_interval=2, plateau_patience=0),
    ],
    ids=["constant-lr-augmented", "plateau"],
)
def test_stopped_and_resumed_run_is_bit_identical(
    tmp_path: Path, config: TrainConfig, cubes: Callable[..., Cases]
) -> None:
    config = TrainConfig.from_dict({**config.to_dict(), "checkpoint_every": 2})
    straight = _model(seed=1)
    full = train_mtl(straight, _tasks(cubes), config, PATCH, out_dir=tmp_path / "a", device="cpu")

    def stop_at_3(event: ProgressEvent) -> None:
        if event.done == 3:
            raise Stop

    with pytest.raises(Stop):
        train_mtl(
            _model(seed=1), _tasks(cubes), config, PATCH, out_dir=tmp_path / "b", device="cpu", progress=stop_at_3
        )
    assert load_checkpoint(tmp_path / "b" / CHECKPOINT_LATEST)["step"] == 2
    assert not (tmp_path / "b" / CHECKPOINT_FINAL).exists()

    resumed_model = _model(seed=99)  # other initial weights: everything must come from the checkpoint
    resumed = train_mtl(resumed_model, _tasks(cubes), config, PATCH, out_dir=tmp_path / "b", resume=True, device="cpu")
    assert resumed.resumed_from == 2
    assert resumed.losses == full.losses and resumed.lrs == full.lrs
    assert _same_weights(resumed_model, straight)
    assert (tmp_path / "b" / CHECKPOINT_FINAL).is_file() and not (tmp_path / "b" / CHECKPOINT_LATEST).exists()


def test_resume_with_another_schedule_is_refused(tmp_path: Path, cubes: Callable[..., Cases]) -> None:
    train_mtl(_model(), _tasks(cubes), mtl_config(2, seed=0, augment=False), PATCH, out_dir=tmp_path, device="cpu")
    plateau = TrainConfig(steps=2, seed=0, augment=False)
    with pytest.raises(ConfigError, match="different training configuration"):
        train_mtl(_model(), _tasks(cubes), plateau, PATCH, out_dir=tmp_path, resume=True, device="cpu")


@pytest.mark.parametrize(
    ("heads", "config", "message"),
    [
        (2, mtl_config(2, seed=0), "3 tasks for a network of 2 heads"),
        (3, TrainConfig(steps=2, batch_size=3), "odd"),
        (3, TrainConfig(steps=2, lambda_ewc=0.5), "lambda_ewc"),
    ],
)
def test_multi_task_trainer_rejects(heads: int, config: TrainConfig, message: str, cubes: Callable[..., Cases]) -> None:
    with pytest.raises(ConfigError, match=message):
        MultiTaskTrainer(_model(heads=heads), _tasks(cubes), config, PATCH, device="cpu")


def test_mtl_config_keeps_the_learning_rate_constant() -> None:
    config = mtl_config(300, seed=2, augment=False)
    assert config.lr_schedule == "constant" and config.lr == 0.01 and config.seed == 2 and not config.augment
    assert config.to_dict()["lr_schedule"] == "constant"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_a_gpu_leaves_the_cuda_random_state_untouched(cubes: Callable[..., Cases]) -> None:
    torch.cuda.manual_seed(123)
    before = torch.cuda.get_rng_state()
    train_mtl(_model(), _tasks(cubes), mtl_config(2, seed=0), PATCH, device="cuda")
    assert torch.equal(torch.cuda.get_rng_state(), before)
