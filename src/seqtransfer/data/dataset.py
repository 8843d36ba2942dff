"""nnU-Net v2 raw datasets: ``dataset.json``, case discovery and the sites of cases.

A dataset folder looks like nnU-Net's::

    DatasetXXX_Name/
        dataset.json        channel_names, labels, numTraining, file_ending
        imagesTr/{CASE}_{XXXX}{file_ending}   one file per channel
        labelsTr/{CASE}{file_ending}
        sites.csv           optional, header ``case,site``

Sites are not part of nnU-Net. They come from ``sites.csv`` beside dataset.json, else from a
``sites`` object in dataset.json (``{"case": "site"}``), else the whole dataset is one site
named after the dataset (``Dataset501_Foo`` -> ``Foo``).

Parsing here is structural only (no voxel is read); :mod:`seqtransfer.data.verify` reads the
voxels and reports every problem.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqtransfer.data.io import NIFTI_ENDINGS

REQUIRED_KEYS = ("channel_names", "labels", "numTraining", "file_ending")
_DATASET_NAME = re.compile(r"^Dataset\d{3}_(.+)$")


@dataclass(frozen=True)
class Problem:
    """One problem found in a dataset.

    Attributes:
        severity: ``"error"`` (the dataset is refused) or ``"warning"``.
        path: the file or folder concerned.
        message: what was expected and what was found.
    """

    severity: str
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.path}: {self.message}"


@dataclass(frozen=True)
class Case:
    """One training case.

    Attributes:
        case_id: nnU-Net case identifier.
        images: one image file per channel, in channel order.
        label: the label file.
        site: the acquisition site.
    """

    case_id: str
    images: tuple[Path, ...]
    label: Path
    site: str


@dataclass(frozen=True)
class Dataset:
    """A parsed nnU-Net v2 raw dataset.

    Attributes:
        root: the dataset folder.
        name: the folder's name (``Dataset501_Foo``).
        channel_names: modality names in channel order.
        labels: objective name -> label value(s); region labels map to several values.
        file_ending: e.g. ``.nii.gz``.
        num_training: ``numTraining`` as declared.
        cases: the discovered training cases.
        site_source: where sites came from: ``sites.csv``, ``dataset.json`` or ``single``.
    """

    root: Path
    name: str
    channel_names: tuple[str, ...]
    labels: dict[str, tuple[int, ...]]
    file_ending: str
    num_training: int
    cases: tuple[Case, ...]
    site_source: str

    @property
    def short_name(self) -> str:
        """The dataset name without its ``DatasetXXX_`` prefix."""
        match = _DATASET_NAME.match(self.name)
        return match.group(1) if match else self.name

    @property
    def declared_values(self) -> set[int]:
        """Every label value the dataset declares, background included."""
        values = {0}
        for vals in self.labels.values():
            values.update(vals)
        return values

    @property
    def sites(self) -> tuple[str, ...]:
        """The sites of the dataset, sorted."""
        return tuple(sorted({c.site for c in self.cases}))


def _err(problems: list[Problem], path: Path, message: str) -> None:
    problems.append(Problem("error", path, message))


def _warn(problems: list[Problem], path: Path, message: str) -> None:
    problems.append(Problem("warning", path, message))


def _parse_json(root: Path, problems: list[Problem]) -> dict[str, Any] | None:
    path = root / "dataset.json"
    if not root.exists():
        _err(problems, root, "dataset folder not found")
        return None
    if not root.is_dir():
        _err(problems, root, "not a folder (expected an nnU-Net raw dataset folder)")
        return None
    if not path.is_file():
        _err(problems, path, "dataset.json not found")
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        _err(problems, path, "not UTF-8 text")
        return None
    except json.JSONDecodeError as exc:
        _err(problems, path, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
        return None
    except OSError as exc:
        _err(problems, path, f"unreadable ({exc.strerror or exc})")
        return None
    if not isinstance(meta, dict):
        _err(problems, path, f"expected a JSON object, found {type(meta).__name__}")
        return None
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        _err(problems, path, f"missing required key(s): {', '.join(missing)}")
    return meta


def _parse_channels(meta: dict[str, Any], path: Path, problems: list[Problem]) -> tuple[str, ...] | None:
    channels = meta.get("channel_names", meta.get("modality"))
    if channels is None:
        return None
    if not isinstance(channels, dict) or not channels:
        _err(problems, path, 'channel_names: expected a non-empty object like {"0": "T1"}')
        return None
    try:
        indices = sorted(int(k) for k in channels)
    except (TypeError, ValueError):
        _err(problems, path, f'channel_names: keys must be channel indices "0", "1", ..., found {sorted(channels)}')
        return None
    if indices != list(range(len(indices))):
        _err(problems, path, f"channel_names: indices must be 0..{len(indices) - 1}, found {indices}")
        return None
    names = [channels[k] for k in sorted(channels, key=int)]
    if not all(isinstance(n, str) and n.strip() for n in names):
        _err(problems, path, "channel_names: every channel needs a non-empty name")
        return None
    if len(set(names)) != len(names):
        _err(problems, path, f"channel_names: duplicate names {names}")
        return None
    return tuple(n.strip() for n in names)


def _parse_labels(meta: dict[str, Any], path: Path, problems: list[Problem]) -> dict[str, tuple[int, ...]] | None:
    labels = meta.get("labels")
    if labels is None:
        return None
    if not isinstance(labels, dict) or not labels:
        _err(problems, path, 'labels: expected a non-empty object like {"background": 0, "tumour": 1}')
        return None
    parsed: dict[str, tuple[int, ...]] = {}
    plain: list[int] = []
    for name, value in labels.items():
        vals = value if isinstance(value, list) else [value]
        if not vals or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in vals):
            _err(
                problems,
                path,
                f"labels: value of {name!r} must be a non-negative integer or a list of them, found {value!r}",
            )
            return None
        if not isinstance(value, list):
            plain.append(int(value))
        if name == "background" or vals == [0]:
            continue
        parsed[str(name)] = tuple(int(v) for v in vals)
    if labels.get("background") != 0:
        _err(problems, path, 'labels: "background" must be 0')
        return None
    plain_sorted = sorted(plain)
    if plain_sorted != list(range(len(plain_sorted))):
        _err(problems, path, f"labels: values must be consecutive from 0, found {plain_sorted}")
        return None
    if not parsed:
        _err(problems, path, "labels: no foreground label declared")
        return None
    return parsed


def _parse_sites(
    root: Path, meta: dict[str, Any], default: str, case_ids: list[str], problems: list[Problem]
) -> tuple[dict[str, str], str]:
    csv_path = root / "sites.csv"
    sites: dict[str, str] = {}
    source = "single"
    if csv_path.exists():
        source = "sites.csv"
        try:
            with open(csv_path, newline="", encoding="utf-8") as handle:
                reader = csv.reader(handle)
                header = next(reader, None)
                if header is None or [h.strip().lower() for h in header[:2]] != ["case", "site"]:
                    _err(
                        problems,
                        csv_path,
                        f"expected header 'case,site', found {','.join(header) if header else 'an empty file'}",
                    )
                    return {}, source
                for lineno, row in enumerate(reader, start=2):
                    if not row or all(not c.strip() for c in row):
                        continue
                    if len(row) < 2 or not row[0].strip() or not row[1].strip():
                        _err(problems, csv_path, f"line {lineno}: expected 'case,site', found {','.join(row)!r}")
                        continue
                    case, site = row[0].strip(), row[1].strip()
                    if case in sites and sites[case] != site:
                        _err(
                            problems,
                            csv_path,
                            f"line {lineno}: case {case!r} given two sites ({sites[case]!r}, {site!r})",
                        )
                    sites[case] = site
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            _err(problems, csv_path, f"unreadable ({exc})")
            return {}, source
        where = csv_path
    elif "sites" in meta:
        source = "dataset.json"
        where = root / "dataset.json"
        raw = meta["sites"]
        if not isinstance(raw, dict) or not all(
            isinstance(k, str) and isinstance(v, (str, int)) for k, v in raw.items()
        ):
            _err(problems, where, "sites: expected an object mapping case to site")
            return {}, source
        sites = {k: str(v) for k, v in raw.items()}
    else:
        return {c: default for c in case_ids}, source
    missing = [c for c in case_ids if c not in sites]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        _err(problems, where, f"no site for case(s) {shown}")
    extra = sorted(set(sites) - set(case_ids))
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        _warn(problems, where, f"site given for unknown case(s) {shown}")
    return sites, source


def _discover_cases(
    root: Path, meta: dict[str, Any], n_channels: int, ending: str, problems: list[Problem]
) -> list[tuple[str, tuple[Path, ...], Path]]:
    """Find cases from labelsTr (nnU-Net's rule) or the explicit ``dataset`` entry."""
    images_dir, labels_dir = root / "imagesTr", root / "labelsTr"
    if "dataset" in meta:
        entries = meta["dataset"]
        if not isinstance(entries, dict):
            _err(problems, root / "dataset.json", "dataset: expected an object {case: {images: [...], label: ...}}")
            return []
        found = []
        for case_id, entry in entries.items():
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("images"), list)
                or not isinstance(entry.get("label"), str)
            ):
                _err(
                    problems,
                    root / "dataset.json",
                    f"dataset: entry {case_id!r} needs 'images' (list) and 'label' (path)",
                )
                continue
            images = tuple((root / p) if not Path(p).is_absolute() else Path(p) for p in entry["images"])
            label = (root / entry["label"]) if not Path(entry["label"]).is_absolute() else Path(entry["label"])
            if len(images) != n_channels:
                _err(
                    problems,
                    root / "dataset.json",
                    f"dataset: case {case_id!r} lists {len(images)} image(s), expected {n_channels} channel(s)",
                )
                continue
            found.append((str(case_id), images, label))
        return found
    for folder in (images_dir, labels_dir):
        if not folder.is_dir():
            _err(problems, folder, "folder not found")
    if problems and any(p.severity == "error" for p in problems):
        return []
    found = []
    label_files = sorted(p for p in labels_dir.iterdir() if not p.name.startswith("."))
    expected_images: set[str] = set()
    for label in label_files:
        if not label.name.endswith(ending):
            _err(problems, label, f"unexpected file in labelsTr (file_ending is {ending!r})")
            continue
        case_id = label.name[: -len(ending)]
        images = tuple(images_dir / f"{case_id}_{c:04d}{ending}" for c in range(n_channels))
        expected_images.update(p.name for p in images)
        found.append((case_id, images, label))
    for image in sorted(images_dir.iterdir()):
        if image.name.startswith(".") or image.name in expected_images:
            continue
        match = re.match(rf"^(.+)_(\d{{4}}){re.escape(ending)}$", image.name)
        if match and (labels_dir / f"{match.group(1)}{ending}").exists():
            _err(
                problems,
                image,
                f"channel {int(match.group(2))} not declared (dataset.json has {n_channels} channel(s))",
            )
        elif match:
            _err(problems, image, f"image without a label (labelsTr/{match.group(1)}{ending} missing)")
        else:
            _err(problems, image, f"unexpected file in imagesTr (expected CASE_XXXX{ending})")
    return found


def parse_dataset(root: str | Path) -> tuple[Dataset | None, list[Problem]]:
    """Parse a dataset's structure without reading voxels.

    Args:
        root: the dataset folder.

    Returns:
        The dataset (``None`` when it cannot be parsed at all) and every structural problem
        found: bad or incomplete dataset.json, missing folders, missing or extra files,
        ``numTraining`` mismatch, bad sites, empty dataset.
    """
    root = Path(root)
    problems: list[Problem] = []
    meta = _parse_json(root, problems)
    if meta is None:
        return None, problems
    json_path = root / "dataset.json"
    channels = _parse_channels(meta, json_path, problems)
    labels = _parse_labels(meta, json_path, problems)
    ending = meta.get("file_ending")
    if "file_ending" in meta and (not isinstance(ending, str) or not ending.startswith(".")):
        _err(problems, json_path, f"file_ending: expected a string like '.nii.gz', found {ending!r}")
        ending = None
    elif isinstance(ending, str) and ending not in NIFTI_ENDINGS:
        _err(problems, json_path, f"file_ending: {ending!r} is not NIfTI (supported: .nii.gz, .nii)")
        ending = None
    num_training = meta.get("numTraining")
    if "numTraining" in meta and (
        not isinstance(num_training, int) or isinstance(num_training, bool) or num_training < 0
    ):
        _err(problems, json_path, f"numTraining: expected a non-negative integer, found {num_training!r}")
        num_training = None
    if channels is None or labels is None or ending is None or num_training is None or problems:
        return None, problems
    found = _discover_cases(root, meta, len(channels), ending, problems)
    if not found and not any(p.severity == "error" for p in problems):
        _err(problems, root, "empty dataset: no training cases in labelsTr")
    if found and len(found) != num_training:
        _err(problems, json_path, f"numTraining is {num_training} but {len(found)} case(s) were found")
    name = root.resolve().name
    named = _DATASET_NAME.match(name)
    default_site = named.group(1) if named else name
    sites, source = _parse_sites(root, meta, default_site, [c for c, _, _ in found], problems)
    cases = tuple(Case(case_id=c, images=imgs, label=lab, site=sites.get(c, default_site)) for c, imgs, lab in found)
    dataset = Dataset(
        root=root,
        name=name,
        channel_names=channels,
        labels=labels,
        file_ending=ending,
        num_training=num_training,
        cases=cases,
        site_source=source,
    )
    return dataset, problems
