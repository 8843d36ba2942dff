"""Preprocessing to what the network and the affinity see (METHOD section 2).

Per case: crop every channel and the label to the nonzero region of the image channels
(nnU-Net's crop), z-score each channel inside its nonzero foreground (nnU-Net's MRI
normalisation, MONAI ``NormalizeIntensity(nonzero=True, channel_wise=True)``), then resample
(MONAI ``Resize``: trilinear with anti-aliasing for images, nearest for labels) to one of two
grids:

* a common cube of ``size`` voxels a side (``spacing=None``, the default): what the affinity
  compares, and the CPU preset's training grid (the whole case is one network patch, so a
  laptop trains in minutes; the aspect ratio is not kept);
* a target voxel spacing (``spacing=(sx, sy, sz)`` mm), as nnU-Net resamples: the cropped
  region keeps its physical extent, ``round(extent / spacing)`` voxels per axis, so a
  240x240x155 BraTS case at 1 mm stays about that size and training samples patches from it
  (:class:`~seqtransfer.training.augment.PatchSampler`) while inference slides windows over it.
  :func:`median_spacing` gives nnU-Net's default target, the per-axis median spacing.

The result of a case is cached on disk under a key made of the content hashes of its files
and the preprocessing parameters, written atomically. Every task of a case (all channels x
all objectives) reads the same cached arrays: tasks sharing images or labels share the work.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from monai.transforms import NormalizeIntensity, Resize
from monai.transforms.utils import generate_spatial_bounding_box

from seqtransfer.core.atomic import publish_dir_mode
from seqtransfer.core.config import default_cache_dir
from seqtransfer.core.errors import ConfigError, StoreError
from seqtransfer.core.progress import Progress, report
from seqtransfer.core.threads import single_threaded
from seqtransfer.data.dataset import Case
from seqtransfer.data.io import read_header, read_image

#: bump when the preprocessing itself changes, so old cache entries are not reused.
PREPROCESS_VERSION = 3


@dataclass(frozen=True)
class PreprocessConfig:
    """Parameters of the preprocessing.

    Attributes:
        size: edge length in voxels of the common cubic grid.
    """

    size: int = 32
    spacing: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 8 or self.size > 512:
            raise ConfigError(f"size must be an integer in 8..512, got {self.size!r}")
        if self.spacing is not None:
            try:
                spacing = tuple(float(v) for v in self.spacing)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"spacing must be 3 numbers (mm), got {self.spacing!r}") from exc
            if len(spacing) != 3 or not all(np.isfinite(v) and v > 0 for v in spacing):
                raise ConfigError(f"spacing must be 3 positive numbers (mm), got {self.spacing!r}")
            object.__setattr__(self, "spacing", spacing)

    def fingerprint(self) -> str:
        """A stable digest of the parameters and the preprocessing version."""
        params = asdict(self)
        if self.spacing is None:  # the cube grid's digest predates the spacing option
            del params["spacing"]
        else:
            params["spacing"] = list(self.spacing)
        blob = json.dumps({"version": PREPROCESS_VERSION, **params}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def grid_shape(self, box_shape: Sequence[int], spacing: Sequence[float]) -> tuple[int, int, int]:
        """The resampled shape of a cropped region of ``box_shape`` voxels at ``spacing`` mm.

        Raises:
            ConfigError: the result would exceed :data:`MAX_GRID_EDGE` voxels on an axis.
        """
        if self.spacing is None:
            return (self.size, self.size, self.size)
        shape = tuple(max(1, round(n * s / t)) for n, s, t in zip(box_shape, spacing, self.spacing, strict=True))
        if max(shape) > MAX_GRID_EDGE:
            raise ConfigError(
                f"target spacing {self.spacing} mm turns a region of {tuple(box_shape)} voxels at {tuple(spacing)} mm "
                f"into {shape} voxels (more than {MAX_GRID_EDGE} on an axis); choose a coarser spacing"
            )
        return (shape[0], shape[1], shape[2])


#: the largest edge a resampled case may have (guards against a spacing typo filling the disk).
MAX_GRID_EDGE = 1024


def median_spacing(cases: Iterable[Case]) -> tuple[float, float, float]:
    """nnU-Net's default target spacing: the per-axis median voxel spacing of the cases' images.

    Raises:
        ConfigError: no cases.
    """
    spacings = [read_header(case.images[0]).spacing[:3] for case in cases]
    if not spacings:
        raise ConfigError("no cases to take the median spacing of")
    med = np.median(np.asarray(spacings, dtype=np.float64), axis=0)
    return (float(med[0]), float(med[1]), float(med[2]))


_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, memoised on (path, size, mtime) within the process."""
    p = Path(path).resolve()
    stat = p.stat()
    key = (str(p), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(p, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def case_digest(case: Case) -> str:
    """Content digest of all files of a case (images in channel order, then the label)."""
    h = hashlib.sha256()
    for path in (*case.images, case.label):
        h.update(file_digest(path).encode())
    return h.hexdigest()


Box = tuple[tuple[int, int], ...]


def nonzero_box(images: np.ndarray) -> Box:
    """Per spatial axis the half-open range ``(start, end)`` of the images' nonzero voxels.

    Args:
        images: ``[C, X, Y, Z]`` channels; the box covers a voxel nonzero in any channel.

    Returns:
        The box; the whole volume when every voxel is zero.
    """
    start, end = generate_spatial_bounding_box(images, select_fn=lambda x: x != 0)
    if any(e <= s for s, e in zip(start, end, strict=True)):
        return tuple((0, int(n)) for n in images.shape[1:])
    return tuple((int(s), int(e)) for s, e in zip(start, end, strict=True))


def crop_to_nonzero(images: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop channels ``[C, X, Y, Z]`` and label ``[X, Y, Z]`` to the images' nonzero box.

    A case whose images are all zero is returned unchanged.
    """
    box = tuple(slice(s, e) for s, e in nonzero_box(images))
    return images[(slice(None), *box)], label[box]


def zscore_foreground(images: np.ndarray) -> np.ndarray:
    """Z-score each channel inside its nonzero voxels; zero stays zero (nnU-Net's MRI scheme)."""
    out = NormalizeIntensity(nonzero=True, channel_wise=True)(images)
    return np.asarray(out, dtype=np.float32)


def resample_to_grid(
    images: np.ndarray, label: np.ndarray, shape: int | Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Resample channels (trilinear, anti-aliased) and label (nearest) to ``shape`` (an int: a cube)."""
    shape = (shape, shape, shape) if isinstance(shape, int) else tuple(int(n) for n in shape)
    img = Resize(shape, mode="trilinear", anti_aliasing=True)(torch.from_numpy(np.ascontiguousarray(images)))
    lab = Resize(shape, mode="nearest-exact")(torch.from_numpy(np.ascontiguousarray(label[None].astype(np.float32))))
    return np.asarray(img, dtype=np.float32), np.asarray(lab[0]).round().astype(np.uint8)


def preprocess_arrays(
    images: np.ndarray,
    label: np.ndarray,
    config: PreprocessConfig,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> tuple[np.ndarray, np.ndarray, Box]:
    """Crop, normalise and resample one case.

    Args:
        images: ``[C, X, Y, Z]`` channels.
        label: ``[X, Y, Z]`` integer label map (zeros when there is none, e.g. at inference).
        config: preprocessing parameters.
        spacing: the images' voxel spacing (mm); used when ``config.spacing`` is set.

    Returns:
        float32 images ``[C, *grid]``, uint8 labels ``grid`` (``config.grid_shape``: the
        ``size`` cube, or the cropped region at the target spacing) and the crop box, which
        :func:`restore_label` needs to invert the preprocessing.
    """
    box = nonzero_box(images)
    crop = tuple(slice(s, e) for s, e in box)
    images, label = images[(slice(None), *crop)], label[crop]
    images = zscore_foreground(images)
    grid = config.grid_shape([e - s for s, e in box], spacing)
    image_pp, label_pp = resample_to_grid(images, label, grid)
    return image_pp, label_pp, box


def restore_label(label: np.ndarray, shape: tuple[int, ...], box: Box) -> np.ndarray:
    """Invert the preprocessing for a label on the grid: resample to the box, pad to ``shape``.

    Args:
        label: integer labels on the preprocessing grid (any shape).
        shape: spatial shape of the original image.
        box: the crop box returned by :func:`preprocess_arrays`.

    Returns:
        uint8 labels in the original image's voxel grid (zero outside the box).
    """
    box_shape = tuple(e - s for s, e in box)
    resized = Resize(box_shape, mode="nearest-exact")(
        torch.from_numpy(np.ascontiguousarray(label[None].astype(np.float32)))
    )
    out = np.zeros(shape, dtype=np.uint8)
    out[tuple(slice(s, e) for s, e in box)] = np.asarray(resized[0]).round().astype(np.uint8)
    return out


def restore_probability(probability: np.ndarray, shape: tuple[int, ...], box: Box) -> np.ndarray:
    """Invert the preprocessing for a probability map: trilinear resampling to the box, 0 outside.

    nnU-Net resamples probabilities, not labels, back to the original grid; thresholding
    (or comparing) them there gives smoother boundaries than resampling a label map.

    Args:
        probability: ``[X, Y, Z]`` values in [0, 1] on the preprocessing grid.
        shape: spatial shape of the original image.
        box: the crop box returned by :func:`preprocess_arrays`.

    Returns:
        float32 ``shape`` array in the original voxel grid.
    """
    box_shape = tuple(e - s for s, e in box)
    resized = Resize(box_shape, mode="trilinear")(
        torch.from_numpy(np.ascontiguousarray(probability[None], dtype=np.float32))
    )
    out = np.zeros(shape, dtype=np.float32)
    out[tuple(slice(s, e) for s, e in box)] = np.clip(np.asarray(resized[0]), 0.0, 1.0)
    return out


@dataclass(frozen=True)
class PreprocessedCase:
    """A case on the preprocessing grid.

    Attributes:
        image: ``[C, X, Y, Z]`` float32 (read-only memory map).
        label: ``[X, Y, Z]`` uint8 label map with the dataset's values.
    """

    image: np.ndarray
    label: np.ndarray

    def foreground(self, label_values: tuple[int, ...]) -> np.ndarray:
        """A task's binary label: 1 where the label map holds one of ``label_values`` (uint8)."""
        return np.isin(self.label, label_values).astype(np.uint8)


class PreprocessCache:
    """On-disk cache of preprocessed cases keyed by content hash and parameters.

    Args:
        root: cache folder (created on demand).
        config: preprocessing parameters.
    """

    def __init__(self, root: str | Path | None = None, config: PreprocessConfig | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.config = config or PreprocessConfig()
        self._loaded: dict[str, PreprocessedCase] = {}
        self.computed = 0

    def key(self, case: Case) -> str:
        """The cache key of a case: digest of its files and of the parameters."""
        return hashlib.sha256(f"{case_digest(case)}:{self.config.fingerprint()}".encode()).hexdigest()

    def _entry(self, key: str) -> Path:
        return self.root / "preprocessed" / key[:2] / key

    def _read(self, entry: Path) -> PreprocessedCase | None:
        try:
            image = np.load(entry / "image.npy", mmap_mode="r")
            label = np.load(entry / "label.npy", mmap_mode="r")
        except (OSError, ValueError, EOFError):
            return None
        if image.ndim != 4 or label.ndim != 3 or image.shape[1:] != label.shape:
            return None
        if self.config.spacing is None and label.shape != (self.config.size,) * 3:
            return None
        return PreprocessedCase(image=image, label=label)

    def _write(
        self, entry: Path, image: np.ndarray, label: np.ndarray, case: Case, geometry: dict[str, object]
    ) -> None:
        tmp: Path | None = None
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
            publish_dir_mode(tmp)  # mkdtemp makes it 0700; the entry gets an ordinary folder's mode
            np.save(tmp / "image.npy", image)
            np.save(tmp / "label.npy", label)
            meta = {
                "case": case.case_id,
                "files": [str(p) for p in (*case.images, case.label)],
                "config": asdict(self.config),
                **geometry,
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
            self._publish(tmp, entry)
            tmp = None
        except OSError as exc:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            raise StoreError(f"{entry}: cannot write preprocessed case ({exc.strerror or exc})") from exc

    def _publish(self, tmp: Path, entry: Path) -> None:
        """Move a finished entry into place without ever removing a readable one.

        Several processes may preprocess the same case at once (pool workers training tasks
        that share cases). The first rename wins; a later writer finds the entry there and,
        if it reads, drops its own copy (the content is the same). Only an unreadable
        entry (a leftover of an old crash) is moved aside and replaced; readers therefore
        never see a valid entry disappear.
        """
        for _ in range(5):
            try:
                os.rename(tmp, entry)
                return
            except OSError:
                if not entry.exists():
                    raise
            if self._read(entry) is not None:  # another writer finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return
            stale = entry.with_name(f"{entry.name}.stale-{os.getpid()}")
            try:
                os.rename(entry, stale)
            except OSError:
                continue  # someone else moved or replaced it: look again
            shutil.rmtree(stale, ignore_errors=True)
        raise OSError(f"could not publish {entry} (concurrent writers)")

    def load(self, case: Case, keep: bool = True) -> PreprocessedCase:
        """The preprocessed arrays of a case, computing and caching them when absent.

        Args:
            case: the case.
            keep: remember the opened memory maps in this object (fast repeated access);
                False when streaming over many cases, so that pages of cases done with are
                not held (the maps are closed when the caller drops the arrays).
        """
        key = self.key(case)
        if key in self._loaded:
            return self._loaded[key]
        entry = self._entry(key)
        cached = self._read(entry) if entry.exists() else None
        if cached is None:
            read = [read_image(p) for p in case.images]
            images = np.stack([data for data, _ in read])
            label = read_image(case.label)[0].round().astype(np.int64)
            with single_threaded():
                image_pp, label_pp, box = preprocess_arrays(images, label, self.config, read[0][1].spacing[:3])
            self._write(entry, image_pp, label_pp, case, {"shape": list(label.shape), "box": [list(b) for b in box]})
            self.computed += 1
            cached = self._read(entry)
            if cached is None:
                raise StoreError(f"{entry}: preprocessed case unreadable right after writing")
        if keep:
            self._loaded[key] = cached
        return cached

    def prepare(self, case: Case) -> None:
        """Make sure a case is preprocessed, without opening it when its entry exists already.

        A damaged entry is found (and recomputed) by the :meth:`load` that reads it later.
        """
        if not (self._entry(self.key(case)) / "label.npy").exists():
            self.load(case, keep=False)

    def geometry(self, case: Case) -> tuple[tuple[int, ...], Box]:
        """Original spatial shape and crop box of a case (for :func:`restore_label`)."""
        self.load(case)
        meta = json.loads((self._entry(self.key(case)) / "meta.json").read_text())
        return tuple(meta["shape"]), tuple((int(s), int(e)) for s, e in meta["box"])

    def ensure(self, cases: Iterable[Case], progress: Progress | None = None) -> None:
        """Preprocess every case not yet cached (each distinct case once)."""
        unique = {c.label: c for c in cases}
        for done, case in enumerate(unique.values(), start=1):
            self.load(case)
            report(progress, "", done, len(unique))

    def task_volume(self, case: Case, channel: int, label_values: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """One case as a task sees it: its channel's image and its binary foreground."""
        pre = self.load(case)
        return pre.image[channel], pre.foreground(label_values)
