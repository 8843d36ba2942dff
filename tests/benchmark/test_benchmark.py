"""Tests of the embedded benchmark generator (seqtransfer.benchmark).

One small benchmark (size 24, 4 cases per site, 2 tumour sites) is generated per module and
shared; determinism tests generate two more at size 16. The new hospital
(``Dataset504_NewClinicLike``) is generated once at size 16 and shared too. Appearance checks compare intensities
inside labels, so they fail when a modality's contrast is wrong, not just when files are missing.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from seqtransfer.benchmark import (
    DEEP_GREY_DATASET,
    DEEP_GREY_LABELS,
    DEEP_GREY_SITES,
    LESION_DATASET,
    LESION_SITES,
    MODALITY_ALIASES,
    NEW_TARGET_DATASET,
    OBJECTIVE_GROUPS,
    TISSUE_DATASET,
    TUMOUR_DATASET,
    BenchmarkConfig,
    Grid,
    load_anatomy,
    make_benchmark,
    make_new_target,
    nearest,
    rician_noise,
    site_grid,
    smooth_upsample,
    subject_anatomy,
    template_tables,
    thick_slices,
    trilinear,
    tumour_labels,
)
from seqtransfer.core.errors import ConfigError

SMALL = BenchmarkConfig(seed=3, size=24, cases=4, tumour_sites=2)
DATASETS = (TUMOUR_DATASET, TISSUE_DATASET, LESION_DATASET)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, int, int]]]:
    out = tmp_path_factory.mktemp("bench")
    calls: list[tuple[str, int, int]] = []
    roots = make_benchmark(out, SMALL, progress=lambda e: calls.append((e.stage, e.done, e.total)))
    assert roots == [out / name for name in DATASETS]
    return out, calls


@pytest.fixture
def bench(generated: tuple[Path, list[tuple[str, int, int]]]) -> Path:
    return generated[0]


def _load(path: Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    img = nib.load(str(path))
    return np.asarray(img.dataobj), img


def _cases(root: Path) -> list[tuple[str, str]]:
    with open(root / "sites.csv", newline="") as handle:
        return [(row["case"], row["site"]) for row in csv.DictReader(handle)]


def _case_arrays(root: Path, case: str) -> tuple[list[np.ndarray], np.ndarray]:
    meta = json.loads((root / "dataset.json").read_text())
    images = [_load(root / "imagesTr" / f"{case}_{int(c):04d}.nii.gz")[0] for c in meta["channel_names"]]
    return images, _load(root / "labelsTr" / f"{case}.nii.gz")[0]


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "kwargs",
    [{"size": 15}, {"cases": 3}, {"tumour_sites": 1}, {"seed": -1}, {"size": 24.0}, {"cases": True}],
)
def test_bad_config_raises_config_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as info:
        BenchmarkConfig(**kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_minimal_config_is_accepted() -> None:
    BenchmarkConfig(seed=0, size=16, cases=4, tumour_sites=2)


def test_refuses_to_mix_with_another_runs_files(tmp_path: Path) -> None:
    stale = tmp_path / TUMOUR_DATASET / "imagesTr" / "inst9_001_0000.nii.gz"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    with pytest.raises(ConfigError, match="inst9_001_0000"):
        make_benchmark(tmp_path, SMALL)


# --------------------------------------------------------------------------- format


def test_dataset_json_follows_nnunet(bench: Path) -> None:
    expected = {
        TUMOUR_DATASET: (["T1", "T1ce", "T2", "FLAIR"], ["background", "NCR", "ED", "ET"], 2),
        TISSUE_DATASET: (["T1", "T2"], ["background", "CSF", "GM", "WM"], 1),
        LESION_DATASET: (["FLAIR"], ["background", "WMH"], 3),
    }
    for name, (channels, labels, n_sites) in expected.items():
        meta = json.loads((bench / name / "dataset.json").read_text())
        assert {"channel_names", "labels", "numTraining", "file_ending", "description"} <= meta.keys()
        assert meta["channel_names"] == {str(i): c for i, c in enumerate(channels)}
        assert list(meta["labels"]) == labels
        assert list(meta["labels"].values()) == list(range(len(labels)))
        assert meta["numTraining"] == n_sites * SMALL.cases
        assert meta["file_ending"] == ".nii.gz"
        assert "synthetic" in meta["description"].lower()


def test_objective_groups_and_readme(bench: Path) -> None:
    groups = json.loads((bench / "objective_groups.json").read_text())
    assert groups == OBJECTIVE_GROUPS
    assert {groups[k] for k in ("NCR", "ED", "ET", "WMH")} == {"lesion"}
    assert {groups[k] for k in ("CSF", "GM", "WM")} == {"tissue"}
    readme = (bench / "README.txt").read_text()
    assert "SYNTHETIC" in readme and "MNI152" in readme and "AAL" in readme and "clinical" in readme


def test_sites_csv_covers_every_case_once(bench: Path) -> None:
    for name in DATASETS:
        root = bench / name
        assert (root / "sites.csv").read_text().splitlines()[0] == "case,site"
        rows = _cases(root)
        ids = [case for case, _ in rows]
        assert len(ids) == len(set(ids))
        labels = {p.name[: -len(".nii.gz")] for p in (root / "labelsTr").glob("*.nii.gz")}
        assert set(ids) == labels
        for case, site in rows:
            assert "-" not in site and case.startswith(f"{site}_")
    assert {s for _, s in _cases(bench / TUMOUR_DATASET)} == {"inst1", "inst2"}
    assert {s for _, s in _cases(bench / LESION_DATASET)} == {name for name, _ in LESION_SITES}


def test_every_case_is_complete_and_consistent(bench: Path) -> None:
    for name in DATASETS:
        root = bench / name
        meta = json.loads((root / "dataset.json").read_text())
        declared = set(meta["labels"].values())
        for case, _ in _cases(root):
            label, label_img = _load(root / "labelsTr" / f"{case}.nii.gz")
            assert label_img.get_data_dtype() == np.uint8
            assert set(np.unique(label).tolist()) <= declared
            nonzero_any = np.zeros(label.shape, dtype=bool)
            for channel in meta["channel_names"]:
                image, img = _load(root / "imagesTr" / f"{case}_{int(channel):04d}.nii.gz")
                assert img.get_data_dtype() == np.float32
                assert image.shape == label.shape
                np.testing.assert_allclose(img.affine, label_img.affine)
                assert np.isfinite(image).all() and image.min() >= 0
                nonzero_any |= image > 0
            # crop-to-nonzero must keep every labelled voxel and remove real background
            assert nonzero_any[label > 0].all()
            assert 0.05 < nonzero_any.mean() < 0.8


def test_affine_is_ras_with_site_spacing(bench: Path) -> None:
    spacings = {}
    for case, site in _cases(bench / LESION_DATASET):
        _, img = _load(bench / LESION_DATASET / "labelsTr" / f"{case}.nii.gz")
        assert np.all(np.diag(img.affine)[:3] > 0)  # RAS
        spacings.setdefault(site, set()).add(tuple(np.round(img.header.get_zooms(), 4)))
    assert all(len(v) == 1 for v in spacings.values())
    per_site = {site: np.array(next(iter(v))) for site, v in spacings.items()}
    assert len({tuple(v) for v in per_site.values()}) == 3
    # thick axial slices at the 3 mm sites, near-isotropic at amsterdam (ratios as in WMH)
    for site, relative in LESION_SITES:
        ratio = per_site[site] / per_site[site][0]
        np.testing.assert_allclose(ratio, np.array(relative) / relative[0], rtol=0.02)
    # shapes follow from the spacing: every site covers the same field of view
    fovs = []
    for site, _ in LESION_SITES:
        case = f"{site}_001"
        label, img = _load(bench / LESION_DATASET / "labelsTr" / f"{case}.nii.gz")
        fovs.append(np.array(label.shape) * per_site[site])
    for fov in fovs[1:]:
        np.testing.assert_allclose(fov, fovs[0], atol=max(per_site[s].max() for s, _ in LESION_SITES))


def test_every_objective_is_present_in_most_cases(bench: Path) -> None:
    for name in DATASETS:
        root = bench / name
        meta = json.loads((root / "dataset.json").read_text())
        rows = _cases(root)
        for objective, value in meta["labels"].items():
            if value == 0:
                continue
            present = sum(int((_load(root / "labelsTr" / f"{c}.nii.gz")[0] == value).any()) for c, _ in rows)
            assert present >= 0.7 * len(rows), (name, objective, present)


def test_progress_reports_every_case(generated: tuple[Path, list[tuple[str, int, int]]]) -> None:
    calls = generated[1]
    assert [s for s, _, _ in calls] == sorted((s for s, _, _ in calls), key=DATASETS.index)
    for name, n in ((TUMOUR_DATASET, 8), (TISSUE_DATASET, 4), (LESION_DATASET, 12)):
        mine = [(d, t) for s, d, t in calls if s == name]
        assert mine == [(d, n) for d in range(n + 1)]


def test_generated_datasets_pass_verification(bench: Path) -> None:
    from seqtransfer.data.verify import verify_dataset

    for name in DATASETS:
        errors = [p for p in verify_dataset(bench / name) if p.severity == "error"]
        assert errors == []


# --------------------------------------------------------------------------- determinism


def _all_arrays(root: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(root)): _load(p)[0] for p in sorted(root.rglob("*.nii.gz"))}


def test_same_seed_same_arrays_different_seed_different(tmp_path: Path) -> None:
    config = BenchmarkConfig(seed=11, size=16, cases=4, tumour_sites=2)
    make_benchmark(tmp_path / "a", config)
    make_benchmark(tmp_path / "b", config)
    make_benchmark(tmp_path / "c", BenchmarkConfig(seed=12, size=16, cases=4, tumour_sites=2))
    a, b, c = (_all_arrays(tmp_path / k) for k in "abc")
    assert a.keys() == b.keys() == c.keys() and len(a) == 2 * 4 * 5 + 4 * 3 + 3 * 4 * 2
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].tobytes() == b[key].tobytes(), key
    images = [k for k in a if k.split("/")[1] == "imagesTr"]
    assert all(not np.array_equal(a[k], c[k]) for k in images)
    labels = [k for k in a if k.split("/")[1] == "labelsTr" and not k.startswith(TISSUE_DATASET)]
    assert sum(not np.array_equal(a[k], c[k]) for k in labels) == len(labels)


def test_regenerating_in_place_is_allowed(tmp_path: Path) -> None:
    config = BenchmarkConfig(seed=5, size=16, cases=4, tumour_sites=2)
    make_benchmark(tmp_path, config)
    before = _all_arrays(tmp_path)
    make_benchmark(tmp_path, config)
    after = _all_arrays(tmp_path)
    assert all(before[k].tobytes() == after[k].tobytes() for k in before)


# --------------------------------------------------------------------------- appearance


def _means(image: np.ndarray, label: np.ndarray, values: tuple[int, ...]) -> list[float]:
    return [float(image[label == v].mean()) if (label == v).any() else float("nan") for v in values]


def test_tumour_modalities_look_like_mri(bench: Path) -> None:
    root = bench / TUMOUR_DATASET
    checks = {"flair_oedema": 0, "t1ce_enhances": 0, "t2_necrosis": 0, "t1_dark": 0}
    rows = _cases(root)
    for case, _ in rows:
        (t1, t1ce, t2, flair), label = _case_arrays(root, case)
        healthy = (label == 0) & (flair > 0)
        # relative to the subject's own healthy brain, so site gain and gamma cancel out
        rel = {
            name: im / im[healthy].mean()
            for name, im in zip(("t1", "t1ce", "t2", "flair"), (t1, t1ce, t2, flair), strict=True)
        }
        ncr, ed, et = _means(rel["flair"], label, (1, 2, 3))
        checks["flair_oedema"] += ed > 1.2
        checks["t1ce_enhances"] += _means(rel["t1ce"], label, (3,))[0] > _means(rel["t1"], label, (3,))[0] + 0.3
        ncr_t2 = _means(rel["t2"], label, (1,))[0]
        checks["t2_necrosis"] += bool(np.isnan(ncr_t2) or ncr_t2 > 1.1)
        checks["t1_dark"] += _means(rel["t1"], label, (2,))[0] < 1.0
    for name, count in checks.items():
        assert count >= len(rows) - 1, (name, count)


def test_flair_oedema_brighter_than_normal_white_matter() -> None:
    anatomy = load_anatomy()
    grid = site_grid(anatomy.field_of_view, 32)
    tables = template_tables(anatomy, grid.spacing)
    from seqtransfer.benchmark import render_tumour_modalities

    for seed in range(3):
        rng = np.random.default_rng(seed)
        subject = subject_anatomy(rng, anatomy, tables, grid, extras=("t1",))
        label = tumour_labels(rng, subject, anatomy, 32)
        t1, t1ce, t2, flair = render_tumour_modalities(rng, subject, label)
        normal_wm = (label == 0) & (subject.wm > 0.8) & subject.mask
        assert flair[label == 2].mean() > 1.5 * flair[normal_wm].mean()
        assert t1ce[label == 3].mean() > 1.3 * t1ce[normal_wm].mean()
        assert t1[normal_wm].mean() > t1[subject.csf > 0.8].mean()  # T1: WM bright, CSF dark
        assert t1[label == 1].mean() < t1[normal_wm].mean()  # necrosis hypointense on T1
        assert t2[subject.csf > 0.8].mean() > t2[normal_wm].mean()  # T2: CSF bright


def test_enhancing_rim_is_at_least_two_voxels_thick_at_size_48() -> None:
    anatomy = load_anatomy()
    grid = site_grid(anatomy.field_of_view, 48)
    tables = template_tables(anatomy, grid.spacing)
    with_ncr = 0
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        subject = subject_anatomy(rng, anatomy, tables, grid)
        label = tumour_labels(rng, subject, anatomy, 48)
        core = (label == 1) | (label == 3)
        assert ndi.label(core)[1] == 1  # one tumour core
        ncr = label == 1
        with_ncr += bool(ncr.any())
        # every necrotic voxel lies more than 2 voxels inside the core: the ET shell is >= 2 thick
        assert (ndi.distance_transform_edt(core)[ncr] > 2.0).all()
        assert (label == 2).any() and (label == 3).sum() > 20
    assert with_ncr >= 2


def test_infant_tissue_contrast(bench: Path) -> None:
    root = bench / TISSUE_DATASET
    for case, _ in _cases(root):
        (t1, t2), label = _case_arrays(root, case)
        csf1, gm1, wm1 = _means(t1, label, (1, 2, 3))
        csf2, gm2, wm2 = _means(t2, label, (1, 2, 3))
        assert csf1 < min(gm1, wm1) and csf2 > max(gm2, wm2)  # CSF dark on T1, bright on T2
        assert wm2 > gm2  # 6 months: WM still brighter than GM on T2
        assert wm1 < 1.1 * gm1  # isointense phase: no adult-like bright WM on T1


def test_infant_head_is_smaller(bench: Path) -> None:
    _, tissue_img = _load(bench / TISSUE_DATASET / "labelsTr" / "iseg_001.nii.gz")
    tissue = _load(bench / TISSUE_DATASET / "labelsTr" / "iseg_001.nii.gz")[0]
    (flair,), _ = _case_arrays(bench / LESION_DATASET, "amsterdam_001")
    _, adult_img = _load(bench / LESION_DATASET / "labelsTr" / "amsterdam_001.nii.gz")
    infant_ml = (tissue > 0).sum() * np.prod(tissue_img.header.get_zooms())
    adult_ml = (flair > 0).sum() * np.prod(adult_img.header.get_zooms())
    assert 0.35 < infant_ml / adult_ml < 0.85


def test_wmh_is_hyperintense_and_inside_brain(bench: Path) -> None:
    root = bench / LESION_DATASET
    loads, ratios = [], []
    for case, _ in _cases(root):
        (flair,), label = _case_arrays(root, case)
        lesion = label == 1
        assert lesion.any() and (flair[lesion] > 0).all()
        # against the whole brain (GM is brighter than WM on FLAIR), at 7 mm voxels
        ratios.append(flair[lesion].mean() / flair[(flair > 0) & ~lesion].mean())
        loads.append(int(lesion.sum()))
    assert min(ratios) > 1.0 and np.median(ratios) > 1.2
    assert max(loads) > 5 * min(loads)  # lesion load varies between subjects


def test_sites_differ(bench: Path) -> None:
    root = bench / TUMOUR_DATASET
    stats: dict[str, list[float]] = {}
    for case, site in _cases(root):
        images, _ = _case_arrays(root, case)
        t1 = images[0]
        brain = t1[t1 > 0]
        # gain and the shape of the intensity distribution (contrast curve, noise, blur)
        stats.setdefault(site, []).append(float(np.median(brain)))
    medians = {site: np.median(v) for site, v in stats.items()}
    a, b = medians.values()
    assert max(a, b) / min(a, b) > 1.1


# --------------------------------------------------------------------------- helpers


def test_smooth_upsample_keeps_constants_and_is_smooth() -> None:
    const = np.full((2, 4, 4, 4), 3.0)
    np.testing.assert_allclose(smooth_upsample(const, (9, 10, 11)), 3.0, rtol=1e-6)
    field = smooth_upsample(np.random.default_rng(0).standard_normal((5, 5, 5)), (40, 40, 40))
    assert np.abs(np.diff(field, axis=0)).max() < 0.5 * field.std()


def test_trilinear_and_nearest_match_scipy() -> None:
    rng = np.random.default_rng(0)
    volumes = rng.random((2, 6, 7, 8)).astype(np.float32)
    table = volumes.reshape(2, -1).T.copy()
    coords = rng.uniform(0, 5, size=(3, 200)).astype(np.float32)
    ours = trilinear(table, (6, 7, 8), coords)
    for c in range(2):
        ref = ndi.map_coordinates(volumes[c], coords, order=1, mode="nearest")
        np.testing.assert_allclose(ours[:, c], ref, atol=1e-5)
    labels = rng.integers(0, 9, size=(6, 7, 8)).astype(np.int16)
    coords[:, :5] = -3  # outside the grid: background
    got = nearest(labels.reshape(-1, 1), (6, 7, 8), coords)[:, 0]
    inside = np.all((np.rint(coords) >= 0) & (np.rint(coords) < np.array([6, 7, 8])[:, None]), axis=0)
    np.testing.assert_array_equal(got[inside], ndi.map_coordinates(labels, coords[:, inside], order=0))
    assert (got[~inside] == 0).all()


def test_thick_slices_average_partial_volume() -> None:
    volume = np.arange(2 * 2 * 6, dtype=np.float32).reshape(2, 2, 6)
    np.testing.assert_allclose(thick_slices(volume, 3), volume.reshape(2, 2, 2, 3).mean(-1))
    assert thick_slices(volume, 1) is volume


def test_rician_noise_is_non_negative_and_unbiased_at_high_snr() -> None:
    rng = np.random.default_rng(0)
    image = np.full((20, 20, 20), 1.0, dtype=np.float32)
    noisy = rician_noise(rng, image, 0.05)
    assert noisy.min() >= 0 and abs(noisy.mean() - 1.0) < 0.01 and 0.04 < noisy.std() < 0.06
    background = rician_noise(rng, np.zeros_like(image), 0.05)
    assert background.mean() > 0.05  # Rician bias in the dark: sigma * sqrt(pi / 2)


def test_grid_affine_is_centred_ras() -> None:
    grid = Grid(shape=(4, 5, 6), spacing=(1.0, 2.0, 3.0))
    centre = grid.affine @ np.array([1.5, 2.0, 2.5, 1.0])
    np.testing.assert_allclose(centre[:3], 0.0)
    np.testing.assert_allclose(np.diag(grid.affine)[:3], grid.spacing)


# --------------------------------------------------------------------------- the new hospital

TINY = BenchmarkConfig(seed=3, size=16, cases=4, tumour_sites=2)
NEW_LABELLED, NEW_UNLABELLED = 3, 4


@pytest.fixture(scope="module")
def new_target(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, int, int]]]:
    out = tmp_path_factory.mktemp("newtarget")
    calls: list[tuple[str, int, int]] = []
    root = make_new_target(
        out, TINY, NEW_LABELLED, NEW_UNLABELLED, progress=lambda e: calls.append((e.stage, e.done, e.total))
    )
    assert root == out / NEW_TARGET_DATASET
    return root, calls


def _ids(folder: Path) -> list[str]:
    return sorted(p.name[: -len(".nii.gz")] for p in folder.glob("*.nii.gz"))


def test_new_target_passes_verification(new_target: tuple[Path, list[tuple[str, int, int]]]) -> None:
    from seqtransfer.data.verify import require_valid, verify_dataset

    root = new_target[0]
    assert (root / "imagesTs").is_dir() and (root / "labelsTs").is_dir()
    assert verify_dataset(root) == []  # imagesTs/labelsTs are nnU-Net folders, not problems
    (dataset,), warnings = require_valid([root])
    assert warnings == [] and len(dataset.cases) == NEW_LABELLED and dataset.sites == ("newclinic",)


def test_new_target_names_and_folders(new_target: tuple[Path, list[tuple[str, int, int]]]) -> None:
    root = new_target[0]
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "T1w", "1": "T1Gd", "2": "T2w", "3": "FLAIR"}
    assert meta["labels"] == {"background": 0, "necrosis": 1, "edema": 2, "enhancing": 3}
    assert meta["numTraining"] == NEW_LABELLED and meta["file_ending"] == ".nii.gz"
    assert "synthetic" in meta["description"].lower()
    train, test = _ids(root / "labelsTr"), _ids(root / "labelsTs")
    assert train == [f"newclinic_{i:03d}" for i in range(1, NEW_LABELLED + 1)]
    assert len(test) == NEW_UNLABELLED and not set(train) & set(test)
    assert _cases(root) == [(case, "newclinic") for case in train]
    for images, cases in (("imagesTr", train), ("imagesTs", test)):
        names = sorted(p.name for p in (root / images).iterdir())
        assert names == sorted(f"{c}_{k:04d}.nii.gz" for c in cases for k in range(4)), images
    # the tumour collection's grid at config.size
    grid = site_grid(load_anatomy().field_of_view, TINY.size)
    for labels, images, cases in (("labelsTr", "imagesTr", train), ("labelsTs", "imagesTs", test)):
        for case in cases:
            label, label_img = _load(root / labels / f"{case}.nii.gz")
            assert label_img.get_data_dtype() == np.uint8 and label.shape == grid.shape
            np.testing.assert_allclose(label_img.affine, grid.affine)
            assert set(np.unique(label).tolist()) <= {0, 1, 2, 3} and (label > 0).any()
            for k in range(4):
                image, img = _load(root / images / f"{case}_{k:04d}.nii.gz")
                assert img.get_data_dtype() == np.float32 and image.shape == label.shape
                np.testing.assert_allclose(img.affine, label_img.affine)
                assert np.isfinite(image).all() and image.min() >= 0 and (image > 0).any()


def test_new_target_groups_aliases_and_readme(new_target: tuple[Path, list[tuple[str, int, int]]]) -> None:
    out = new_target[0].parent
    groups = json.loads((out / "objective_groups.json").read_text())
    assert groups == OBJECTIVE_GROUPS
    assert {groups[k] for k in ("necrosis", "edema", "enhancing")} == {"lesion"}
    original = {
        "NCR": "lesion",
        "ED": "lesion",
        "ET": "lesion",
        "WMH": "lesion",
        "CSF": "tissue",
        "GM": "tissue",
        "WM": "tissue",
    }
    assert {k: groups[k] for k in original} == original
    aliases = json.loads((out / "modality_aliases.json").read_text())
    assert aliases == MODALITY_ALIASES == {"T1w": "T1", "T1Gd": "T1ce", "T2w": "T2"}
    readme = (out / "README.txt").read_text()
    assert NEW_TARGET_DATASET in readme and "imagesTs" in readme and "labelsTs" in readme and "SYNTHETIC" in readme


def test_new_target_progress(new_target: tuple[Path, list[tuple[str, int, int]]]) -> None:
    n = NEW_LABELLED + NEW_UNLABELLED
    assert new_target[1] == [(NEW_TARGET_DATASET, d, n) for d in range(n + 1)]


def test_new_target_is_deterministic(new_target: tuple[Path, list[tuple[str, int, int]]], tmp_path: Path) -> None:
    reference = _all_arrays(new_target[0])
    again = _all_arrays(make_new_target(tmp_path / "a", TINY, NEW_LABELLED, NEW_UNLABELLED))
    assert again.keys() == reference.keys() and len(reference) == 5 * (NEW_LABELLED + NEW_UNLABELLED)
    for key in reference:
        assert again[key].dtype == reference[key].dtype and again[key].tobytes() == reference[key].tobytes(), key
    # a case's arrays depend on the seed and its number only, not on the split
    split = _all_arrays(make_new_target(tmp_path / "b", TINY, 1, 1))
    assert len(split) == 10 and all(
        a.tobytes() == reference[k.replace("Ts/", "Tr/")].tobytes() for k, a in split.items()
    )
    other = _all_arrays(
        make_new_target(tmp_path / "c", BenchmarkConfig(seed=4, size=16, cases=4, tumour_sites=2), 1, 1)
    )
    for key, array in other.items():
        assert not np.array_equal(array, reference[key.replace("Ts/", "Tr/")]), key


def test_sources_do_not_depend_on_the_new_target(
    new_target: tuple[Path, list[tuple[str, int, int]]], tmp_path: Path
) -> None:
    make_benchmark(tmp_path / "alone", TINY)
    make_new_target(tmp_path / "both", TINY, NEW_LABELLED, NEW_UNLABELLED)  # first: streams must not shift
    make_benchmark(tmp_path / "both", TINY)
    for name in DATASETS:
        alone, both = _all_arrays(tmp_path / "alone" / name), _all_arrays(tmp_path / "both" / name)
        assert alone.keys() == both.keys() and alone
        for key in alone:
            assert alone[key].tobytes() == both[key].tobytes(), (name, key)
        assert (tmp_path / "alone" / name / "dataset.json").read_bytes() == (
            tmp_path / "both" / name / "dataset.json"
        ).read_bytes()
    # nor the new target on the sources, and the shared files keep the new names
    reference = _all_arrays(new_target[0])
    assert all(
        a.tobytes() == reference[k].tobytes() for k, a in _all_arrays(tmp_path / "both" / NEW_TARGET_DATASET).items()
    )
    assert json.loads((tmp_path / "both" / "objective_groups.json").read_text())["enhancing"] == "lesion"
    # its own scanner and subjects: no image equals a tumour-collection image
    tumour = _all_arrays(tmp_path / "both" / TUMOUR_DATASET)
    for key, array in reference.items():
        if key.startswith("images"):
            assert not any(np.array_equal(array, other) for k, other in tumour.items() if k.startswith("images")), key


def test_new_target_refuses_foreign_files_and_bad_counts(tmp_path: Path) -> None:
    stale = tmp_path / NEW_TARGET_DATASET / "imagesTs" / "newclinic_099_0000.nii.gz"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"")
    with pytest.raises(ConfigError, match="newclinic_099_0000"):
        make_new_target(tmp_path, TINY)
    for kwargs in ({"labelled": 0}, {"unlabelled": -1}, {"labelled": True}, {"unlabelled": 2.0}):
        with pytest.raises(ConfigError):
            make_new_target(tmp_path / "bad", TINY, **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "bad").exists()


def test_cli_benchmark_make_writes_the_new_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from seqtransfer.cli import main

    def run(argv: list[str]) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as info:
            main(argv)
            raise SystemExit(0)
        captured = capsys.readouterr()
        return int(info.value.code or 0), captured.out, captured.err

    small = ["--size", "16", "--cases", "4", "--sites", "2"]
    code, stdout, err = run(
        [
            "benchmark",
            "make",
            "--out",
            str(tmp_path / "a"),
            *small,
            "--new-target-labelled",
            "2",
            "--new-target-unlabelled",
            "1",
        ]
    )
    assert code == 0, err
    assert [Path(line).name for line in stdout.split()] == [*DATASETS, NEW_TARGET_DATASET]
    root = tmp_path / "a" / NEW_TARGET_DATASET
    assert _ids(root / "labelsTr") == ["newclinic_001", "newclinic_002"] and _ids(root / "labelsTs") == [
        "newclinic_003"
    ]
    assert json.loads((tmp_path / "a" / "modality_aliases.json").read_text()) == MODALITY_ALIASES
    code, stdout, err = run(["benchmark", "make", "--out", str(tmp_path / "b"), *small, "--no-new-target"])
    assert code == 0, err
    assert [Path(line).name for line in stdout.split()] == list(DATASETS)
    assert not (tmp_path / "b" / NEW_TARGET_DATASET).exists()
    assert not (tmp_path / "a" / DEEP_GREY_DATASET).exists() and not (tmp_path / "b" / DEEP_GREY_DATASET).exists()
    code, _, err = run(["benchmark", "make", "--out", str(tmp_path / "c"), "--new-target-labelled", "0"])
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- the deep-grey collection

DEEP = BenchmarkConfig(seed=3, size=24, cases=4, tumour_sites=2, deep_grey=True)  # SMALL plus deep_grey


@pytest.fixture(scope="module")
def deep_grey(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deepgrey")
    roots = make_benchmark(out, DEEP)
    assert roots == [out / name for name in (*DATASETS, DEEP_GREY_DATASET)]
    return out


def test_deep_grey_config_is_off_by_default_and_recorded_only_when_on() -> None:
    assert BenchmarkConfig().deep_grey is False
    # the dict existing markers hold (runner, graph_build): unchanged by the new option
    assert SMALL.to_dict() == {"seed": 3, "size": 24, "cases": 4, "tumour_sites": 2}
    assert DEEP.to_dict() == {**SMALL.to_dict(), "deep_grey": True}
    for value in (1, "yes", None):
        with pytest.raises(ConfigError, match="deep_grey"):
            BenchmarkConfig(deep_grey=value)  # type: ignore[arg-type]


def test_deep_grey_passes_verification_with_its_names(deep_grey: Path) -> None:
    from seqtransfer.data.verify import require_valid

    root = deep_grey / DEEP_GREY_DATASET
    (dataset,), warnings = require_valid([root])
    assert (
        warnings == [] and dataset.sites == DEEP_GREY_SITES and len(dataset.cases) == len(DEEP_GREY_SITES) * DEEP.cases
    )
    assert 2 <= len(DEEP_GREY_SITES) <= 3
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "T1", "1": "T2"}
    assert meta["labels"] == {
        "background": 0,
        "hippocampus": 1,
        "thalamus": 2,
        "caudate": 3,
        "putamen": 4,
        "pallidum": 5,
        "amygdala": 6,
    }
    assert meta["numTraining"] == len(DEEP_GREY_SITES) * DEEP.cases and meta["benchmark_config"] == DEEP.to_dict()
    assert "synthetic" in meta["description"].lower()
    groups = json.loads((deep_grey / "objective_groups.json").read_text())
    assert {groups[label] for label in DEEP_GREY_LABELS} == {"deep_grey"}
    assert DEEP_GREY_DATASET in (deep_grey / "README.txt").read_text()


def test_deep_grey_labels_are_the_nuclei_in_most_cases(deep_grey: Path) -> None:
    root = deep_grey / DEEP_GREY_DATASET
    grid = site_grid(load_anatomy().field_of_view, DEEP.size)
    present = np.zeros(len(DEEP_GREY_LABELS) + 1, dtype=int)
    cases = _cases(root)
    t1_inside, t1_brain = [], []
    for case, _site in cases:
        images, label = _case_arrays(root, case)
        assert label.dtype == np.uint8 and label.shape == grid.shape and all(i.shape == grid.shape for i in images)
        assert set(np.unique(label).tolist()) <= set(range(7))
        present[np.unique(label)] += 1
        for image in images:
            assert np.isfinite(image).all() and image.min() >= 0 and (image[label > 0] > 0).all()
        t1_inside.append(float(images[0][label > 0].mean()))
        t1_brain.append(float(images[0][images[0] > 0].mean()))
    assert (present[1:] >= 0.75 * len(cases)).all(), present  # pallidum and amygdala too, at 24^3
    # nuclei are deep grey matter: on T1 brighter than the brain's mean (CSF pulls it down)
    assert np.mean(t1_inside) > np.mean(t1_brain)


def test_deep_grey_leaves_the_other_datasets_byte_identical(deep_grey: Path, bench: Path) -> None:
    for name in DATASETS:  # bench: SMALL, the same config without deep_grey
        without, with_ = _all_arrays(bench / name), _all_arrays(deep_grey / name)
        assert without.keys() == with_.keys() and without
        for key in without:
            assert without[key].dtype == with_[key].dtype and without[key].tobytes() == with_[key].tobytes(), (
                name,
                key,
            )
        for file in ("dataset.json", "sites.csv"):
            assert (bench / name / file).read_bytes() == (deep_grey / name / file).read_bytes(), (name, file)
    assert not (bench / DEEP_GREY_DATASET).exists()  # off by default


def test_deep_grey_is_deterministic_by_seed(deep_grey: Path, tmp_path: Path) -> None:
    reference = _all_arrays(deep_grey / DEEP_GREY_DATASET)
    make_benchmark(tmp_path / "a", DEEP)
    make_benchmark(tmp_path / "b", BenchmarkConfig(seed=4, size=24, cases=4, tumour_sites=2, deep_grey=True))
    again, other = _all_arrays(tmp_path / "a" / DEEP_GREY_DATASET), _all_arrays(tmp_path / "b" / DEEP_GREY_DATASET)
    assert again.keys() == reference.keys() == other.keys() and len(reference) == 3 * len(DEEP_GREY_SITES) * DEEP.cases
    for key in reference:
        assert again[key].tobytes() == reference[key].tobytes(), key
        assert not np.array_equal(other[key], reference[key]), key


def test_deep_grey_sites_have_their_own_scanners(deep_grey: Path) -> None:
    root = deep_grey / DEEP_GREY_DATASET
    by_site: dict[str, list[float]] = {}
    for case, site in _cases(root):
        images, _ = _case_arrays(root, case)
        by_site.setdefault(site, []).append(float(np.median(images[0][images[0] > 0])))
    medians = sorted(float(np.median(v)) for v in by_site.values())
    assert len(medians) == len(DEEP_GREY_SITES) and medians[-1] > 1.2 * medians[0]  # scanner units differ


def test_cli_benchmark_make_deep_grey(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from seqtransfer.cli import main

    with pytest.raises(SystemExit) as info:
        main(
            [
                "benchmark",
                "make",
                "--out",
                str(tmp_path),
                "--size",
                "16",
                "--cases",
                "4",
                "--sites",
                "2",
                "--deep-grey",
                "--no-new-target",
            ]
        )
        raise SystemExit(0)
    captured = capsys.readouterr()
    assert int(info.value.code or 0) == 0, captured.err
    assert [Path(line).name for line in captured.out.split()] == [*DATASETS, DEEP_GREY_DATASET]
    meta = json.loads((tmp_path / DEEP_GREY_DATASET / "dataset.json").read_text())
    assert meta["numTraining"] == 4 * len(DEEP_GREY_SITES) and meta["benchmark_config"]["deep_grey"] is True


def test_experiment_key_and_existing_run_marker(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from seqtransfer.experiment.config import ExperimentConfig, config_from_dict
    from seqtransfer.experiment.runner import _datasets

    assert config_from_dict({"data": {"benchmark": True, "benchmark_deep_grey": True}}).data.benchmark_deep_grey is True
    assert ExperimentConfig().data.benchmark_deep_grey is False
    with pytest.raises(ConfigError, match="benchmark_deep_grey"):
        config_from_dict({"data": {"benchmark": True, "benchmark_deep_grey": 1}})
    # a run folder whose marker was written before the option existed is reused, not regenerated
    out = tmp_path / "benchmark"
    out.mkdir()
    names = list(DATASETS)
    (out / "benchmark.json").write_text(
        json.dumps({"config": {"seed": 0, "size": 48, "cases": 24, "tumour_sites": 6}, "datasets": names})
    )
    with caplog.at_level(logging.INFO, logger="seqtransfer.experiment.runner"):
        roots, groups = _datasets(ExperimentConfig(), tmp_path, None)
    assert roots == [out / n for n in names] and groups == out / "objective_groups.json"
    assert not [r for r in caplog.records if "generating" in r.getMessage()], caplog.text
