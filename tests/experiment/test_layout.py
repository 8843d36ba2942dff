"""RunLayout spells every path of a run folder, the same ones a run writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from seqtransfer.experiment.layout import RunLayout


def test_each_path_lies_where_the_run_folder_keeps_it(tmp_path: Path) -> None:
    layout = RunLayout(str(tmp_path / "run"))
    root = tmp_path / "run"
    assert layout.root == root
    expected = {
        layout.store_path: "runs.sqlite",
        layout.config_path: "config.resolved.json",
        layout.benchmark_dir: "benchmark",
        layout.benchmark_marker: "benchmark/benchmark.json",
        layout.benchmark_groups: "benchmark/objective_groups.json",
        layout.cache_dir: "cache",
        layout.models_dir: "models",
        layout.graphs_dir: "graphs",
        layout.graph_dir(0): "graphs/draw0",
        layout.graph_dir(3): "graphs/draw3",
        layout.sample_size_graph_dir(5, 1): "graphs/n5_draw1",
        layout.predictions_dir: "predictions",
        layout.target_predictions("C-T1-tumour"): "predictions/C-T1-tumour",
        layout.method_predictions("C-T1-tumour", "scratch", 2): "predictions/C-T1-tumour/scratch_draw2",
        layout.report_dir: "report",
        layout.report_tables: "report/tables",
        layout.report_figures: "report/figures",
        layout.summary_path: "report/summary.md",
        layout.report_html: "report/report.html",
        layout.adapt_dir: "adapt",
    }
    for path, relative in expected.items():
        assert path == root / relative, relative
    assert len(set(expected)) == len(expected)  # no two parts share a path


def test_nothing_is_created(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path / "run")
    _ = (layout.graph_dir(0), layout.report_figures, layout.method_predictions("t", "mst", 0))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("n_train", "draw"), [(0, 0), (3, -1), (-2, 1)])
def test_a_sample_size_graph_needs_a_case_and_a_draw(tmp_path: Path, n_train: int, draw: int) -> None:
    with pytest.raises(ValueError):
        RunLayout(tmp_path).sample_size_graph_dir(n_train, draw)


def test_a_negative_draw_has_no_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="draw"):
        RunLayout(tmp_path).graph_dir(-1)
    with pytest.raises(ValueError, match="draw"):
        RunLayout(tmp_path).method_predictions("t", "mtl", -1)


def test_a_run_writes_its_store_config_and_graphs_where_the_layout_says(tmp_path: Path, dataset_factory) -> None:
    """The runner asks the layout: a tiny run's files exist at the layout's paths."""
    from seqtransfer.experiment.config import config_from_dict
    from seqtransfer.experiment.runner import run_experiment

    sites = {f"case_{i:03d}": "AB"[i % 2] for i in range(40)}
    tum = dataset_factory(
        "Dataset001_Tum", n_cases=40, channels=("T1",), labels=("tumour",), shape=(16, 16, 16), sites=sites, seed=1
    )
    raw = {
        "seed": 0,
        "data": {"datasets": [str(tum)]},
        "protocol": {
            "targets": ["B-T1-tumour"],
            "draws": 1,
            "methods": ["scratch"],
            "quality_draws": 0,
            "scratch_steps": 1,
        },
        "graph": {"size": 16, "volumes_per_task": 2, "max_pairs": 2, "n_components": 2, "max_slices": 50},
        "network": {"patch_size": [16, 16, 16], "filters": [2, 4, 8]},
        "zoo": {"steps": 1, "max_train": 2},
        "finetune": {"steps": 1, "augment": False},
    }
    layout = RunLayout(tmp_path / "run")
    run_experiment(config_from_dict(raw), layout.root)
    assert layout.store_path.is_file() and layout.config_path.is_file()
    assert (layout.graph_dir(0) / "graph.json").is_file()
    assert layout.cache_dir.is_dir()
    assert any(layout.method_predictions("B-T1-tumour", "scratch", 0).glob("*.nii.gz"))
