"""Reading a run folder for its report: the configuration file and the store, as typed data."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import pytest

from seqtransfer.core.errors import StoreError
from seqtransfer.experiment.layout import RunLayout
from seqtransfer.experiment.store import RunStore
from seqtransfer.report.read import ReportData, RunScale, SourceModel, read_configuration, read_report_data
from seqtransfer.report.render import header_lines

CONFIG = {
    "network": {"architecture": "unet", "filters": [4, 8, 16], "patch_size": [16, 16, 16]},
    "zoo": {"steps": 7, "max_train": 5},
    "finetune": {"steps": 3, "lr": 0.01, "lambda_ewc": 0.25, "augment": False},
    "protocol": {"scratch_steps": 9, "max_sources": 2, "random_landmarks": 4},
}


def _write(path: Path, content: object) -> Path:
    path.write_text(json.dumps(content))
    return path


def test_a_resolved_configuration_gives_the_scale_as_written(tmp_path: Path) -> None:
    conf = read_configuration(
        _write(tmp_path / "config.resolved.json", {"config": CONFIG, "versions": {"seqtransfer": "9.9"}})
    )
    assert conf.recorded and conf.versions == {"seqtransfer": "9.9"}
    assert conf.scale == RunScale("unet", [4, 8, 16], [16, 16, 16], 7, 5, 3, 0.01, 0.25, False, 9, 2, 4)


@pytest.mark.parametrize("missing", ["network", "zoo", "finetune", "protocol"])
def test_a_configuration_without_a_section_has_no_scale_but_its_versions(tmp_path: Path, missing: str) -> None:
    config = {k: v for k, v in CONFIG.items() if k != missing}
    conf = read_configuration(_write(tmp_path / "c.json", {"config": config, "versions": {"torch": "2"}}))
    assert conf.scale is None and conf.versions == {"torch": "2"} and conf.recorded


def test_an_absent_configuration_is_not_recorded(tmp_path: Path) -> None:
    conf = read_configuration(tmp_path / "config.resolved.json")
    assert not conf.recorded and conf.versions == {} and conf.scale is None


def test_an_unreadable_configuration_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "config.resolved.json"
    path.write_text("{not json")
    with pytest.raises(StoreError, match="unreadable"):
        read_configuration(path)


def test_a_folder_without_a_store_or_without_a_finished_method_has_no_report(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no runs.sqlite"):
        read_report_data(tmp_path)
    store = RunStore(RunLayout(tmp_path).store_path)
    store.run("zoo", {"task": "a"}, lambda: {"task": "a", "dice": 0.5})
    with pytest.raises(StoreError, match="no finished method"):
        read_report_data(tmp_path)


def _data(tmp_path: Path, zoo: list[SourceModel], config: dict | None) -> ReportData:
    path = tmp_path / "config.resolved.json"
    if config is not None:
        _write(path, config)
    methods = [{"target": t, "draw": d, "method": "ours"} for t in ("t1", "t2") for d in (0, 1, 2)]
    return ReportData(
        layout=RunLayout(tmp_path),
        configuration=read_configuration(path),
        methods=methods,
        zoo=zoo,
        sample_size=[],
        selections=[],
        scores=[],
        direct={},
        calibrated={},
        graph=nx.Graph(),
        h_scale=1.0,
        overlays=[],
    )


def test_the_header_states_configuration_scale_counts_and_unlearned_models(tmp_path: Path) -> None:
    zoo = [SourceModel("b", 0.01), SourceModel("a", None), SourceModel("c", 0.9)]
    lines = header_lines(
        _data(tmp_path, zoo, {"config": CONFIG, "versions": {"seqtransfer": "0.0.0-old", "numpy": "2"}})
    )
    assert lines[0].startswith(
        f"Configuration: `{tmp_path / 'config.resolved.json'}`; package versions: seqtransfer 0.0.0-old, numpy 2"
    )
    assert "; report written by seqtransfer " in lines[0]  # another version wrote the run
    assert lines[1].startswith("Scale: unet [4, 8, 16] at patch [16, 16, 16]; source models 7 steps on up to 5 cases;")
    assert (
        "(lr 0.01, lambda_ewc 0.25, augmentation off)" in lines[1]
        and "source pool: the 2 nearest sources by w" in lines[1]
    )
    assert lines[2].startswith("Targets: 2; draws of the 3 target training cases: 3;")
    assert lines[3].endswith("2 of 3: a (n/a), b (0.010).")


def test_the_header_without_configuration_says_so(tmp_path: Path) -> None:
    lines = header_lines(_data(tmp_path, [SourceModel("a", 0.8)], None))
    assert lines[0].startswith("Configuration: not recorded (no config.resolved.json); report written by seqtransfer ")
    assert len(lines) == 3 and lines[2] == "Source models: 1, every one learned its task (held-out Dice >= 0.05)."


def test_header_names_the_seqtransfer_version(tmp_path: Path) -> None:
    import importlib.metadata

    from seqtransfer.report.render import _inline_html

    version = importlib.metadata.version("seqtransfer")
    first = header_lines(_data(tmp_path, [], {"config": {}, "versions": {"python": "3.11.7", "seqtransfer": version}}))[
        0
    ]
    config = tmp_path / "config.resolved.json"
    assert first == f"Configuration: `{config}`; package versions: python 3.11.7, seqtransfer {version}"
    assert _inline_html(first).startswith(f"Configuration: <code>{tmp_path / 'config.resolved.json'}</code>;")
    # a run recorded by another (or no) seqtransfer: the report says which version wrote it
    lines = header_lines(_data(tmp_path, [], {"config": {}, "versions": {"seqtransfer": "0.0.1"}}))
    assert lines[0].endswith(f"seqtransfer 0.0.1; report written by seqtransfer {version}")
    (tmp_path / "config.resolved.json").unlink()
    lines = header_lines(_data(tmp_path, [], None))
    assert lines[0] == f"Configuration: not recorded (no config.resolved.json); report written by seqtransfer {version}"
    assert lines[-2].startswith("Targets: 2; draws of the 3 target training cases: 3;")
