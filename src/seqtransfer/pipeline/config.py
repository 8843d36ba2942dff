"""The configurations of the pipeline: how source models are trained and how a path is fine-tuned.

Torch-free, so the CLI and the experiment file read their defaults from these dataclasses
(the one truth of every default) without importing torch or MONAI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from seqtransfer.core.config import config_from_mapping, recorded_dict
from seqtransfer.core.errors import ConfigError
from seqtransfer.training.config import NetworkConfig, TrainConfig

__all__ = ["FinetuneConfig", "ZooConfig"]


@dataclass(frozen=True)
class ZooConfig:
    """How source models are trained.

    Attributes:
        network: the network (preset, patch, filters).
        train: the training run (steps, lr 0.01 as the paper, batch 2).
        max_train: most training cases per source (60 in the paper).
        seed: seed of the case split.
    """

    network: NetworkConfig = field(default_factory=NetworkConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=300, lr=0.01))
    max_train: int = 60
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_train < 1:
            raise ConfigError(f"max_train must be at least 1, got {self.max_train}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (also what the model key hashes)."""
        return {
            "network": self.network.to_dict(),
            "train": self.train.to_dict(),
            "max_train": self.max_train,
            "seed": self.seed,
        }

    def with_recipe(
        self,
        *,
        network: NetworkConfig | None = None,
        steps: int | None = None,
        max_train: int | None = None,
        augment: bool | None = None,
        seed: int | None = None,
    ) -> ZooConfig:
        """This configuration with the settings a user chooses (``None`` keeps the current value).

        The one place the CLI, the experiment file and the adapt command turn their options
        into a zoo configuration, so a model asked for with the same settings gets the same
        key whichever of them asks. ``seed`` seeds the case split and the training alike.
        """
        train = self.train
        if steps is not None:
            train = replace(train, steps=steps)
        if augment is not None:
            train = replace(train, augment=augment)
        if seed is not None:
            train = replace(train, seed=seed)
        return replace(
            self,
            network=self.network if network is None else network,
            train=train,
            max_train=self.max_train if max_train is None else max_train,
            seed=self.seed if seed is None else seed,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ZooConfig:
        """Build from :meth:`to_dict` output (what a zoo model's ``config.json`` records).

        Raises:
            ConfigError: an unknown key or an invalid value.
        """
        return config_from_mapping(cls, data, "zoo")


@dataclass(frozen=True)
class FinetuneConfig:
    """One fine-tuning step's recipe.

    The defaults (frozen encoder, Adam 1e-2, 150 steps, EWC 0.25 on a mean-normalised
    Fisher) were chosen on validation transfers between source tasks of different sites, never
    a protocol target's test set (``benchmarks/finetune_recipe.md``: 12 pairs x 3 draws): no
    recipe beat lr 1e-2 x 150 (mean Dice 0.276 over 36 runs); 20 steps lose 0.046 [95 %
    interval -0.096, -0.008], lr 1e-3 x 300 loses 0.019 [-0.041, -0.003], lr 1e-2 x 50 and
    lr 1e-3 x 150 cannot be told apart from it (intervals include 0).

    Attributes:
        steps: optimizer steps per path step.
        lr: Adam learning rate.
        lambda_ewc: EWC strength.
        n_train: training cases per step (3 in the paper).
        draw: which seeded draw of the target's training cases.
        seed: seed of the case draws and the training.
        augment: on-the-fly augmentation.
        checkpoint_every: write a resumable checkpoint every this many steps (does not
            change the result, so it is not part of the step's cache key).
        freeze_encoder: freeze the encoder (the paper); False fine-tunes the whole network
            with EWC on every parameter (the "w/o frozen encoder" ablation).
    """

    steps: int = 150
    lr: float = 0.01
    lambda_ewc: float = 0.25
    n_train: int = 3
    draw: int = 0
    seed: int = 0
    augment: bool = True
    checkpoint_every: int = 50
    freeze_encoder: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; ``freeze_encoder`` only when False, so the keys of every step and
        run recorded before the option existed stay valid."""
        return recorded_dict(self, "freeze_encoder")

    def __post_init__(self) -> None:
        if self.n_train < 1:
            raise ConfigError(f"n_train must be at least 1, got {self.n_train}")
        if self.draw < 0:
            raise ConfigError(f"draw must be non-negative, got {self.draw}")
        self.train_config(0)  # validates steps, lr, lambda_ewc

    def train_config(self, step_index: int) -> TrainConfig:
        """The trainer configuration of the ``step_index``-th step (its own seed)."""
        return TrainConfig(
            steps=self.steps,
            lr=self.lr,
            lambda_ewc=self.lambda_ewc,
            freeze_encoder=self.freeze_encoder,
            seed=self.seed * 1000 + step_index,
            augment=self.augment,
            checkpoint_every=self.checkpoint_every,
        )
