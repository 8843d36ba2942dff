"""Datasets written by other tools (plain nibabel, other dtypes, .nii) load and split correctly."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from seqtransfer.data.tasks import split_tasks
from seqtransfer.data.verify import require_valid


def test_nnunet_dataset_from_another_writer(tmp_path: Path) -> None:
    root = tmp_path / "Dataset042_Prostate"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    affine = np.array([[-0.6, 0, 0, 90.0], [0, -0.6, 0, 80.0], [0, 0, 3.6, -40.0], [0, 0, 0, 1]])
    sites = {}
    for i in range(6):
        case = f"prostate_{i:02d}"
        sites[case] = "RUNMC" if i < 4 else "BMC"
        label = np.zeros((20, 22, 8), np.int16)
        label[5:12, 6:14, 2:6] = 1
        label[7:10, 8:11, 3:5] = 2
        nib.save(nib.Nifti1Image(label, affine), str(root / "labelsTr" / f"{case}.nii"))
        for ch in range(2):
            img = rng.integers(1, 4000, size=(20, 22, 8)).astype(np.uint16)
            nib.save(nib.Nifti1Image(img, affine), str(root / "imagesTr" / f"{case}_{ch:04d}.nii"))
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "T2", "1": "ADC"},
                "labels": {"background": 0, "PZ": 1, "TZ": 2},
                "numTraining": 6,
                "file_ending": ".nii",
                "name": "Prostate",
            }
        )
    )
    (root / "sites.csv").write_text("case,site\n" + "".join(f"{c},{s}\n" for c, s in sites.items()))
    datasets, warnings = require_valid([root])
    assert warnings == []
    tasks = split_tasks(datasets)
    assert sorted(t.name for t in tasks) == sorted(
        f"{site}-{mod}-{obj}" for site in ("RUNMC", "BMC") for mod in ("T2", "ADC") for obj in ("PZ", "TZ")
    )
    runmc = next(t for t in tasks if t.name == "RUNMC-ADC-TZ")
    assert runmc.n_cases == 4 and runmc.channel == 1 and runmc.label_values == (2,)
