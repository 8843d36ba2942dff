#!/bin/bash
# The project's wheel with a stock PyPI torch in a fresh venv of Python $1 (a pyenv version), then
# `seqtransfer --help` and a tiny `adapt`. Build the wheel first: python -m build --wheel --outdir /tmp/wheel .
# Usage: benchmarks/python_versions.sh 3.12.1   (see benchmarks/python_versions.md)
set -e
V=$1; PY=/root/.pyenv/versions/$V/bin/python
D=/tmp/py$V; rm -rf $D; $PY -m venv $D/venv
$D/venv/bin/pip install -q --upgrade pip 2>&1 | grep -v "^WARNING" || true
start=$(date +%s)
$D/venv/bin/pip install -q /tmp/wheel/seqtransfer-*.whl 2>&1 | grep -v "^WARNING" | tail -3 || true
echo "install: $(( $(date +%s) - start )) s"
$D/venv/bin/python -c "import sys, torch, seqtransfer; print(sys.version.split()[0], 'torch', torch.__version__)"
$D/venv/bin/seqtransfer --help | grep -c adapt
cd $D && $D/venv/bin/python - <<'PYEOF'
import json, shutil, numpy as np, nibabel as nib
from pathlib import Path
def write(root, n, channel, sites=None, seed=0):
    rng = np.random.default_rng(seed); root = Path(root)
    (root / "imagesTr").mkdir(parents=True); (root / "labelsTr").mkdir()
    for i in range(n):
        lab = np.zeros((16, 16, 16), np.uint8); c = rng.integers(4, 12, 3); lab[c[0]-2:c[0]+2, c[1]-2:c[1]+2, c[2]-2:c[2]+2] = 1
        img = rng.normal(100, 5, lab.shape).astype(np.float32) + 50 * lab
        nib.save(nib.Nifti1Image(lab, np.eye(4)), root / "labelsTr" / f"case_{i:03d}.nii.gz")
        nib.save(nib.Nifti1Image(img, np.eye(4)), root / "imagesTr" / f"case_{i:03d}_0000.nii.gz")
    json.dump({"channel_names": {"0": channel}, "labels": {"background": 0, "lesion": 1}, "numTraining": n, "file_ending": ".nii.gz"}, open(root / "dataset.json", "w"))
    if sites: (root / "sites.csv").write_text("case,site\n" + "".join(f"case_{i:03d},{sites[i]}\n" for i in range(n)))
write("Dataset001_Src", 6, "FLAIR", sites="AAABBB", seed=1)
write("Dataset002_New", 2, "flair", seed=3)
Path("Dataset002_New/imagesTs").mkdir(); shutil.copy("Dataset002_New/imagesTr/case_001_0000.nii.gz", "Dataset002_New/imagesTs/ts_000_0000.nii.gz")
PYEOF
SEQTRANSFER_CACHE=$D/cache $D/venv/bin/seqtransfer adapt Dataset001_Src Dataset002_New --target all --out adapted --zoo-steps 1 --steps 1 --size 16 --volumes 3 > adapt.log 2>&1 || { tail -5 adapt.log; exit 1; }
ls adapted/predictions
du -sh $D/venv
