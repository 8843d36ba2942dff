"""Each fault class is caught, with one line naming the file."""

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from seqtransfer.core.errors import DatasetError
from seqtransfer.data.dataset import parse_dataset
from seqtransfer.data.io import read_header, write_image
from seqtransfer.data.verify import require_valid, verify_dataset


def _affine(root: Path) -> np.ndarray:
    return read_header(root / "labelsTr" / "case_000.nii.gz").affine


def _errors(root: Path) -> list[str]:
    return [str(p) for p in verify_dataset(root) if p.severity == "error"]


def _edit_json(root: Path, **changes) -> None:
    meta = json.loads((root / "dataset.json").read_text())
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    (root / "dataset.json").write_text(json.dumps(meta))


def test_clean_dataset_has_no_problem(dataset_factory) -> None:
    root = dataset_factory(sites={f"case_{i:03d}": "A" if i < 2 else "B" for i in range(4)})
    assert verify_dataset(root) == []
    dataset, problems = parse_dataset(root)
    assert problems == [] and dataset is not None
    assert dataset.sites == ("A", "B") and dataset.site_source == "sites.csv"
    assert dataset.channel_names == ("T1", "T2")
    assert dataset.labels == {"tumour": (1,), "edema": (2,)}


def _drop_label(root: Path) -> None:
    (root / "labelsTr" / "case_001.nii.gz").unlink()


def _drop_channel(root: Path) -> None:
    (root / "imagesTr" / "case_002_0001.nii.gz").unlink()


def _extra_channel(root: Path) -> None:
    src = root / "imagesTr" / "case_000_0000.nii.gz"
    (root / "imagesTr" / "case_000_0002.nii.gz").write_bytes(src.read_bytes())


def _stray_file(root: Path) -> None:
    (root / "imagesTr" / "notes.txt").write_text("hello")


def _four_d(root: Path) -> None:
    write_image(root / "imagesTr" / "case_000_0000.nii.gz", np.ones((12, 14, 10, 2), np.float32), np.eye(4))


def _shape(root: Path) -> None:
    write_image(
        root / "imagesTr" / "case_001_0001.nii.gz", np.ones((12, 14, 9), np.float32), np.diag([1.0, 1.2, 2.0, 1])
    )


def _spacing(root: Path) -> None:
    write_image(
        root / "imagesTr" / "case_001_0000.nii.gz", np.ones((12, 14, 10), np.float32), np.diag([1.0, 1.2, 2.5, 1])
    )


def _undeclared(root: Path) -> None:
    label = np.zeros((12, 14, 10), np.uint8)
    label[2:4, 2:4, 2:4] = 7
    write_image(root / "labelsTr" / "case_003.nii.gz", label, np.diag([1.0, 1.2, 2.0, 1]))


def _nan(root: Path) -> None:
    img = np.ones((12, 14, 10), np.float32)
    img[3, 3, 3] = np.nan
    write_image(root / "imagesTr" / "case_002_0000.nii.gz", img, np.diag([1.0, 1.2, 2.0, 1]))


def _inf(root: Path) -> None:
    img = np.ones((12, 14, 10), np.float32)
    img[3, 3, 3] = np.inf
    write_image(root / "imagesTr" / "case_002_0000.nii.gz", img, np.diag([1.0, 1.2, 2.0, 1]))


def _corrupt(root: Path) -> None:
    (root / "imagesTr" / "case_001_0000.nii.gz").write_bytes(gzip.compress(b"garbage" * 10))


def _truncated(root: Path) -> None:
    path = root / "labelsTr" / "case_002.nii.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _num_training(root: Path) -> None:
    _edit_json(root, numTraining=9)


def _missing_key(root: Path) -> None:
    _edit_json(root, file_ending=None)


def _bad_json(root: Path) -> None:
    (root / "dataset.json").write_text('{"channel_names": {"0": "T1"},')


def _non_consecutive(root: Path) -> None:
    _edit_json(root, labels={"background": 0, "tumour": 1, "edema": 3})


def _no_background(root: Path) -> None:
    _edit_json(root, labels={"tumour": 1, "edema": 2})


def _bad_channels(root: Path) -> None:
    _edit_json(root, channel_names={"0": "T1", "2": "T2"})


def _non_nifti_ending(root: Path) -> None:
    _edit_json(root, file_ending=".mha")


def _no_json(root: Path) -> None:
    (root / "dataset.json").unlink()


def _no_images_dir(root: Path) -> None:
    for p in (root / "imagesTr").iterdir():
        p.unlink()
    (root / "imagesTr").rmdir()


def _sites_missing_case(root: Path) -> None:
    (root / "sites.csv").write_text("case,site\ncase_000,A\ncase_001,A\n")


def _sites_bad_header(root: Path) -> None:
    (root / "sites.csv").write_text("id;site\ncase_000;A\n")


FAULTS: list[tuple[Callable[[Path], None], str, str]] = [
    (_drop_label, "case_001_0000.nii.gz", "image without a label"),
    (_drop_channel, "case_002_0001.nii.gz", "not found"),
    (_extra_channel, "case_000_0002.nii.gz", "channel 2 not declared"),
    (_stray_file, "notes.txt", "unexpected file"),
    (_four_d, "case_000_0000.nii.gz", "expected a 3-D image"),
    (_shape, "case_001_0001.nii.gz", "shape (12, 14, 9) differs"),
    (_spacing, "case_001_0000.nii.gz", "spacing"),
    (_undeclared, "case_003.nii.gz", "label values [7] not declared"),
    (_nan, "case_002_0000.nii.gz", "NaN or inf"),
    (_inf, "case_002_0000.nii.gz", "NaN or inf"),
    (_corrupt, "case_001_0000.nii.gz", "unreadable"),
    (_truncated, "case_002.nii.gz", "unreadable"),
    (_num_training, "dataset.json", "numTraining is 9 but 4 case(s)"),
    (_missing_key, "dataset.json", "missing required key(s): file_ending"),
    (_bad_json, "dataset.json", "invalid JSON"),
    (_non_consecutive, "dataset.json", "consecutive"),
    (_no_background, "dataset.json", "background"),
    (_bad_channels, "dataset.json", "indices must be 0..1"),
    (_non_nifti_ending, "dataset.json", "not NIfTI"),
    (_no_json, "dataset.json", "dataset.json not found"),
    (_no_images_dir, "imagesTr", "folder not found"),
    (_sites_missing_case, "sites.csv", "no site for case(s) case_002, case_003"),
    (_sites_bad_header, "sites.csv", "expected header 'case,site'"),
]


@pytest.mark.parametrize("fault,filename,message", FAULTS, ids=[f[0].__name__.strip("_") for f in FAULTS])
def test_fault_is_reported_naming_the_file(dataset_factory, fault, filename, message) -> None:
    root = dataset_factory(sites={f"case_{i:03d}": "A" for i in range(4)})
    fault(root)
    errors = _errors(root)
    matching = [e for e in errors if filename in e and message in e]
    assert matching, f"expected an error naming {filename} with {message!r}, got {errors}"
    assert all("\n" not in e for e in errors)
    with pytest.raises(DatasetError) as info:
        require_valid([root])
    assert any(filename in line and message in line for line in info.value.problems)


def test_empty_dataset_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "Dataset009_Empty"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "CT"},
                "labels": {"background": 0, "x": 1},
                "numTraining": 0,
                "file_ending": ".nii.gz",
            }
        )
    )
    assert any("empty dataset" in e for e in _errors(root))


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    assert any("dataset folder not found" in e for e in _errors(tmp_path / "nope"))


def test_all_background_label_is_a_warning(dataset_factory) -> None:
    root = dataset_factory()
    write_image(root / "labelsTr" / "case_000.nii.gz", np.zeros((12, 14, 10), np.uint8), _affine(root))
    problems = verify_dataset(root)
    assert [p.severity for p in problems] == ["warning"]
    assert "case_000.nii.gz" in str(problems[0]) and "all background" in str(problems[0])
    datasets, warnings = require_valid([root])
    assert len(datasets) == 1 and len(warnings) == 1


def test_affine_mismatch_is_a_warning(dataset_factory) -> None:
    root = dataset_factory()
    affine = np.diag([1.0, 1.2, 2.0, 1.0])
    affine[:3, 3] = [40.0, 3.0, 1.5]  # origin moved, spacing equal
    img = np.ones((12, 14, 10), np.float32)
    write_image(root / "imagesTr" / "case_000_0000.nii.gz", img, affine)
    problems = verify_dataset(root)
    assert [p.severity for p in problems] == ["warning"]
    assert "affine" in problems[0].message


def test_sites_from_dataset_json_and_default_single_site(dataset_factory) -> None:
    root = dataset_factory("Dataset007_Liver")
    dataset, _ = parse_dataset(root)
    assert dataset is not None and dataset.sites == ("Liver",) and dataset.site_source == "single"
    _edit_json(root, sites={f"case_{i:03d}": f"s{i % 2}" for i in range(4)})
    dataset, problems = parse_dataset(root)
    assert problems == [] and dataset is not None
    assert dataset.sites == ("s0", "s1") and dataset.site_source == "dataset.json"


def test_region_labels_and_explicit_file_lists(dataset_factory) -> None:
    root = dataset_factory(n_cases=2)
    files = {
        f"case_{i:03d}": {
            "images": [f"imagesTr/case_{i:03d}_0000.nii.gz", f"imagesTr/case_{i:03d}_0001.nii.gz"],
            "label": f"labelsTr/case_{i:03d}.nii.gz",
        }
        for i in range(2)
    }
    _edit_json(root, labels={"background": 0, "tumour": 1, "edema": 2, "whole": [1, 2]}, dataset=files)
    dataset, problems = parse_dataset(root)
    assert problems == [] and dataset is not None
    assert dataset.labels["whole"] == (1, 2)
    assert verify_dataset(root) == []


def test_verification_record_skips_unchanged_cases_and_rechecks_an_edited_label(dataset_factory, monkeypatch) -> None:
    """A later command does not read unchanged voxels again; an edited label is checked again."""
    import nibabel as nib
    import numpy as np

    from seqtransfer.data import verify as verify_module
    from seqtransfer.data.io import write_image

    root = dataset_factory("Dataset001_Rec", n_cases=3)
    assert verify_module.verify_datasets([root]) == []
    verify_module._CASE_MEMO.clear()  # a new process: only the on-disk record remains
    calls: list[str] = []
    real = verify_module._check_case
    monkeypatch.setattr(verify_module, "_check_case", lambda d, c: calls.append(c.case_id) or real(d, c))
    assert verify_module.verify_datasets([root]) == [] and calls == []
    label_path = root / "labelsTr" / "case_001.nii.gz"
    label = np.asarray(nib.load(str(label_path)).dataobj).copy()
    label[0, 0, 0] = 9  # a value dataset.json does not declare
    write_image(label_path, label, nib.load(str(label_path)).affine)
    verify_module._CASE_MEMO.clear()
    problems = verify_module.verify_datasets([root])
    assert calls == ["case_001"]
    assert any("case_001" in str(p.path) and p.severity == "error" for p in problems)
