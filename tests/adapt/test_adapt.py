"""``seqtransfer adapt`` end to end on tiny data: a new site with 3 labelled cases and unlabelled images."""

from __future__ import annotations

import json
import math
import signal
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from seqtransfer.adapt import AdaptConfig, adapt, plan_adapt
from seqtransfer.core.errors import ConfigError
from seqtransfer.data.io import write_image
from seqtransfer.graph.config import GraphConfig
from seqtransfer.pipeline.config import FinetuneConfig, ZooConfig
from seqtransfer.training.config import NetworkConfig, TrainConfig


def write_dataset(root: Path, **kwargs: object) -> Path:
    """The suite's tiny nnU-Net dataset writer (tests/conftest.py), loaded by path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_suite_conftest", Path(__file__).resolve().parents[1] / "conftest.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_dataset(root, **kwargs)


SHAPE = (16, 16, 16)
NET = NetworkConfig(patch_size=(16, 16, 16), filters=(4, 8, 16))
CONFIG = AdaptConfig(
    zoo=ZooConfig(network=NET, train=TrainConfig(steps=3, augment=False), max_train=3),
    finetune=FinetuneConfig(steps=3, augment=False, checkpoint_every=1),
    graph=GraphConfig(size=16, volumes_per_task=3, max_pairs=4, n_components=3, max_slices=100),
)
TARGETS = ["New-T2w-tumour", "New-T2w-edema"]


def _unlabelled(root: Path, n: int, channels: int, seed: int) -> list[str]:
    """nnU-Net imagesTs: ``n`` cases, the last of another shape and spacing."""
    rng = np.random.default_rng(seed)
    ids = []
    for i in range(n):
        shape = SHAPE if i < n - 1 else (18, 15, 13)
        affine = np.diag([1.0, 1.0, 1.0, 1.0]) if i < n - 1 else np.diag([0.9, 1.1, 1.3, 1.0])
        affine[:3, 3] = [2.0, -1.0, 0.5]
        case = f"ts_{i:03d}"
        label = np.zeros(shape, np.uint8)
        label[5:9, 5:9, 5:9] = 1
        for ch in range(channels):
            image = np.zeros(shape, np.float32)
            image[1:-1, 1:-1, 1:-1] = rng.normal(100 + 10 * ch, 5, size=tuple(s - 2 for s in shape))
            image[label > 0] += 50
            write_image(root / "imagesTs" / f"{case}_{ch:04d}.nii.gz", image, affine)
        ids.append(case)
    return ids


@pytest.fixture
def data(tmp_path: Path) -> dict[str, object]:
    """Sources at sites A and B (T1, T2; tumour, edema), a target site with other channel names."""
    sites = {f"case_{i:03d}": ("A" if i < 4 else "B") for i in range(8)}
    src = write_dataset(
        tmp_path / "Dataset001_Src",
        n_cases=8,
        channels=("T1", "T2"),
        labels=("tumour", "edema"),
        shape=SHAPE,
        sites=sites,
        seed=1,
    )
    new = write_dataset(
        tmp_path / "Dataset002_New", n_cases=3, channels=("t1", "T2w"), labels=("tumour", "edema"), shape=SHAPE, seed=5
    )
    unlabelled = _unlabelled(new, 4, 2, seed=6)
    (tmp_path / "modality_aliases.json").write_text(json.dumps({"T2w": "T2"}))
    return {"src": src, "new": new, "unlabelled": unlabelled, "cache": tmp_path / "cache"}


def test_adapt_two_targets_end_to_end_then_a_rerun_trains_nothing(
    data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    plan = plan_adapt([data["src"]], data["new"], TARGETS, estimate=True)
    assert [t.modality_key for t in plan.targets] == ["t2", "t2"]  # T2w through the alias map found beside the datasets
    out = tmp_path / "out"
    result = adapt(plan, out, replace(CONFIG, estimate=True), cache_dir=data["cache"])

    # every unlabelled case, with its own shape, affine and header, and only the dataset's values
    for case in data["unlabelled"]:
        image = nib.load(str(data["new"] / "imagesTs" / f"{case}_0000.nii.gz"))
        pred = nib.load(str(out / "predictions" / f"{case}.nii.gz"))
        assert pred.shape == image.shape
        np.testing.assert_allclose(pred.affine, image.affine)
        np.testing.assert_allclose(pred.header.get_zooms(), image.header.get_zooms())
        assert pred.get_data_dtype() == np.uint8
        assert set(np.unique(np.asarray(pred.dataobj)).tolist()) <= {0, 1, 2}
    assert sorted(p.name for p in (out / "predictions").iterdir()) == sorted(f"{c}.nii.gz" for c in data["unlabelled"])

    saved = json.loads((out / "adapt.json").read_text())
    assert saved["predictions"]["cases"] == sorted(data["unlabelled"])
    graph = json.loads((out / "graph" / "graph.json").read_text())
    sources = {n["id"] for n in graph["nodes"] if n["role"] == "source"}
    for record, name in zip(saved["targets"], TARGETS, strict=True):
        assert (
            record["target"] == name
            and record["path"][-1] == name
            and record["path"][0] == record["landmark"] in sources
        )
        assert record["labelled_cases"] == ["case_000", "case_001", "case_002"]
        assert record["step_models"][-1]["train_cases"] == record["labelled_cases"]  # all labelled cases, no draws
        assert Path(record["final_model"], "checkpoint_final.pth").exists()
        # the landmark's recorded model and the configuration it was trained with: adapt's own here
        transfer_metrics = json.loads((out / "transfers" / name / "metrics.json").read_text())
        assert transfer_metrics["zoo"] == CONFIG.zoo.to_dict()
        estimate = record["estimate"]
        assert sorted(estimate["per_case"]) == record["labelled_cases"] and estimate["n"] == 3
        finite = [v for v in estimate["per_case"].values() if v is not None]
        assert estimate["mean_dice"] == pytest.approx(float(np.mean(finite)))
        for left_out in record["labelled_cases"]:
            metrics = json.loads((out / "estimate" / name / left_out / "metrics.json").read_text())
            assert left_out not in metrics["target_train_cases"] and len(metrics["target_train_cases"]) == 2
    params = json.loads((out / "graph" / "params.json").read_text())
    assert params["targets"][TARGETS[0]] == {"labelled_cases": 3, "affinity_cases": 3}
    selection = json.loads((out / "graph" / "selections" / f"{TARGETS[0]}.json").read_text())
    assert selection["target_affinity_cases"] == 3
    # the default score, leep: T = exp(LEEP) of every connected source model on the labelled cases
    # stands for O, the landmark is argmin w / (zeta rho T), recorded and explained in the report
    assert CONFIG.score == "leep" and saved["config"]["score"] == "leep" and selection["score"] == "leep"
    rows = selection["landmark_scores"]
    assert rows and all(r["T"] is not None and 0.0 < r["T"] <= 1.0 for r in rows)
    assert all(
        r["score"] is None or math.isclose(r["score"], r["w"] / (r["zeta"] * r["rho"] * r["T"]), rel_tol=1e-12)
        for r in rows
    )
    candidates = [r for r in rows if not r["excluded"] and r["score"] is not None]
    assert (
        selection["landmark"]
        == min(candidates, key=lambda r: (r["score"], r["source"]))["source"]
        == saved["targets"][0]["landmark"]
    )
    assert saved["targets"][0]["score"] == "leep" and "exp(LEEP)" in (out / "report.html").read_text()
    with pytest.raises(ConfigError, match="score must be one of"):
        replace(CONFIG, score="best")
    page = (out / "report.html").read_text()
    assert "Why this landmark" in page and "Why this path" in page and page.count("data:image/png;base64") >= 4
    assert result["targets"][0]["landmark"] == saved["targets"][0]["landmark"]

    # a rerun with everything done trains and predicts nothing
    before = {p.name: p.stat().st_mtime_ns for p in (out / "predictions").iterdir()}

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("trained again")

    monkeypatch.setattr("seqtransfer.pipeline.transfer.train", refuse)
    monkeypatch.setattr("seqtransfer.pipeline.zoo.train", refuse)
    monkeypatch.setattr("seqtransfer.adapt.run.merge_labels", refuse)
    again = adapt(
        plan_adapt([data["src"]], data["new"], TARGETS, estimate=True),
        out,
        replace(CONFIG, estimate=True),
        cache_dir=data["cache"],
    )
    assert again["targets"][0]["path"] == saved["targets"][0]["path"]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "predictions").iterdir()} == before


def test_merged_map_follows_each_target_models_probabilities(data, tmp_path: Path) -> None:
    """The merged label of a case is the most probable class above 0.5, computed independently here."""
    from seqtransfer.data.io import read_image
    from seqtransfer.data.preprocess import preprocess_arrays, restore_probability
    from seqtransfer.evaluation.inference import predict_probabilities
    from seqtransfer.pipeline.predict import model_preprocess
    from seqtransfer.pipeline.zoo import load_model

    plan = plan_adapt([data["src"]], data["new"], TARGETS)
    out = tmp_path / "out"
    result = adapt(plan, out, CONFIG, cache_dir=data["cache"])
    case = data["unlabelled"][-1]  # the one of another shape and spacing
    images = [read_image(data["new"] / "imagesTs" / f"{case}_{c:04d}.nii.gz") for c in range(2)]
    stack = np.stack([a for a, _ in images])
    probabilities = []
    for record in result["targets"]:
        model, network = load_model(Path(record["final_model"]), "cpu")
        config = model_preprocess(Path(record["final_model"]), 16)
        grid, _, box = preprocess_arrays(stack, np.zeros(stack.shape[1:], np.int64), config, images[0][1].spacing)
        p = predict_probabilities(model, np.asarray(grid[1][None]), (16, 16, 16), "cpu")[1]
        probabilities.append(restore_probability(p, stack.shape[1:], box))
    expected = np.zeros(stack.shape[1:], np.uint8)
    for index in np.ndindex(expected.shape):
        p_tumour, p_edema = probabilities[0][index], probabilities[1][index]
        best, value = (p_tumour, 1) if p_tumour >= p_edema else (p_edema, 2)
        expected[index] = value if best > 0.5 else 0
    got = np.asarray(nib.load(str(out / "predictions" / f"{case}.nii.gz")).dataobj)
    np.testing.assert_array_equal(got, expected)


TINY = ["--zoo-steps", "1", "--steps", "1", "--size", "16", "--volumes", "3"]


def test_cli_one_labelled_case_and_target_all(tmp_path: Path, run_cli) -> None:
    sites = {f"case_{i:03d}": ("A" if i < 3 else "B") for i in range(6)}
    src = write_dataset(
        tmp_path / "Dataset001_Src",
        n_cases=6,
        channels=("FLAIR",),
        labels=("lesion",),
        shape=SHAPE,
        sites=sites,
        seed=1,
    )
    new = write_dataset(
        tmp_path / "Dataset002_One", n_cases=1, channels=("flair",), labels=("lesion",), shape=SHAPE, seed=3
    )
    cases = _unlabelled(new, 2, 1, seed=4)
    out = tmp_path / "out"
    code, stdout, err = run_cli("adapt", src, new, "--target", "all", "--out", out, *TINY)
    assert code == 0, err
    assert "One-flair-lesion" in stdout and "(1 labelled case(s))" in stdout
    saved = json.loads((out / "adapt.json").read_text())
    assert saved["targets"][0]["labelled_cases"] == ["case_000"] and saved["predictions"]["cases"] == cases
    for case in cases:
        assert (out / "predictions" / f"{case}.nii.gz").exists()


def test_few_label_target_through_graph_build_select_transfer_predict(data, tmp_path: Path, run_cli) -> None:
    """Every command that takes a target accepts one with 3 labelled cases (19 are the protocol's)."""
    graph = tmp_path / "g"
    target = "New-T2w-edema"
    code, _, err = run_cli(
        "graph", "build", data["src"], data["new"], "--out", graph, "--target", target, "--size", "16", "--volumes", "3"
    )
    assert code == 0, err
    node = next(n for n in json.loads((graph / "graph.json").read_text())["nodes"] if n["id"] == target)
    assert node["affinity_cases"] == ["case_000", "case_001", "case_002"] and node["modality_key"] == "t2"
    code, _, err = run_cli("zoo", "train", "--graph", graph, "--tasks", "A-T2-edema,B-T2-edema", "--steps", "1")
    assert code == 0, err
    code, stdout, err = run_cli("select", "--graph", graph, "--target", target, "--uniform-performance")
    assert code == 0, err
    code, stdout, err = run_cli(
        "transfer",
        "--graph",
        graph,
        "--target",
        target,
        "--path",
        f"A-T2-edema,{target}",
        "--steps",
        "1",
        "--zoo-steps",
        "1",
    )
    assert code == 0, err
    assert "all 3 labelled case(s)" in stdout and "n/a" in stdout
    run = next((graph / "transfers" / target).iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert (
        metrics["target_train_cases"] == ["case_000", "case_001", "case_002"]
        and metrics["test_sets"] == []
        and metrics["final_dice"] is None
    )
    code, _, err = run_cli(
        "predict", "--model", run, "--input", data["new"] / "imagesTs" / "ts_000_0001.nii.gz", "--out", tmp_path / "p"
    )
    assert code == 0, err
    # graph build --add with another few-label target (2 labelled cases, another site)
    third = write_dataset(
        tmp_path / "Dataset004_Third", n_cases=2, channels=("T2",), labels=("edema",), shape=SHAPE, seed=8
    )
    code, _, err = run_cli(
        "graph", "build", data["src"], data["new"], third, "--out", graph, "--add", "--target", "Third-T2-edema"
    )
    assert code == 0, err
    params = json.loads((graph / "params.json").read_text())
    assert params["targets"]["Third-T2-edema"] == {"labelled_cases": 2, "affinity_cases": 2}


def _bad(kind: str, data: dict[str, object], tmp_path: Path) -> tuple[list[object], str]:
    src, new = Path(str(data["src"])), Path(str(data["new"]))
    out = tmp_path / "out"
    base = ["adapt", src, new, "--target", "New-T2w-edema", "--out", out, *TINY]
    if kind == "no labelled case":
        empty = write_dataset(
            tmp_path / "Dataset009_Empty", n_cases=1, channels=("T2",), labels=("edema",), shape=SHAPE
        )
        (empty / "labelsTr" / "case_000.nii.gz").unlink()
        for f in (empty / "imagesTr").iterdir():
            f.unlink()
        meta = json.loads((empty / "dataset.json").read_text())
        (empty / "dataset.json").write_text(json.dumps({**meta, "numTraining": 0}))
        return ["adapt", src, empty, "--target", "Empty-T2-edema", "--out", out, *TINY], "no training cases"
    if kind == "missing channel":
        (new / "imagesTs" / "ts_001_0001.nii.gz").unlink()
        return base, "ts_001_0001.nii.gz: missing"
    if kind == "extra channel":
        write_image(new / "imagesTs" / "ts_001_0002.nii.gz", np.ones(SHAPE, np.float32), np.eye(4))
        return base, "ts_001_0002.nii.gz: channel 2"
    if kind == "corrupt image":
        (new / "imagesTs" / "ts_000_0000.nii.gz").write_bytes(b"not a nifti file at all")
        return base, "ts_000_0000.nii.gz: unreadable"
    if kind == "empty input":
        (tmp_path / "nothing").mkdir()
        return [*base, "--input", tmp_path / "nothing"], "no image to predict"
    if kind == "graph of other datasets":
        other = write_dataset(
            tmp_path / "Dataset003_Other",
            n_cases=6,
            channels=("T2",),
            labels=("edema",),
            shape=SHAPE,
            sites={f"case_{i:03d}": "C" if i < 3 else "D" for i in range(6)},
        )
        graph = tmp_path / "other_graph"
        (graph).mkdir()
        from seqtransfer.data.dataset import parse_dataset
        from seqtransfer.data.tasks import split_tasks
        from seqtransfer.graph import build_graph

        build_graph(
            split_tasks([parse_dataset(other)[0]]),
            graph,
            GraphConfig(size=16, volumes_per_task=2, max_pairs=2, n_components=2, max_slices=50),
        )
        return [*base, "--graph", graph], "the graph was built from"
    if kind == "target of a source dataset":
        return ["adapt", src, new, "--target", "A-T2-edema", "--out", out, *TINY], "a task of the source dataset"
    if kind == "unwritable out":
        (tmp_path / "afile").write_text("x")
        return [
            "adapt",
            src,
            new,
            "--target",
            "New-T2w-edema",
            "--out",
            tmp_path / "afile" / "sub",
            *TINY,
        ], "cannot write"
    if kind == "unreachable":
        pet = write_dataset(tmp_path / "Dataset005_Pet", n_cases=2, channels=("PET",), labels=("uptake",), shape=SHAPE)
        return ["adapt", src, pet, "--target", "Pet-PET-uptake", "--out", out, *TINY], "--modalities FILE"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "no labelled case",
        "missing channel",
        "extra channel",
        "corrupt image",
        "empty input",
        "graph of other datasets",
        "target of a source dataset",
        "unwritable out",
        "unreachable",
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(kind: str, data, tmp_path: Path, run_cli) -> None:
    argv, message = _bad(kind, data, tmp_path)
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if "cache" not in p.parts)
    code, _, err = run_cli(*argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    after = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if "cache" not in p.parts)
    assert after == before
    if kind == "unreachable":
        assert "--groups FILE" in err and '"PET"' in err and '"uptake"' in err


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from seqtransfer.adapt import AdaptConfig, adapt, plan_adapt
    from seqtransfer.graph.config import GraphConfig
    from seqtransfer.training.config import TrainConfig
    from seqtransfer.training.config import NetworkConfig
    from seqtransfer.pipeline.config import FinetuneConfig
    from seqtransfer.pipeline.config import ZooConfig
    from seqtransfer.core.threads import single_threaded

    NET = NetworkConfig(patch_size=(16, 16, 16), filters=(4, 8, 16))
    CONFIG = AdaptConfig(
        zoo=ZooConfig(network=NET, train=TrainConfig(steps=3, augment=False), max_train=3),
        finetune=FinetuneConfig(steps=3, augment=False, checkpoint_every=1),
        graph=GraphConfig(size=16, volumes_per_task=3, max_pairs=4, n_components=3, max_slices=100),
    )
    TARGETS = {targets!r}

    kill_at = int(sys.argv[2])

    def progress(event):
        if kill_at and event.stage == "training " + TARGETS[0] and event.done == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    with single_threaded():
        plan = plan_adapt([{src!r}], {new!r}, TARGETS[:1])
        adapt(plan, Path(sys.argv[1]), CONFIG, cache_dir={cache!r}, progress=progress)
    """
)


@pytest.mark.kill
@pytest.mark.slow
def test_sigkill_inside_fine_tuning_then_rerun_gives_identical_predictions(warm_python, data, tmp_path: Path) -> None:
    script = tmp_path / "kill.py"
    script.write_text(
        KILL_SCRIPT.format(targets=TARGETS, src=str(data["src"]), new=str(data["new"]), cache=str(data["cache"]))
    )
    # three runs of the script, each forked from the warm zygote (which imports this tree's src)
    killed = tmp_path / "killed"
    first = warm_python.run(script, killed, "2", timeout=600)
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert not (killed / "adapt.json").exists()
    checkpoints = list((killed / "graph" / "finetune").glob("*/checkpoint_latest.pth"))
    assert checkpoints, "the kill came inside the target's fine-tuning, after a checkpoint"
    second = warm_python.run(script, killed, "0", timeout=600)
    assert second.returncode == 0, second.stderr
    whole = tmp_path / "whole"
    third = warm_python.run(script, whole, "0", timeout=600)
    assert third.returncode == 0, third.stderr
    for case in data["unlabelled"]:
        a = np.asarray(nib.load(str(killed / "predictions" / f"{case}.nii.gz")).dataobj)
        b = np.asarray(nib.load(str(whole / "predictions" / f"{case}.nii.gz")).dataobj)
        np.testing.assert_array_equal(a, b)
    resumed = json.loads((killed / "adapt.json").read_text())["targets"][0]
    assert resumed["path"] == json.loads((whole / "adapt.json").read_text())["targets"][0]["path"]
