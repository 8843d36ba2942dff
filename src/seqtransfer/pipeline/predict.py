"""``seqtransfer predict``: segment NIfTI images with a trained model.

Each image goes through the same preprocessing as training (crop to nonzero, z-score,
resample to the model's grid: the cube, or the target spacing saved with the model),
sliding-window inference, and the inverse of the preprocessing; the label is written with the
input's own affine (uint8, atomically).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from seqtransfer.core.errors import ConfigError, DatasetError
from seqtransfer.core.threads import single_threaded
from seqtransfer.data.io import NIFTI_ENDINGS, read_image, write_image
from seqtransfer.data.preprocess import PreprocessConfig, preprocess_arrays, restore_label
from seqtransfer.evaluation.inference import predict_volume
from seqtransfer.pipeline.zoo import load_model
from seqtransfer.training.network import select_device


def resolve_model_folder(path: str | Path) -> Path:
    """The folder holding ``config.json`` and ``checkpoint_final.pth`` for a model argument.

    Accepts a model folder, a checkpoint file inside one, or a transfer run folder (whose
    ``metrics.json`` names the final model).

    Raises:
        ConfigError: nothing usable at that path.
    """
    p = Path(path)
    if p.is_file() and p.suffix == ".pth":
        p = p.parent
    if (p / "metrics.json").is_file() and not (p / "config.json").is_file():
        try:
            recorded = Path(json.loads((p / "metrics.json").read_text())["final_model"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigError(f"{p / 'metrics.json'}: not a transfer run ({exc})") from exc
        p = recorded if (recorded / "config.json").is_file() else _moved(recorded, p) or recorded
    if not (p / "config.json").is_file():
        raise ConfigError(f"{path}: not a model folder, checkpoint or transfer run (no config.json)")
    return p


def _moved(recorded: Path, near: Path) -> Path | None:
    """Where a model folder recorded as ``recorded`` is now, if its run folder was moved or
    written on another machine (a Ray worker's copy): the shortest end of the recorded path
    that, below a folder above ``near``, is a model folder."""
    parts = recorded.parts
    for k in range(1, len(parts)):
        for above in near.resolve().parents:
            candidate = above.joinpath(*parts[-k:])
            if (candidate / "config.json").is_file():
                return candidate
    return None


def model_preprocess(folder: Path, patch_edge: int) -> PreprocessConfig:
    """The preprocessing a model was trained with (``config.json``'s ``preprocess``).

    Models saved before the entry existed trained on the cube of their patch edge.

    Raises:
        ConfigError: an unreadable or invalid entry.
    """
    try:
        saved = json.loads((folder / "config.json").read_text()).get("preprocess")
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{folder / 'config.json'}: unreadable ({exc})") from exc
    if saved is None:
        return PreprocessConfig(size=patch_edge)
    try:
        spacing = saved.get("spacing")
        return PreprocessConfig(size=int(saved["size"]), spacing=tuple(spacing) if spacing is not None else None)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{folder / 'config.json'}: invalid preprocess entry ({exc})") from exc


def input_files(inputs: Sequence[str | Path]) -> list[Path]:
    """NIfTI files named directly or found (non-recursively) in folders.

    Raises:
        ConfigError: a missing path, or no NIfTI file at all.
    """
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.name.endswith(NIFTI_ENDINGS))
        elif p.is_file():
            files.append(p)
        else:
            raise ConfigError(f"{p}: not found")
    if not files:
        raise ConfigError("no NIfTI input found (expected .nii or .nii.gz files)")
    return files


def predict_files(model_path: str | Path, inputs: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """Predict every input image and write ``out_dir/NAME`` with the input's affine.

    Raises:
        ConfigError: a bad model path or input list.
        DatasetError: an input that is not a readable 3-D NIfTI image.
    """
    folder = resolve_model_folder(model_path)
    files = input_files(inputs)
    device = select_device()
    model, network = load_model(folder, device)
    patch = tuple(network.patch_size or ())
    config = model_preprocess(folder, int(patch[0]))
    written = []
    for path in files:
        image, props = read_image(path)
        if image.ndim != 3:
            raise DatasetError(f"{path}: expected a 3-D image (one channel), found shape {image.shape}")
        if not np.isfinite(image).all():
            raise DatasetError(f"{path}: image contains NaN or inf")
        with single_threaded():
            grid, _, box = preprocess_arrays(image[None], np.zeros(image.shape, np.int64), config, props.spacing[:3])
        label = restore_label(predict_volume(model, grid, patch, device), image.shape, box)
        name = path.name if path.name.endswith(NIFTI_ENDINGS) else f"{path.name}.nii.gz"
        dest = Path(out_dir) / name
        write_image(dest, label, props.affine)
        written.append(dest)
    return written
