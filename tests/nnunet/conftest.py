"""A source dataset, a new target with 3 labelled cases and 2 unlabelled ones, and their graph."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from seqtransfer.cli import main

SHAPE = (16, 16, 16)
TARGET = "New-T2-tumour"


def write_new_target(root: Path, dataset_writer) -> Path:
    """A single-site target: 3 labelled cases (imagesTr) and 2 unlabelled ones (imagesTs)."""
    new = dataset_writer(root, n_cases=5, channels=("T2",), labels=("tumour",), shape=SHAPE, seed=2)
    (new / "imagesTs").mkdir()
    for case in ("case_003", "case_004"):
        shutil.move(new / "imagesTr" / f"{case}_0000.nii.gz", new / "imagesTs" / f"{case}_0000.nii.gz")
        (new / "labelsTr" / f"{case}.nii.gz").unlink()
    meta = json.loads((new / "dataset.json").read_text())
    meta["numTraining"] = 3
    (new / "dataset.json").write_text(json.dumps(meta))
    return new


@pytest.fixture(scope="package")
def export_graph(tmp_path_factory, dataset_writer):
    """Datasets and their graph, built once (tests export from it and never write into it)."""
    root = tmp_path_factory.mktemp("export")
    sites = {f"case_{i:03d}": ("A" if i < 6 else "B") for i in range(12)}
    src = dataset_writer(
        root / "Dataset001_Src",
        n_cases=12,
        channels=("T1", "T2"),
        labels=("tumour", "edema"),
        shape=SHAPE,
        sites=sites,
        seed=1,
    )
    new = write_new_target(root / "Dataset002_New", dataset_writer)
    graph = root / "graph"
    argv = ["graph", "build", src, new, "--out", graph, "--target", TARGET, "--size", 16, "--volumes", 4]
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(io.StringIO()):
        mp.setenv("SEQTRANSFER_CACHE", str(root / "cache"))
        with pytest.raises(SystemExit) as info:
            main([str(a) for a in argv])
            raise SystemExit(0)
    assert int(info.value.code or 0) == 0
    return src, new, graph, root / "cache"
