"""`seqtransfer export nnunet`: what it writes, checked without nnU-Net (tests/nnunet/test_export_live.py runs it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from seqtransfer.cli import main
from seqtransfer.data.splits import sample_cases, source_split
from seqtransfer.data.verify import verify_dataset
from seqtransfer.pipeline.config import FinetuneConfig, ZooConfig

TARGET = "New-T2-tumour"  # the target of the package's graph (conftest.py)
PATH = ("A-T1-tumour", "B-T2-edema", TARGET)


def run_cli(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out, captured.err


@pytest.fixture
def graph(export_graph, monkeypatch: pytest.MonkeyPatch):
    src, new, graph, cache = export_graph
    monkeypatch.setenv("SEQTRANSFER_CACHE", str(cache))
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(name, raising=False)
    return src, new, graph


def _export(graph: Path, out: Path, capsys, *extra) -> tuple[int, str, str]:
    return run_cli(["export", "nnunet", "--graph", graph, "--target", TARGET, "--out", out, *extra], capsys)


def _case_ids(folder: Path, suffix: str) -> list[str]:
    return sorted(p.name[: -len(suffix)] for p in folder.iterdir() if p.name.endswith(suffix))


def test_export_writes_one_valid_nnunet_dataset_per_step(graph, tmp_path: Path, capsys, monkeypatch) -> None:
    src, new, graph_dir = graph
    # ids in the user's nnU-Net folders are not reused
    (tmp_path / "raw" / "Dataset500_Theirs").mkdir(parents=True)
    (tmp_path / "results" / "Dataset502_Other").mkdir(parents=True)
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    out = tmp_path / "export"
    code, stdout, err = _export(graph_dir, out, capsys, "--path", ",".join(PATH))
    assert code == 0, err
    assert "run_nnunet.sh" in stdout
    manifest = json.loads((out / "export.json").read_text())
    steps = manifest["steps"]
    assert [s["task"] for s in steps] == list(PATH)
    assert [s["role"] for s in steps] == ["landmark", "intermediate", "target"]
    assert [s["dataset_id"] for s in steps] == [501, 503, 504]
    raw = out / "nnUNet_raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(s["dataset"] for s in steps)

    # the cases: the landmark's zoo split, 3 path-step cases, every labelled case of the target
    site_a = [f"case_{i:03d}" for i in range(6)]
    site_b = [f"case_{i:03d}" for i in range(6, 12)]
    zoo, finetune = ZooConfig(), FinetuneConfig()
    landmark_cases, _ = source_split(f"{src.name}/A", site_a, seed=zoo.seed, max_train=zoo.max_train)
    b_train, _ = source_split(f"{src.name}/B", site_b, seed=zoo.seed, max_train=zoo.max_train)
    step_cases = sample_cases(f"{src.name}/B", b_train, finetune.n_train, seed=finetune.seed, purpose="path-step")
    expected = [list(landmark_cases), list(step_cases), ["case_000", "case_001", "case_002"]]
    assert [s["cases"] for s in steps] == expected
    assert len(step_cases) == 3

    source_meta = json.loads((src / "dataset.json").read_text())
    for step, cases, (dataset, channel, objective) in zip(
        steps, expected, [(src, 0, "tumour"), (src, 1, "edema"), (new, 0, "tumour")], strict=True
    ):
        root = raw / step["dataset"]
        assert [p for p in verify_dataset(root) if p.severity == "error"] == []
        meta = json.loads((root / "dataset.json").read_text())
        modality = json.loads((dataset / "dataset.json").read_text())["channel_names"][str(channel)]
        assert meta["channel_names"] == {"0": modality}
        assert meta["labels"] == {"background": 0, objective: 1}
        assert meta["numTraining"] == len(cases) and meta["file_ending"] == ".nii.gz"
        assert _case_ids(root / "imagesTr", "_0000.nii.gz") == cases
        assert _case_ids(root / "labelsTr", ".nii.gz") == cases
        value = (source_meta if dataset == src else json.loads((new / "dataset.json").read_text()))["labels"][objective]
        for case in cases:
            image = root / "imagesTr" / f"{case}_0000.nii.gz"
            original = dataset / "imagesTr" / f"{case}_{channel:04d}.nii.gz"
            assert image.read_bytes() == original.read_bytes()
            label = nib.load(root / "labelsTr" / f"{case}.nii.gz")
            truth = nib.load(dataset / "labelsTr" / f"{case}.nii.gz")
            assert label.get_data_dtype() == np.uint8
            np.testing.assert_array_equal(np.asarray(label.dataobj), (np.asarray(truth.dataobj) == value))
            np.testing.assert_allclose(label.affine, nib.load(original).affine)
    target_ts = raw / steps[-1]["dataset"] / "imagesTs"
    assert _case_ids(target_ts, "_0000.nii.gz") == ["case_003", "case_004"] == steps[-1]["unlabelled"]
    for case in ("case_003", "case_004"):
        copied = (target_ts / f"{case}_0000.nii.gz").read_bytes()
        assert copied == (new / "imagesTs" / f"{case}_0000.nii.gz").read_bytes()

    # the script: valid bash; the target's plans moved onto every other step; training in path
    # order, each step from the previous step's final checkpoint; the target's imagesTs predicted
    script = (out / "run_nnunet.sh").read_text()
    assert subprocess.run(["bash", "-n", str(out / "run_nnunet.sh")], check=False).returncode == 0
    assert (out / "run_nnunet.sh").stat().st_mode & 0o111
    moved = re.findall(r"nnUNetv2_move_plans_between_datasets -s (\d+) -t (\d+)", script)
    assert moved == [("504", "501"), ("504", "503")]
    trained = re.findall(r"nnUNetv2_train (\d+) .*?(?:-pretrained_weights \"\$\(checkpoint (\S+)\)\")?$", script, re.M)
    assert trained == [("501", ""), ("503", steps[0]["dataset"]), ("504", steps[1]["dataset"])]
    assert f'nnUNetv2_predict -i "$nnUNet_raw/{steps[-1]["dataset"]}/imagesTs"' in script
    assert script.index("nnUNetv2_plan_and_preprocess -d 504") < script.index("nnUNetv2_train 501")


def test_export_follows_the_stored_selection(graph, tmp_path: Path, capsys) -> None:
    _, _, graph_dir = graph
    copy = tmp_path / "graph"
    shutil.copytree(graph_dir, copy)
    code, _, err = _export(copy, tmp_path / "none", capsys)
    assert code == 2 and "no stored selection" in err and "seqtransfer select" in err
    assert not (tmp_path / "none").exists()
    code, _, err = run_cli(["select", "--graph", copy, "--target", TARGET, "--uniform-performance"], capsys)
    assert code == 0, err
    selected = json.loads((copy / "selections" / f"{TARGET}.json").read_text())["path"]
    code, _, err = _export(copy, tmp_path / "export", capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "export" / "export.json").read_text())["path"] == selected


def test_bad_exports_are_one_line_and_leave_nothing_behind(graph, tmp_path: Path, capsys, monkeypatch) -> None:
    _, _, graph_dir = graph
    path = ["--path", ",".join(PATH)]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    code, _, err = _export(graph_dir, busy, capsys, *path)
    assert code == 2 and str(busy) in err and "not an empty folder" in err and len(err.strip().splitlines()) == 1
    assert (busy / "keep.txt").read_text() == "mine" and sorted(p.name for p in busy.iterdir()) == ["keep.txt"]
    code, _, err = _export(graph_dir, tmp_path / "a", capsys, "--path", "A-T1-tumour,B-T2-edema")
    assert code == 2 and TARGET in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(
        ["export", "nnunet", "--graph", graph_dir, "--target", "Nope", "--out", tmp_path / "b"], capsys
    )
    assert code == 2 and "Nope" in err

    # a case that fails half-way: no export folder, no partial folder
    import seqtransfer.nnunet.export as export_module
    from seqtransfer.core.errors import DatasetError

    written = []

    def failing(workspace, task, case, images, labels):
        if written:
            raise DatasetError(f"{case.label}: unreadable (test)")
        written.append(case)

    monkeypatch.setattr(export_module, "_write_case", failing)
    code, _, err = _export(graph_dir, tmp_path / "half", capsys, *path)
    assert code == 2 and "unreadable (test)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]
