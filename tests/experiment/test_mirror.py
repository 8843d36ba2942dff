"""A worker's copy of the run (``seqtransfer.experiment.mirror``), with the server as a plain
object: what travels, what is fetched once per node, what comes back, and what is refused."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from seqtransfer.core.errors import StoreError
from seqtransfer.core.fetch import exists, install, need
from seqtransfer.experiment.mirror import (
    RUN,
    Entry,
    FolderServer,
    Mirror,
    driver_roots,
    manifest,
    stage_link,
    tokens,
    untokens,
)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _run_folder(tmp_path: Path) -> tuple[Path, Path]:
    run = tmp_path / "driver" / "run"
    (run / "graphs" / "draw0" / "features").mkdir(parents=True)
    (run / "graphs" / "draw0" / "features" / "a.npy").write_bytes(b"features")
    (run / "graphs" / "draw1").mkdir(parents=True)
    os.symlink(run / "graphs" / "draw0" / "features", run / "graphs" / "draw1" / "features")
    (run / "graphs" / "draw0" / "graph.json").write_text('{"nodes": []}')
    (run / "runs.sqlite").write_bytes(b"the store")
    (run / "report").mkdir()
    (run / "report" / "summary.md").write_text("report")
    (run / "predictions").mkdir()
    (run / "predictions" / "p.nii.gz").write_bytes(b"prediction")
    (run / "models" / "zoo" / "B").mkdir(parents=True)
    (run / "models" / "zoo" / "B" / "checkpoint_final.pth").write_bytes(b"zoo B")
    (run / "models" / ".checkpoint.pth.abc.tmp").write_bytes(b"half written")
    data = tmp_path / "elsewhere" / "Dataset001_X"
    (data / "imagesTr").mkdir(parents=True)
    (data / "imagesTr" / "c_0000.nii.gz").write_bytes(b"image")
    (data / "dataset.json").write_text("{}")
    return run, data


def test_tokens_round_trip_and_touch_only_paths_inside_a_root() -> None:
    roots = {RUN: "/a/run", "@data0": "/a/run-data"}
    record = {"folder": "/a/run/models/x", "other": "/a/run-data/imagesTr", "name": "/a/runner", "n": [1, "/a/run"]}
    spelled = tokens(record, roots)
    assert spelled == {"folder": "@run/models/x", "other": "@data0/imagesTr", "name": "/a/runner", "n": [1, "@run"]}
    assert untokens(spelled, roots) == record


def test_the_manifest_lists_what_workers_need_and_nothing_of_the_driver_s(tmp_path: Path) -> None:
    run, data = _run_folder(tmp_path)
    roots = driver_roots(run, [str(data)], {"@groups": None})
    entries = manifest(roots)
    assert set(entries) == {
        "@run/graphs/draw0/features/a.npy",
        "@run/graphs/draw0/graph.json",
        "@run/graphs/draw1/features",
        "@run/models/zoo/B/checkpoint_final.pth",
        "@data0/imagesTr/c_0000.nii.gz",
        "@data0/dataset.json",
    }
    assert entries["@run/graphs/draw1/features"] == Entry(link="@run/graphs/draw0/features")
    assert entries["@data0/imagesTr/c_0000.nii.gz"] == Entry(sha=_sha(b"image"), size=5)


def _mirror(tmp_path: Path, run: Path, data: Path, node: str) -> tuple[Mirror, FolderServer, list[str]]:
    roots = driver_roots(run, [str(data)], {})
    server = FolderServer({t: str(p) for t, p in roots.items()})
    reads: list[str] = []
    read = server.read

    def counting(key: str, sha: str) -> bytes:
        reads.append(key)
        return read(key, sha)

    server.read = counting  # type: ignore[method-assign]
    link = stage_link(roots, server, None)
    mirror = Mirror(tmp_path / "scratch" / node, link, node=node)
    mirror.sync(link.entries)
    return mirror, server, reads


def test_a_worker_s_copy_holds_the_files_under_their_own_names_and_links(tmp_path: Path) -> None:
    run, data = _run_folder(tmp_path)
    mirror, _, reads = _mirror(tmp_path, run, data, "n1")
    local = mirror.path(RUN)
    assert local.name == "run" and not local.is_relative_to(run)
    assert (local / "graphs" / "draw0" / "graph.json").read_text() == '{"nodes": []}'
    assert (local / "graphs" / "draw1" / "features").is_symlink()
    assert (local / "graphs" / "draw1" / "features" / "a.npy").read_bytes() == b"features"
    assert (mirror.path("@data0") / "imagesTr" / "c_0000.nii.gz").read_bytes() == b"image"
    assert mirror.path("@data0").name == "Dataset001_X"  # a task's name may come from its folder
    assert not (local / "runs.sqlite").exists() and not (local / "report").exists()
    assert not (local / "predictions").exists()
    assert len(reads) == 4  # every file once, the link none, the models not yet
    assert not (local / "models" / "zoo" / "B").exists()
    assert mirror.inward("@run/models/m") == str(local / "models" / "m")
    assert mirror.outward(str(local / "models" / "m")) == "@run/models/m"


def test_a_model_is_fetched_when_the_code_needs_it_and_only_then(tmp_path: Path) -> None:
    run, data = _run_folder(tmp_path)
    mirror, _, reads = _mirror(tmp_path, run, data, "n1")
    local = mirror.path(RUN)
    reads.clear()
    install(mirror.fetch, mirror.has)
    try:
        need(local / "models" / "zoo" / "C")  # the driver has none: nothing to fetch
        assert reads == []
        checkpoint = local / "models" / "zoo" / "B" / "checkpoint_final.pth"
        assert exists(checkpoint) and not checkpoint.exists() and not exists(local / "models" / "zoo" / "C")
        assert reads == []  # asked, not fetched
        need(local / "models" / "zoo")
        assert reads == ["@run/models/zoo/B/checkpoint_final.pth"]
        assert (local / "models" / "zoo" / "B" / "checkpoint_final.pth").read_bytes() == b"zoo B"
        need(local / "models" / "zoo" / "B" / "checkpoint_final.pth")
        assert len(reads) == 1  # once
    finally:
        install(None)
    assert mirror.ship() == 0  # what was fetched is the driver's already


def test_a_second_process_of_the_node_fetches_nothing_again(tmp_path: Path) -> None:
    run, data = _run_folder(tmp_path)
    first, _, _ = _mirror(tmp_path, run, data, "n1")
    roots = driver_roots(run, [str(data)], {})
    server = FolderServer({t: str(p) for t, p in roots.items()})
    server.read = lambda key, sha: pytest.fail(f"{key} fetched twice on one node")  # type: ignore[method-assign]
    link = stage_link(roots, server, None)
    second = Mirror(tmp_path / "scratch" / "n1", link, node="other-process")
    assert second.sync(link.entries) == 4  # placed from the node's objects (the model when needed)
    assert (second.path(RUN) / "graphs" / "draw0" / "graph.json").read_text() == '{"nodes": []}'
    assert second.path(RUN) != first.path(RUN)


def test_new_files_come_back_to_the_run_folder_once_and_nothing_else(tmp_path: Path) -> None:
    run, data = _run_folder(tmp_path)
    mirror, _, _ = _mirror(tmp_path, run, data, "n1")
    local = mirror.path(RUN)
    (local / "models" / "zoo" / "A").mkdir(parents=True)
    (local / "models" / "zoo" / "A" / "checkpoint_final.pth").write_bytes(b"weights")
    (local / "models" / "zoo" / "A" / ".checkpoint_latest.pth.x.tmp").write_bytes(b"half")
    (local / "predictions" / "T").mkdir(parents=True)
    (local / "predictions" / "T" / "c.nii.gz").write_bytes(b"seg")
    os.symlink(local / "models" / "zoo" / "A", local / "models" / "alias")
    (local / "graphs" / "draw0" / "new.json").write_text('{"nodes": [1]}')
    # replaced, as atomic writes do
    os.replace(local / "graphs" / "draw0" / "new.json", local / "graphs" / "draw0" / "graph.json")
    assert mirror.ship() == 4
    assert (run / "models" / "zoo" / "A" / "checkpoint_final.pth").read_bytes() == b"weights"
    assert not (run / "models" / "zoo" / "A" / ".checkpoint_latest.pth.x.tmp").exists()
    assert (run / "predictions" / "T" / "c.nii.gz").read_bytes() == b"seg"
    assert os.readlink(run / "models" / "alias") == str(run / "models" / "zoo" / "A")
    assert (run / "graphs" / "draw0" / "graph.json").read_text() == '{"nodes": [1]}'
    assert mirror.ship() == 0  # nothing new since
    # the objects a node shares were not changed through the worker's copy
    objects = sorted((tmp_path / "scratch" / "n1" / "objects").rglob("*"))
    for obj in (o for o in objects if o.is_file() and not o.name.startswith(".")):
        assert _sha(obj.read_bytes()) == obj.name


def test_a_changed_driver_file_is_fetched_again_at_the_next_sync(tmp_path: Path) -> None:
    run, data = _run_folder(tmp_path)
    mirror, server, reads = _mirror(tmp_path, run, data, "n1")
    (run / "graphs" / "draw0" / "graph.json").write_text('{"nodes": [2]}')
    reads.clear()
    link = stage_link(driver_roots(run, [str(data)], {}), server, None)
    assert mirror.sync(link.entries) == 1 and reads == ["@run/graphs/draw0/graph.json"]
    assert (mirror.path(RUN) / "graphs" / "draw0" / "graph.json").read_text() == '{"nodes": [2]}'


def test_the_server_refuses_what_a_worker_may_not_write_or_read(tmp_path: Path) -> None:
    run, data = _run_folder(tmp_path)
    server = FolderServer({RUN: str(run), "@data0": str(data)})
    for key in ("@run/runs.sqlite", "@run/report/x", "@data0/dataset.json", "@run/../x", "@elsewhere/x", "@run"):
        with pytest.raises(StoreError):
            server.write(key, b"x", _sha(b"x"))
    with pytest.raises(StoreError, match="damaged"):
        server.write("@run/models/m", b"x", _sha(b"y"))
    with pytest.raises(StoreError, match="changed"):
        server.read("@run/graphs/draw0/graph.json", _sha(b"not it"))
    assert (run / "runs.sqlite").read_bytes() == b"the store"


def test_a_process_s_copy_starts_clean_and_dead_processes_copies_are_swept(tmp_path: Path) -> None:
    run, data = _run_folder(tmp_path)
    roots = driver_roots(run, [str(data)], {})
    link = stage_link(roots, FolderServer({t: str(p) for t, p in roots.items()}), None)
    runs = tmp_path / "scratch" / "runs" / link.run
    dead, other_node, mine = runs / "n1-999999999", runs / "n2-999999999", runs / f"n1-{os.getpid()}"
    for folder in (dead, other_node, mine):
        (folder / "run" / "models").mkdir(parents=True)
        (folder / "run" / "models" / "stale.pth").write_bytes(b"old")
    mirror = Mirror(tmp_path / "scratch", link, node="n1")
    assert not dead.exists() and other_node.exists()  # another node's processes are not ours to judge
    assert mirror.root == mine and not (mine / "run" / "models" / "stale.pth").exists()
    mirror.sync(link.entries)
    assert mirror.ship() == 0  # nothing of an earlier process is sent as new


def test_records_written_with_other_spellings_of_the_run_folder_are_tokenised(tmp_path: Path, monkeypatch) -> None:
    from seqtransfer.experiment.config import config_from_dict
    from seqtransfer.experiment.runner import Shipping

    run, data = _run_folder(tmp_path)
    (data.parent / "objective_groups.json").write_text('{"lesion": "brain"}')
    monkeypatch.chdir(run.parent)
    config = config_from_dict({"data": {"datasets": [str(data)]}})
    ship = Shipping.start(config, Path("run"), None, server=object())
    assert ship.tokens({"folder": "run/models/a", "abs": str(run / "models" / "a")}) == {
        "folder": "@run/models/a",
        "abs": "@run/models/a",
    }
    # the groups file found beside the datasets is named for the workers (their copies have no common parent)
    worker = ship.worker_config(config)
    assert worker.data.datasets == ("@data0",) and worker.data.groups == "@groups"
    assert ship.roots["@groups"] == (data.parent / "objective_groups.json").resolve()


def test_a_json_file_naming_the_worker_s_paths_reaches_the_driver_naming_the_driver_s(tmp_path: Path) -> None:
    import json

    run, data = _run_folder(tmp_path)
    mirror, server, _ = _mirror(tmp_path, run, data, "n1")
    local = mirror.path(RUN)
    metrics = local / "models" / "transfers" / "T" / "metrics.json"
    metrics.parent.mkdir(parents=True)
    written = {"final_model": str(local / "models" / "finetune" / "k"), "run_dir": str(local) + "-not-it", "d": 0.5}
    metrics.write_text(json.dumps(written))
    assert mirror.ship() == 1
    arrived = json.loads((run / "models" / "transfers" / "T" / "metrics.json").read_text())
    assert arrived == {**written, "final_model": str(run / "models" / "finetune" / "k")}
    assert mirror.ship() == 0
    # the next stage: the driver's version comes back here once, then nothing is sent again
    link = stage_link(driver_roots(run, [str(data)], {}), server, None)
    mirror.sync(link.entries)
    mirror.fetch(local / "models")
    assert json.loads(metrics.read_text())["final_model"] == str(run / "models" / "finetune" / "k")
    assert mirror.ship() == 0


def test_a_storage_folder_is_refused_in_one_line_without_ray_or_when_it_cannot_be_written(tmp_path: Path) -> None:
    from seqtransfer.core.errors import ConfigError
    from seqtransfer.core.executor import make_executor

    with pytest.raises(ConfigError, match="only for --executor ray"):
        make_executor("local", workers=1, storage=str(tmp_path / "s"))
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError, match="cannot write"):  # refused before Ray is started
        make_executor("ray", storage=str(tmp_path / "a-file" / "s"))
