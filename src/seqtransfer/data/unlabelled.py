"""The unlabelled images of a new target: nnU-Net's ``imagesTs/`` (or folders given by the user).

nnU-Net names the images of a case ``CASE_XXXX{file_ending}``, one file per channel, with
the channels of the dataset's ``channel_names``. Every file is checked before any training
starts: the naming, every channel present and none extra, a readable 3-D image with finite
values, the channels of a case of one shape. A case may have another shape or spacing than
the labelled cases: it is resampled for the network and the prediction is mapped back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqtransfer.core.errors import ConfigError, DatasetError
from seqtransfer.core.progress import Progress, report
from seqtransfer.data.io import read_image


@dataclass(frozen=True)
class UnlabelledCase:
    """One image to segment.

    Attributes:
        case_id: nnU-Net case identifier (the file name without ``_XXXX`` and the ending).
        images: one file per channel, in channel order.
    """

    case_id: str
    images: tuple[Path, ...]


def _files(inputs: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found = sorted(f for f in item.iterdir() if not f.name.startswith(".") and f.is_file())
            if not found:
                raise ConfigError(f"{item}: no image to predict (empty folder)")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise ConfigError(f"{item}: not found")
    return files


def find_unlabelled(inputs: Sequence[str | Path], n_channels: int, file_ending: str) -> list[UnlabelledCase]:
    """Group nnU-Net-named image files into cases, checking the names and the channels.

    Args:
        inputs: folders (their files, not recursively) or files.
        n_channels: channels of the dataset.
        file_ending: the dataset's ``file_ending`` (``.nii.gz``).

    Returns:
        The cases, sorted by id.

    Raises:
        ConfigError: a missing path or an empty folder.
        DatasetError: a file not named ``CASE_XXXX{file_ending}``, a case missing a channel or
            with a channel the dataset does not have, or one case found twice.
    """
    pattern = re.compile(rf"^(.+)_(\d{{4}}){re.escape(file_ending)}$")
    by_case: dict[str, dict[int, Path]] = {}
    for path in _files([Path(p) for p in inputs]):
        match = pattern.match(path.name)
        if not match:
            raise DatasetError(f"{path}: not an nnU-Net image name (expected CASE_XXXX{file_ending})")
        case, channel = match.group(1), int(match.group(2))
        if channel >= n_channels:
            raise DatasetError(f"{path}: channel {channel}, but the dataset has {n_channels} channel(s)")
        channels = by_case.setdefault(case, {})
        if channel in channels:
            raise DatasetError(f"{path}: case {case!r} channel {channel} also in {channels[channel]}")
        channels[channel] = path
    cases = []
    for case, channels in sorted(by_case.items()):
        missing = [c for c in range(n_channels) if c not in channels]
        if missing:
            where = next(iter(channels.values())).parent
            path = where / f"{case}_{missing[0]:04d}{file_ending}"
            raise DatasetError(f"{path}: missing (case {case!r} needs {n_channels} channel(s))")
        cases.append(UnlabelledCase(case, tuple(channels[c] for c in range(n_channels))))
    return cases


def check_unlabelled(cases: Sequence[UnlabelledCase], progress: Progress | None = None) -> None:
    """Read every image once: 3-D, finite, the channels of a case of one shape.

    Raises:
        DatasetError: naming the file.
    """
    for done, case in enumerate(cases, start=1):
        shape: tuple[int, ...] | None = None
        for path in case.images:
            data, _ = read_image(path)
            if data.ndim != 3:
                raise DatasetError(f"{path}: expected a 3-D image, found shape {data.shape}")
            if not np.isfinite(data).all():
                raise DatasetError(f"{path}: image contains NaN or inf")
            if shape is not None and data.shape != shape:
                raise DatasetError(f"{path}: shape {data.shape} differs from channel 0's {shape}")
            shape = data.shape
        report(progress, "", done, len(cases))
