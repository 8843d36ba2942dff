"""Every file and folder the tool writes gets the mode the user's umask gives a new one
(0666 / 0777 without the umask's bits), never tempfile's private 0600 / 0700."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

UMASKS = (0o022, 0o077, 0o002)  # 0002: group-writable, which SQLite alone would not give


@pytest.fixture(params=UMASKS, ids=lambda m: f"umask{m:04o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test under a umask, restored afterwards whatever happens."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def wrong_modes(root: Path, mask: int) -> list[str]:
    """Files and folders under ``root`` (itself included) whose mode is not what ``mask`` gives."""
    wrong = []
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        want = (0o777 if path.is_dir() else 0o666) & ~mask
        if mode(path) != want:
            wrong.append(f"{path.relative_to(root.parent)}: {mode(path):04o}, expected {want:04o}")
    return wrong


def test_current_umask_reads_without_changing_it(umask: int) -> None:
    from seqtransfer.core.atomic import current_umask, dir_mode, file_mode

    assert current_umask() == umask
    assert file_mode() == 0o666 & ~umask and dir_mode() == 0o777 & ~umask
    assert os.umask(umask) == umask  # still the one that was set


def test_atomic_writers(umask: int, tmp_path: Path) -> None:
    from seqtransfer.core.atomic import atomic_open, atomic_path, write_json, write_text

    out = tmp_path / "out"
    write_json(out / "a.json", {"x": 1})
    write_text(out / "deep" / "b.txt", "b\n")
    with atomic_open(out / "c.bin", "wb") as handle:
        handle.write(b"c")
    with atomic_path(out / "d.npy", suffix=".npy") as tmp:
        np.save(tmp, np.arange(3))
    write_text(out / "b_again.txt", "x")
    write_text(out / "b_again.txt", "y")  # replacing a file keeps the mode a new file gets
    assert sorted(p.name for p in out.rglob("*")) == ["a.json", "b.txt", "b_again.txt", "c.bin", "d.npy", "deep"]
    assert wrong_modes(out, umask) == []


def test_checkpoint_nifti_and_run_store(umask: int, tmp_path: Path) -> None:
    import torch

    from seqtransfer.data.io import write_image
    from seqtransfer.experiment.store import RunStore
    from seqtransfer.training.checkpoint import save_checkpoint

    out = tmp_path / "out"
    save_checkpoint(out / "model" / "checkpoint_final.pth", {"weights": torch.zeros(2)})
    write_image(out / "pred" / "case.nii.gz", np.zeros((4, 4, 4), np.uint8), np.eye(4))
    write_image(out / "pred" / "case.nii", np.zeros((4, 4, 4), np.float32), np.eye(4))
    store = RunStore(out / "runs.sqlite")
    store.run("unit", {"a": 1}, lambda: {"ok": True})
    assert wrong_modes(out, umask) == []


def test_preprocessing_cache_entry(umask: int, dataset_factory, tmp_path: Path) -> None:
    from seqtransfer.data.dataset import parse_dataset
    from seqtransfer.data.preprocess import PreprocessCache, PreprocessConfig

    root = dataset_factory("Dataset001_Toy", n_cases=2, shape=(8, 8, 8))
    dataset, _ = parse_dataset(root)
    cache = PreprocessCache(tmp_path / "cache", PreprocessConfig(size=8))
    cache.load(dataset.cases[0])
    entries = list((tmp_path / "cache" / "preprocessed").glob("*/*"))
    assert len(entries) == 1 and {p.name for p in entries[0].iterdir()} == {"image.npy", "label.npy", "meta.json"}
    assert wrong_modes(tmp_path / "cache", umask) == []


def test_graph_store_and_figures(umask: int, tmp_path: Path) -> None:
    from seqtransfer.affinity.slice_pca import SlicePCA
    from seqtransfer.graph.config import GraphConfig
    from seqtransfer.graph.figures import plot_graph, plot_heatmap
    from seqtransfer.graph.store import GraphStore

    graph = nx.Graph()
    for name, site, role in (("A-T1-x", "A", "source"), ("B-T1-x", "B", "source"), ("C-T1-x", "C", "target")):
        graph.add_node(name, site=site, modality="T1", objective="x", group="x", role=role, collection="c")
    graph.add_edge("A-T1-x", "B-T1-x", weight=0.5, H=1.0, R=0.5)
    graph.add_edge("A-T1-x", "C-T1-x", weight=0.4, H=0.8, R=0.6)
    pca = SlicePCA(
        slice_shape=(2, 2), mean=np.zeros(4), components=np.eye(2, 4), explained_variance_ratio=np.array([0.6, 0.4])
    )
    store = GraphStore(tmp_path / "graph")
    store.save(graph, GraphConfig(size=16), h_scale=1.0, pca=pca)
    store.save_feature("ab" + "0" * 62, np.zeros(3))
    store.save_features("cd" + "0" * 62, a=np.zeros(2), b=np.ones(2))
    store.update_params(note=1)
    plot_graph(
        graph,
        tmp_path / "graph" / "figures" / "graph.png",
        target="C-T1-x",
        landmark="A-T1-x",
        transfer_path=["A-T1-x", "C-T1-x"],
    )
    plot_heatmap(graph, tmp_path / "graph" / "figures" / "heatmap.png")
    assert {p.name for p in (tmp_path / "graph").iterdir()} == {
        "graph.json",
        "params.json",
        "pca.npz",
        "features",
        "figures",
    }
    assert wrong_modes(tmp_path / "graph", umask) == []


def test_run_report_and_predict_write_with_the_umask(umask: int, dataset_factory, tmp_path: Path) -> None:
    """`run` (graph build, zoo training, transfers, preprocessing cache, run store), `report` and
    `predict` on a tiny protocol: every file and folder they create."""
    from seqtransfer.experiment.config import config_from_dict
    from seqtransfer.experiment.runner import run_experiment
    from seqtransfer.pipeline.predict import predict_files
    from seqtransfer.report import write_report

    sites = {f"case_{i:03d}": "ABC"[i % 3] for i in range(57)}
    tum = dataset_factory(
        "Dataset001_Tum", n_cases=57, channels=("T1",), labels=("tumour",), shape=(16, 16, 16), sites=sites, seed=1
    )
    config = config_from_dict(
        {
            "data": {"datasets": [str(tum)]},
            "protocol": {
                "targets": ["C-T1-tumour"],
                "draws": 1,
                "methods": ["ours", "scratch"],
                "quality_draws": 0,
                "scratch_steps": 1,
            },
            "graph": {"size": 16, "volumes_per_task": 3, "max_pairs": 4, "n_components": 3, "max_slices": 100},
            "network": {"patch_size": [16, 16, 16], "filters": [4, 8, 16]},
            "zoo": {"steps": 1, "max_train": 4},
            "finetune": {"steps": 1, "augment": False},
        }
    )
    run = tmp_path / "run"
    run_experiment(config, run)
    written = write_report(run)
    models = sorted(p.parent for p in (run / "models").rglob("checkpoint_final.pth"))
    assert models and written["report"].exists() and (run / "runs.sqlite").exists()
    assert (
        any(run.rglob("*.nii.gz"))
        and any((run / "cache").rglob("image.npy"))
        and any((run / "graphs").rglob("features/*/*"))
    )
    predictions = predict_files(models[0], [tum / "imagesTr" / "case_000_0000.nii.gz"], tmp_path / "predictions")
    assert len(predictions) == 1
    assert wrong_modes(run, umask) == []
    assert wrong_modes(tmp_path / "predictions", umask) == []
    if (tmp_path / "cache").exists():  # the user-level cache, when anything used it
        assert wrong_modes(tmp_path / "cache", umask) == []
