"""Checkpoints with the names nnU-Net users know, written atomically.

``checkpoint_latest.pth`` is rewritten every ``checkpoint_every`` steps and removed once
``checkpoint_final.pth`` is written (as nnU-Net does). A checkpoint is a ``torch.save`` dict:

* ``format``: :data:`CHECKPOINT_FORMAT`;
* ``step``: completed steps;
* ``model``, ``optimizer``, ``scheduler``: the ``state_dict`` of each;
* ``rng``: ``{"numpy": Generator.bit_generator.state}``, the trainer's only random state
  (torch and MONAI are re-seeded from it at every step, see :mod:`.loop`);
* ``history``: per-step ``losses``, ``penalties``, ``lrs``;
* ``train_config``: the :class:`~seqtransfer.training.loop.TrainConfig` as a dict.

It is read with ``weights_only=True``: loading never executes code from the file.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqtransfer.core.atomic import atomic_path
from seqtransfer.core.errors import StoreError

CHECKPOINT_LATEST = "checkpoint_latest.pth"
CHECKPOINT_FINAL = "checkpoint_final.pth"
CHECKPOINT_FORMAT = 1
REQUIRED_KEYS = ("format", "step", "model", "optimizer", "scheduler", "rng", "history", "train_config")


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Atomically ``torch.save`` ``state`` to ``path``.

    The archive is built in memory first: written to a file, torch names the archive's records
    after that (temporary, random) file, so equal states would give different bytes; from memory
    the names are fixed, and a checkpoint's bytes depend on its content only (a run on a cluster
    and one on a laptop can be compared byte for byte).

    Raises:
        StoreError: the file cannot be written.
    """
    dest = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with atomic_path(dest, suffix=".pth") as tmp:
        try:
            with open(tmp, "wb") as handle:
                handle.write(buffer.getbuffer())
        except OSError as exc:  # a full disk is named as such
            raise StoreError(f"{dest}: cannot write ({write_failure(tmp, exc)})") from exc
    return dest


def write_failure(path: Path, exc: BaseException) -> str:
    """Why a write failed, in words: a full disk is named as such."""
    try:
        if shutil.disk_usage(path.parent).free < 1 << 20:
            return "No space left on device"
    except OSError:
        pass
    return _one_line(exc)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    first = first if len(first) <= 160 else first[:157] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def load_checkpoint(path: str | os.PathLike[str], require_training_state: bool = True) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, on the CPU.

    Args:
        path: the file.
        require_training_state: also require the optimizer, scheduler, RNG and history
            entries (needed to resume); only ``model`` otherwise.

    Raises:
        StoreError: the file is missing, truncated, corrupt, or not a seqtransfer
            checkpoint (one line naming the file).
    """
    file = Path(path)
    if not file.is_file():
        raise StoreError(f"{file}: checkpoint not found")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise StoreError(f"{file}: corrupt or unreadable checkpoint ({_one_line(exc)})") from exc
    if not isinstance(state, dict):
        raise StoreError(f"{file}: not a seqtransfer checkpoint (a {type(state).__name__}, expected a dict)")
    required = REQUIRED_KEYS if require_training_state else ("model",)
    missing = [k for k in required if k not in state]
    if missing:
        raise StoreError(f"{file}: not a seqtransfer checkpoint (missing {', '.join(missing)})")
    if require_training_state and state["format"] != CHECKPOINT_FORMAT:
        raise StoreError(f"{file}: checkpoint format {state['format']!r}, this version reads {CHECKPOINT_FORMAT}")
    return state


def load_weights(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Load the model weights of a checkpoint into ``model`` (every key must match).

    Raises:
        StoreError: the checkpoint is unreadable or its weights do not fit ``model``.
    """
    state = load_checkpoint(path, require_training_state=False)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise StoreError(f"{Path(path)}: weights do not fit the model ({_one_line(exc)})") from exc
    return model
