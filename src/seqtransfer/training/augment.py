"""Patch sampling with foreground oversampling and on-the-fly augmentation (METHOD section 6).

Patch sampling follows nnU-Net's data loader: of a batch of ``B`` patches, the last
``B - round(B * (1 - 1/3))`` are forced to contain foreground (one of two for batch size 2);
the others are placed uniformly at random. A forced patch is centred (as far as the volume
allows) on a random foreground voxel of a random foreground class. A volume smaller than the
patch is zero-padded symmetrically (image and label; nnU-Net pads the label with -1 and
ignores it, here padding is background). A volume of exactly the patch size is returned as is.

Augmentation uses MONAI dictionary transforms on the sampled patch, each applied
independently, with nnU-Net-like probabilities and ranges (:class:`AugmentConfig`):

* rotation: ``RandRotated``, probability 0.2, an angle uniform in +-30 degrees per axis
  (nnU-Net v2: +-30 degrees, p 0.2);
* scaling: ``RandZoomd``, probability 0.2, one isotropic factor uniform in [0.7, 1.4]
  (nnU-Net v2's range, p 0.2), same patch size kept;
* elastic deformation: ``Rand3DElasticd``, probability 0.2, Gaussian-smoothed uniform noise
  with sigma in [9, 13] voxels and magnitude in [0, 900] (nnU-Net v1 / batchgenerators'
  ``alpha`` and ``sigma``, which use the same construction; nnU-Net v2 switched it off).

Images are interpolated linearly, labels by nearest neighbour, out-of-volume voxels are 0.
The transforms run on the device of the patch (the GPU when training there). The elastic
deformation is the expensive one: its Gaussian smoothing (kernel up to 79 voxels) takes about
0.2 s per 32^3 patch on one CPU core, so on the CPU it costs about 0.04 s per patch on average
at probability 0.2; set ``elastic_prob=0`` (nnU-Net v2's choice) to save that.
nnU-Net samples a larger region and crops after the spatial transform to avoid padded
borders; at the small CPU patch sizes this matters little and is not done here.

Randomness: everything is drawn from the ``numpy.random.Generator`` passed in. The MONAI
transforms are re-seeded from it before every batch (``set_random_state``), so the
generator's state alone determines every future patch; a checkpoint needs nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.transforms import Compose, Identityd, OneOf, Rand3DElasticd, RandRotated, RandZoomd
from monai.utils import convert_to_tensor

from seqtransfer.core.errors import ConfigError

Case = tuple[np.ndarray, np.ndarray]
MAX_TRANSFORM_SEED = 2**32 - 1


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the spatial augmentation (see the module docstring).

    Attributes:
        rotation_prob: probability of a random rotation.
        rotation_degrees: maximum absolute angle per axis.
        scale_prob: probability of a random isotropic scaling.
        scale_range: (min, max) scaling factor.
        elastic_prob: probability of an elastic deformation.
        elastic_sigma: (min, max) smoothing sigma of the deformation field, voxels.
        elastic_magnitude: (min, max) magnitude of the deformation field.
    """

    rotation_prob: float = 0.2
    rotation_degrees: float = 30.0
    scale_prob: float = 0.2
    scale_range: tuple[float, float] = (0.7, 1.4)
    elastic_prob: float = 0.2
    elastic_sigma: tuple[float, float] = (9.0, 13.0)
    elastic_magnitude: tuple[float, float] = (0.0, 900.0)

    def __post_init__(self) -> None:
        for name in ("rotation_prob", "scale_prob", "elastic_prob"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {p}")
        for name in ("scale_range", "elastic_sigma", "elastic_magnitude"):
            lo, hi = getattr(self, name)
            if lo > hi or lo < 0:
                raise ConfigError(f"{name} must be (min, max) with 0 <= min <= max, got {(lo, hi)}")


def build_augmentation(config: AugmentConfig | None = None) -> Compose:
    """The MONAI transforms of ``config`` on keys ``image`` ([C,X,Y,Z]) and ``label`` ([1,X,Y,Z]).

    The transforms run on the device of their input tensors (the GPU when training there).
    Seed the result with ``set_random_state`` before use.
    """
    cfg = config or AugmentConfig()
    angle = math.radians(cfg.rotation_degrees)
    keys = ("image", "label")
    return Compose(
        [
            RandRotated(
                keys,
                range_x=angle,
                range_y=angle,
                range_z=angle,
                prob=cfg.rotation_prob,
                keep_size=True,
                mode=("bilinear", "nearest"),
                padding_mode="zeros",
            ),
            RandZoomd(
                keys,
                prob=cfg.scale_prob,
                min_zoom=cfg.scale_range[0],
                max_zoom=cfg.scale_range[1],
                mode=("trilinear", "nearest"),
                padding_mode="constant",
                keep_size=True,
            ),
            # Rand3DElasticd draws its noise field and resamples (with an identity grid) even
            # when its own coin says no; OneOf skips it entirely with probability 1 - p.
            OneOf(
                [
                    Rand3DElasticd(
                        keys,
                        sigma_range=cfg.elastic_sigma,
                        magnitude_range=cfg.elastic_magnitude,
                        prob=1.0,
                        mode=("bilinear", "nearest"),
                        padding_mode="zeros",
                    ),
                    Identityd(keys),
                ],
                weights=(cfg.elastic_prob, 1.0 - cfg.elastic_prob),
            ),
        ]
    )


def foreground_flags(batch_size: int, oversample: float = 1.0 / 3.0) -> list[bool]:
    """Which patches of a batch are forced to contain foreground (nnU-Net's rule).

    Patch ``i`` is forced when ``i >= round(batch_size * (1 - oversample))``.
    """
    first = round(batch_size * (1.0 - oversample))
    return [i >= first for i in range(batch_size)]


def foreground_voxels(label: np.ndarray) -> dict[int, np.ndarray]:
    """Coordinates ``[N, 3]`` of every voxel of each foreground class of ``label``."""
    return {int(c): np.argwhere(label == c) for c in np.unique(label) if c != 0}


def crop_patch(image: np.ndarray, label: np.ndarray, lower: Sequence[int], patch_size: Sequence[int]) -> Case:
    """Cut ``patch_size`` voxels starting at ``lower`` (may be negative), padding with 0."""
    img_out = np.zeros((image.shape[0], *patch_size), dtype=image.dtype)
    lbl_out = np.zeros(tuple(patch_size), dtype=label.dtype)
    src, dst = [], []
    for a in range(3):
        lo = max(lower[a], 0)
        hi = min(lower[a] + patch_size[a], label.shape[a])
        src.append(slice(lo, max(hi, lo)))
        dst.append(slice(lo - lower[a], lo - lower[a] + max(hi - lo, 0)))
    img_out[(slice(None), *dst)] = image[(slice(None), *src)]
    lbl_out[tuple(dst)] = label[tuple(src)]
    return img_out, lbl_out


def sample_patch(
    image: np.ndarray,
    label: np.ndarray,
    patch_size: Sequence[int],
    force_foreground: bool,
    rng: np.random.Generator,
    foreground: dict[int, np.ndarray] | None = None,
) -> Case:
    """Sample one training patch as nnU-Net does (see the module docstring).

    Args:
        image: ``[C, X, Y, Z]``.
        label: ``[X, Y, Z]``.
        patch_size: patch edge per axis.
        force_foreground: centre the patch on a random foreground voxel (falls back to a
            random placement when the label has no foreground).
        rng: the random generator.
        foreground: :func:`foreground_voxels` of ``label``, when precomputed.

    Returns:
        The image patch ``[C, *patch_size]`` and label patch ``patch_size``.
    """
    shape = label.shape
    pad = [max(patch_size[a] - shape[a], 0) for a in range(3)]
    lows = [-(pad[a] // 2) for a in range(3)]
    highs = [shape[a] + pad[a] // 2 + pad[a] % 2 - patch_size[a] for a in range(3)]
    fg = foreground if foreground is not None else (foreground_voxels(label) if force_foreground else {})
    classes = [c for c in sorted(fg) if len(fg[c])]
    if force_foreground and classes:
        cls = classes[int(rng.integers(len(classes)))]
        voxel = fg[cls][int(rng.integers(len(fg[cls])))]
        lower = [int(np.clip(voxel[a] - patch_size[a] // 2, lows[a], highs[a])) for a in range(3)]
    else:
        lower = [int(rng.integers(lows[a], highs[a] + 1)) for a in range(3)]
    return crop_patch(image, label, lower, patch_size)


def center_patch(image: np.ndarray, label: np.ndarray, patch_size: Sequence[int]) -> Case:
    """A deterministic patch: centred on the foreground bounding box (or the volume)."""
    fg = np.argwhere(label != 0)
    centre = (fg.min(0) + fg.max(0)) // 2 if len(fg) else np.asarray(label.shape) // 2
    shape = label.shape
    lower = []
    for a in range(3):
        lo = int(centre[a]) - patch_size[a] // 2
        if shape[a] >= patch_size[a]:
            lo = min(max(lo, 0), shape[a] - patch_size[a])
        else:
            lo = -((patch_size[a] - shape[a]) // 2)
        lower.append(lo)
    return crop_patch(image, label, lower, patch_size)


@dataclass(frozen=True)
class PreparedBatch:
    """A batch cut on the CPU, not yet on the device nor augmented (:meth:`PatchSampler.draw`).

    Attributes:
        images: ``[B, C, *patch]`` float32.
        labels: ``[B, 1, *patch]`` uint8 (a quarter of the bytes of float labels to copy).
        transform_seed: seed of the augmentation for this batch (None without augmentation).
    """

    images: torch.Tensor
    labels: torch.Tensor
    transform_seed: int | None


class PatchSampler:
    """Draws augmented training batches from a list of cases.

    Args:
        cases: ``(image [C,X,Y,Z] float32, label [X,Y,Z] integer)`` pairs.
        patch_size: patch edge per axis.
        augment: the spatial augmentation; None for none.
        oversample_foreground: fraction of each batch forced to contain foreground.

    Raises:
        ConfigError: no cases, or a case whose image and label shapes disagree.
    """

    def __init__(
        self,
        cases: Sequence[Case],
        patch_size: Sequence[int],
        augment: AugmentConfig | None = None,
        oversample_foreground: float = 1.0 / 3.0,
    ) -> None:
        if not cases:
            raise ConfigError("no training cases")
        for i, (image, label) in enumerate(cases):
            if image.ndim != 4 or label.ndim != 3 or image.shape[1:] != label.shape:
                raise ConfigError(
                    f"case {i}: expected image [C,X,Y,Z] and label [X,Y,Z] of one shape, "
                    f"got {image.shape} and {label.shape}"
                )
        self.cases = [(np.asarray(img, dtype=np.float32), np.asarray(lbl)) for img, lbl in cases]
        self.patch_size = tuple(int(p) for p in patch_size)
        self.oversample_foreground = oversample_foreground
        self.foreground = [foreground_voxels(lbl) for _, lbl in self.cases]
        self.transform = build_augmentation(augment) if augment is not None else None

    def draw(self, batch_size: int, rng: np.random.Generator, pin_memory: bool = False) -> PreparedBatch:
        """Draw one batch's randomness and cut its patches on the CPU (no device work).

        Cases are drawn uniformly with replacement, as nnU-Net does. Everything random about
        the batch (cases, patch positions, the seed of the augmentation) is drawn here, in
        this order, so :meth:`to_device` is deterministic given the result.

        Args:
            batch_size: patches in the batch.
            rng: the random generator (advanced).
            pin_memory: cut into page-locked memory, so the copy to a GPU can be asynchronous.

        Returns:
            The patches, ready for :meth:`to_device`.
        """
        flags = foreground_flags(batch_size, self.oversample_foreground)
        indices = rng.integers(0, len(self.cases), size=batch_size)
        seed = int(rng.integers(0, MAX_TRANSFORM_SEED)) if self.transform is not None else None
        channels = self.cases[0][0].shape[0]
        images = torch.empty((batch_size, channels, *self.patch_size), dtype=torch.float32, pin_memory=pin_memory)
        labels = torch.empty((batch_size, 1, *self.patch_size), dtype=torch.uint8, pin_memory=pin_memory)
        image_np, label_np = images.numpy(), labels.numpy()
        for i, (idx, forced) in enumerate(zip(indices, flags, strict=True)):
            image, label = self.cases[int(idx)]
            img, lbl = sample_patch(image, label, self.patch_size, forced, rng, self.foreground[int(idx)])
            image_np[i] = img
            label_np[i, 0] = lbl
        return PreparedBatch(images=images, labels=labels, transform_seed=seed)

    def to_device(
        self, prepared: PreparedBatch, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Copy a drawn batch to ``device`` and augment it there.

        On a GPU, augmenting 128^3 patches on the CPU would take several times longer than
        the training step itself, so the transforms run on the device. From pinned memory
        the copy is asynchronous.

        Returns:
            Images ``[B, C, *patch]`` (float32) and labels ``[B, 1, *patch]`` (uint8).
        """
        dev = torch.device(device) if device is not None else torch.device("cpu")
        non_blocking = prepared.images.is_pinned()
        images = prepared.images.to(dev, non_blocking=non_blocking)
        labels = prepared.labels.to(dev, non_blocking=non_blocking)
        if self.transform is None:
            return images, labels
        self.transform.set_random_state(seed=prepared.transform_seed)
        out_images, out_labels = [], []
        for img_t, lbl_t in zip(images, labels, strict=True):
            out = self.transform({"image": img_t, "label": lbl_t.to(torch.float32)})
            out_images.append(convert_to_tensor(out["image"], dtype=torch.float32, track_meta=False))
            out_labels.append(
                torch.round(convert_to_tensor(out["label"], dtype=torch.float32, track_meta=False)).to(torch.uint8)
            )
        return torch.stack(out_images), torch.stack(out_labels)

    def batch(
        self, batch_size: int, rng: np.random.Generator, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw one batch and return it on ``device`` (:meth:`draw` then :meth:`to_device`).

        Args:
            batch_size: patches in the batch.
            rng: the random generator (advanced).
            device: where the patches are augmented and returned (CPU when None).

        Returns:
            Images ``[B, C, *patch]`` (float32) and labels ``[B, 1, *patch]`` (uint8).
        """
        dev = torch.device(device) if device is not None else torch.device("cpu")
        return self.to_device(self.draw(batch_size, rng, pin_memory=dev.type == "cuda"), dev)
