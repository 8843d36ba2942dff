"""An exported path run by nnU-Net v2 itself, on the CPU at tiny size (`make check-nnunet`, ~8 min).

The script of `seqtransfer export nnunet` runs end to end with nnU-Net's 1-epoch trainer:
every dataset passes nnU-Net's own integrity check, every step gets the target's plans,
the steps train in path order each from the previous step's final checkpoint, the target's
unlabelled images are predicted, and a rerun finds everything done.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from seqtransfer.cli import main

pytestmark = [pytest.mark.nnunet, pytest.mark.slow]

TARGET = "New-T2-tumour"
PATH = ("A-T1-tumour", "B-T2-edema", TARGET)
TRAINER = "nnUNetTrainer_1epoch"


def _run_script(script: Path, *args: str) -> str:
    """The script with nnU-Net's commands of this Python's environment, on the CPU."""
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "TRAINER": TRAINER,
        "DEVICE": "cpu",
        "NP": "1",
        "nnUNet_n_proc_DA": "1",
    }
    proc = subprocess.run(
        ["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=1800, check=False
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def ran(export_graph, tmp_path_factory):
    """The 3-step path exported and run by nnU-Net (plan, train, predict)."""
    _, new, graph, cache = export_graph
    out = tmp_path_factory.mktemp("live") / "export"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQTRANSFER_CACHE", str(cache))
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            mp.delenv(name, raising=False)
        argv = ["export", "nnunet", "--graph", graph, "--target", TARGET, "--out", out, "--path", ",".join(PATH)]
        with pytest.raises(SystemExit) as info:
            main([str(a) for a in argv])
            raise SystemExit(0)
    assert int(info.value.code or 0) == 0
    log = _run_script(out / "run_nnunet.sh")
    manifest = json.loads((out / "export.json").read_text())
    return out, new, manifest, log


def _checkpoint(out: Path, dataset: str) -> Path:
    return (
        out / "nnUNet_results" / dataset / f"{TRAINER}__nnUNetPlans__3d_fullres" / "fold_all" / "checkpoint_final.pth"
    )


def test_nnunet_finds_every_exported_dataset_valid(ran) -> None:
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    out, _, manifest, log = ran
    for step in manifest["steps"]:
        verify_dataset_integrity(str(out / "nnUNet_raw" / step["dataset"]), num_processes=1)  # raises when invalid
    assert log.count("your dataset is most likely OK") == len(PATH)


def test_every_step_has_the_target_plans(ran) -> None:
    out, _, manifest, _ = ran
    plans = {
        s["dataset"]: json.loads((out / "nnUNet_preprocessed" / s["dataset"] / "nnUNetPlans.json").read_text())
        for s in manifest["steps"]
    }
    target = plans[manifest["steps"][-1]["dataset"]]["configurations"]["3d_fullres"]
    for name, plan in plans.items():
        config = plan["configurations"]["3d_fullres"]
        assert plan["dataset_name"] == name
        for key in ("architecture", "patch_size", "spacing", "normalization_schemes"):
            assert config[key] == target[key], (name, key)
        preprocessed = out / "nnUNet_preprocessed" / name / config["data_identifier"]
        step = next(s for s in manifest["steps"] if s["dataset"] == name)
        assert len(list(preprocessed.glob("*.pkl"))) == len(step["cases"])


def test_steps_train_in_path_order_each_from_the_previous_checkpoint(ran) -> None:
    out, _, manifest, log = ran
    names = [s["dataset"] for s in manifest["steps"]]
    for name in names:
        assert _checkpoint(out, name).is_file()
    started = [log.index(f"== 3. train step {i} ") for i in range(len(names))]
    assert started == sorted(started)
    loaded = re.findall(r"Loading pretrained weights from file\s+(\S+)", log)
    assert [Path(p) for p in loaded] == [_checkpoint(out, n).resolve() for n in names[:-1]]
    # each load happened in its own step's training, after that step started
    for i, path in enumerate(loaded, start=1):
        assert started[i] < log.index(path) < (started[i + 1] if i + 1 < len(started) else len(log))


def test_the_target_images_are_predicted_with_their_geometry(ran) -> None:
    out, new, manifest, _ = ran
    target = manifest["steps"][-1]
    for case in target["unlabelled"]:
        image = nib.load(new / "imagesTs" / f"{case}_0000.nii.gz")
        prediction = nib.load(out / "predictions" / f"{case}.nii.gz")
        assert prediction.shape == image.shape
        np.testing.assert_allclose(prediction.affine, image.affine, atol=1e-4)
        assert set(np.unique(np.asarray(prediction.dataobj)).tolist()) <= {0, 1}


def test_a_rerun_finds_every_step_done(ran) -> None:
    out, _, manifest, _ = ran
    stamps = {s["dataset"]: _checkpoint(out, s["dataset"]).stat().st_mtime_ns for s in manifest["steps"]}
    shutil.rmtree(out / "predictions")
    log = _run_script(out / "run_nnunet.sh", "train")
    assert log.count("planned already") == len(PATH) and log.count("trained already") == len(PATH)
    assert {n: _checkpoint(out, n).stat().st_mtime_ns for n in stamps} == stamps
    assert not (out / "predictions").exists()  # `train` stops before predicting
