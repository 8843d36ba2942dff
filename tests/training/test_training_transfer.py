"""Zoo, sequential transfer and predict end to end on tiny data."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from seqtransfer.cli import main
from seqtransfer.core.errors import ConfigError, StoreError
from seqtransfer.data.dataset import parse_dataset
from seqtransfer.data.preprocess import PreprocessCache, PreprocessConfig
from seqtransfer.data.tasks import split_tasks
from seqtransfer.graph import GraphConfig, build_graph
from seqtransfer.pipeline.config import FinetuneConfig, ZooConfig
from seqtransfer.pipeline.transfer import TransferResult, run_transfer
from seqtransfer.pipeline.workspace import open_workspace
from seqtransfer.pipeline.zoo import ZooModel, train_zoo, zoo_model
from seqtransfer.training.config import NetworkConfig, TrainConfig

SHAPE = (16, 16, 16)
NET = NetworkConfig(patch_size=(16, 16, 16), filters=(4, 8, 16))
ZOO = ZooConfig(network=NET, train=TrainConfig(steps=3, augment=False), max_train=4)
FT = FinetuneConfig(steps=2, augment=False)
TARGET = "Les-T1-lesion"
#: ``metrics.json`` of a transfer run, as every run before the typed result wrote it
METRICS_KEYS = (
    *("target", "path", "draw", "landmark_model", "landmark_source_dice", "zero_shot_dice", "zero_shot_test_set_dice"),
    *(
        "final_dice",
        "final_test_set_dice",
        "final_model",
        "target_train_cases",
        "mode",
        "test_sets",
        "per_case",
        "steps",
    ),
    *("finetune", "zoo", "device"),
)
STEP_KEYS = {
    "node",
    "train_cases",
    "dice_before",
    "dice_after",
    "test_set_dice_after",
    "encoder_unchanged",
    "seconds",
    "cached",
    "folder",
}


@pytest.fixture
def workspace(dataset_factory, tmp_path: Path):
    sites = {f"case_{i:03d}": ("A" if i < 6 else "B") for i in range(12)}
    tum = dataset_factory(
        "Dataset001_Tum", n_cases=12, channels=("T1",), labels=("tumour",), shape=SHAPE, sites=sites, seed=1
    )
    les = dataset_factory("Dataset002_Les", n_cases=20, channels=("T1",), labels=("lesion",), shape=SHAPE, seed=2)
    tasks = split_tasks([parse_dataset(tum)[0], parse_dataset(les)[0]])
    config = GraphConfig(size=16, volumes_per_task=3, max_pairs=4, n_components=3, max_slices=100)
    build_graph(
        tasks, tmp_path / "g", config, targets=[TARGET], cache=PreprocessCache(tmp_path / "c", PreprocessConfig(16))
    )
    return open_workspace(tmp_path / "g", size=16, cache_dir=tmp_path / "c")


def test_zoo_records_o_and_never_trains_twice(workspace) -> None:
    models = train_zoo(workspace, ["A-T1-tumour"], ZOO)
    assert 0.0 <= models[0].dice <= 1.0
    graph = json.loads((workspace.root / "graph.json").read_text())
    node = next(n for n in graph["nodes"] if n["id"] == "A-T1-tumour")
    # 6 cases: 3 held out for O (half of a source under 10 cases), so 3 of max_train 4 train
    assert node["dice"] == models[0].dice and len(models[0].train_cases) == 3 and len(models[0].test_cases) == 3
    assert node["n_train"] == 3 and node["o_cases"] == 3  # zeta from the real split, O's case count
    mtime = models[0].checkpoint.stat().st_mtime_ns
    again = train_zoo(workspace, ["A-T1-tumour"], ZOO)
    assert again[0].folder == models[0].folder and again[0].checkpoint.stat().st_mtime_ns == mtime


def test_a_zoo_model_is_stored_in_the_layout_of_the_run_store_and_read_back(tmp_path: Path) -> None:
    folder = tmp_path / "zoo" / "A"
    model = ZooModel(task="A-T1-tumour", folder=folder, key="k1", dice=0.5, train_cases=("a", "b"), test_cases=("c",))
    stored = {
        "task": "A-T1-tumour",
        "folder": str(folder),
        "key": "k1",
        "dice": 0.5,
        "train_cases": ["a", "b"],
        "test_cases": ["c"],
    }
    assert model.to_dict() == stored  # the store's ``zoo`` records before the typed model
    assert ZooModel.from_dict(json.loads(json.dumps(stored))) == model
    # an undefined held-out Dice (stored as null, or NaN in metrics.json) counts as 0
    assert ZooModel.from_dict({**stored, "dice": None}).dice == 0.0
    assert ZooModel.from_dict({**stored, "dice": float("nan")}).dice == 0.0
    metrics = {
        "task": "A-T1-tumour",
        "key": "k1",
        "dice": 0.5,
        "learned": True,
        "train_cases": ["a", "b"],
        "test_cases": ["c"],
    }
    assert zoo_model(folder, metrics) == model


def _encoder_weights(folder: str | Path) -> dict[str, object]:
    """The encoder's weights of the model saved in ``folder``, read back from its checkpoint."""
    from seqtransfer.pipeline.zoo import load_model
    from seqtransfer.training.network import encoder_parameters

    model, _ = load_model(Path(folder))
    return {k: v.detach().clone() for k, v in encoder_parameters(model).items()}


def _same_encoder(a: str | Path, b: str | Path) -> bool:
    import torch

    wa, wb = _encoder_weights(a), _encoder_weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_transfer_freezes_encoder_records_steps_and_reuses_prefixes(workspace) -> None:
    metrics = run_transfer(workspace, TARGET, ["A-T1-tumour", "B-T1-tumour", TARGET], ZOO, FT)
    assert [s.node for s in metrics.steps] == ["B-T1-tumour", TARGET]
    # frozen: every step's saved encoder is the landmark model's, read back from the checkpoints
    assert all(s.encoder_unchanged for s in metrics.steps)
    assert all(_same_encoder(metrics.landmark_model, s.folder) for s in metrics.steps)
    assert metrics.steps[0].dice_before == metrics.zero_shot_dice
    assert metrics.steps[1].dice_before == metrics.steps[0].dice_after
    assert len(metrics.test_sets) == 3 and all(len(s) == 10 for s in metrics.test_sets)
    assert not set(metrics.target_train_cases) & {c for s in metrics.test_sets for c in s}
    run_dir = Path(metrics.run_dir)
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["final_dice"] == metrics.final_dice
    # metrics.json keeps the layout it always had; the result is read back from it unchanged
    assert list(saved) == [*METRICS_KEYS]
    assert set(saved["steps"][0]) == STEP_KEYS
    assert metrics.to_dict() == {**saved, "run_dir": str(run_dir)}
    assert TransferResult.from_dict({**saved, "run_dir": str(run_dir)}) == metrics
    # predictions keep the original affine and shape
    case = sorted((run_dir / "predictions").glob("*.nii.gz"))[0]
    original = nib.load(str(workspace.root.parent / "Dataset002_Les" / "labelsTr" / case.name))
    pred = nib.load(str(case))
    assert pred.shape == original.shape and np.allclose(pred.affine, original.affine)
    # a path sharing the first step reuses its checkpoint
    other = run_transfer(workspace, TARGET, ["A-T1-tumour", "B-T1-tumour", TARGET], ZOO, FT)
    assert [s.cached for s in other.steps] == [True, True]
    assert other.final_dice == metrics.final_dice
    direct = run_transfer(workspace, TARGET, ["A-T1-tumour", TARGET], ZOO, FT)
    assert [s.cached for s in direct.steps] == [False]
    # the landmark's Fisher and its zero-shot scores were computed once and kept in its folder
    landmark = Path(metrics.landmark_model)
    assert len(list((landmark / "fisher").glob("*.pth"))) == 1 and len(list((landmark / "scores").glob("*.json"))) == 1
    assert direct.zero_shot_dice == metrics.zero_shot_dice


def test_bad_paths_and_small_targets_are_refused(workspace) -> None:
    with pytest.raises(ConfigError, match="unknown task"):
        run_transfer(workspace, TARGET, ["A-T1-tumour", "Nope-T1-x", TARGET], ZOO, FT)
    with pytest.raises(ConfigError, match="must end at the target"):
        run_transfer(workspace, TARGET, ["A-T1-tumour", "B-T1-tumour"], ZOO, FT)
    with pytest.raises(ConfigError, match="twice"):
        run_transfer(workspace, TARGET, [TARGET, "A-T1-tumour", TARGET], ZOO, FT)
    with pytest.raises(ConfigError, match="protocol .* needs at least 19"):
        run_transfer(workspace, "B-T1-tumour", ["A-T1-tumour", "B-T1-tumour"], ZOO, FT)


def test_predict_cli_writes_labels_with_input_affine(workspace, tmp_path: Path, capsys) -> None:
    models = train_zoo(workspace, ["A-T1-tumour"], ZOO)
    image = next((workspace.root.parent / "Dataset002_Les" / "imagesTr").glob("*_0000.nii.gz"))
    with pytest.raises(SystemExit) as info:
        main(["predict", "--model", str(models[0].folder), "--input", str(image), "--out", str(tmp_path / "pred")])
        raise SystemExit(0)
    assert info.value.code in (0, None), capsys.readouterr().err
    pred = nib.load(str(tmp_path / "pred" / image.name))
    src = nib.load(str(image))
    assert pred.shape == src.shape and np.allclose(pred.affine, src.affine) and pred.get_data_dtype() == np.uint8
    with pytest.raises(SystemExit) as info:
        main(["predict", "--model", str(tmp_path / "nothing"), "--input", str(image), "--out", str(tmp_path / "p2")])
    assert info.value.code == 2 and "not a model folder" in capsys.readouterr().err


def test_full_size_volumes_train_on_patches_and_predict_at_their_spacing(
    dataset_factory, tmp_path: Path, capsys
) -> None:
    """Spacing mode: cases keep their physical extent (larger than the patch on some axes)."""
    shape = (24, 16, 12)  # spacing (1, 1.2, 2) -> cropped to 22 x 17 x 20 voxels at 1 mm
    sites = {f"case_{i:03d}": ("A" if i < 6 else "B") for i in range(12)}
    tum = dataset_factory(
        "Dataset001_Tum", n_cases=12, channels=("T1",), labels=("tumour",), shape=shape, sites=sites, seed=1
    )
    les = dataset_factory("Dataset002_Les", n_cases=20, channels=("T1",), labels=("lesion",), shape=shape, seed=2)
    tasks = split_tasks([parse_dataset(tum)[0], parse_dataset(les)[0]])
    config = GraphConfig(size=16, volumes_per_task=3, max_pairs=4, n_components=3, max_slices=100)
    build_graph(
        tasks, tmp_path / "g", config, targets=[TARGET], cache=PreprocessCache(tmp_path / "c", PreprocessConfig(16))
    )
    ws = open_workspace(tmp_path / "g", size=16, cache_dir=tmp_path / "c", spacing="median")
    assert ws.cache.config.spacing == pytest.approx((1.0, 1.2, 2.0))
    ws = open_workspace(tmp_path / "g", size=16, cache_dir=tmp_path / "c", spacing=(1.0, 1.0, 1.0))
    image, label = ws.arrays(ws.task(TARGET), [ws.task(TARGET).cases[0].case_id])[0]
    assert image.shape == (1, 22, 17, 20) and label.shape == (22, 17, 20)  # larger than the 16^3 patch
    zoo = ZooConfig(network=NET, train=TrainConfig(steps=3, augment=True), max_train=4)
    metrics = run_transfer(ws, TARGET, ["A-T1-tumour", TARGET], zoo, FT)
    assert all(_same_encoder(metrics.landmark_model, s.folder) for s in metrics.steps)
    final = Path(metrics.final_model)
    assert json.loads((final / "config.json").read_text())["preprocess"] == {"size": 16, "spacing": [1.0, 1.0, 1.0]}
    pred = nib.load(str(sorted((Path(metrics.run_dir) / "predictions").glob("*.nii.gz"))[0]))
    assert pred.shape == shape
    # predict reads the model's spacing: same labels as the run's own prediction of that case
    case_id = pred.get_filename().split("/")[-1].removesuffix(".nii.gz")
    image_file = les / "imagesTr" / f"{case_id}_0000.nii.gz"
    with pytest.raises(SystemExit) as info:
        main(["predict", "--model", metrics.run_dir, "--input", str(image_file), "--out", str(tmp_path / "pred")])
        raise SystemExit(0)
    assert info.value.code in (0, None), capsys.readouterr().err
    again = nib.load(str(tmp_path / "pred" / image_file.name))
    np.testing.assert_array_equal(np.asarray(again.dataobj), np.asarray(pred.dataobj))


def test_bad_spacing_option_is_one_line_exit_2(workspace, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["zoo", "train", "--graph", str(workspace.root), "--spacing", "1,2"])
    assert info.value.code == 2 and "--spacing" in capsys.readouterr().err


def test_transfer_refuses_another_seed_than_the_graph_drew_the_target_with(workspace, capsys) -> None:
    """Another seed would train and test on other cases than the graph's affinity used."""
    try:
        main(
            [
                "transfer",
                "--graph",
                str(workspace.root),
                "--target",
                TARGET,
                "--path",
                f"A-T1-tumour,{TARGET}",
                "--seed",
                "1",
                "--steps",
                "1",
                "--zoo-steps",
                "1",
            ]
        )
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 2 and "seed 0" in err and len(err.strip().splitlines()) == 1, err


def test_without_frozen_encoder_the_whole_network_is_fine_tuned_under_ewc_on_every_parameter(workspace) -> None:
    from dataclasses import replace

    frozen = run_transfer(workspace, TARGET, ["A-T1-tumour", TARGET], ZOO, FT)
    whole = run_transfer(workspace, TARGET, ["A-T1-tumour", TARGET], ZOO, replace(FT, freeze_encoder=False))
    assert frozen.steps[0].encoder_unchanged and not whole.steps[0].encoder_unchanged
    assert _same_encoder(frozen.landmark_model, frozen.steps[0].folder)
    assert not _same_encoder(whole.landmark_model, whole.steps[0].folder)  # the check can fail
    assert frozen.steps[0].folder != whole.steps[0].folder  # another recipe, another step key
    assert (
        "freeze_encoder" not in FT.to_dict() and replace(FT, freeze_encoder=False).to_dict()["freeze_encoder"] is False
    )
    landmark = Path(json.loads((Path(whole.run_dir) / "metrics.json").read_text())["landmark_model"])
    import torch

    fishers = [torch.load(f, weights_only=True) for f in (landmark / "fisher").glob("*.pth")]
    sizes = sorted(len(f) for f in fishers)  # decoder-only Fisher (frozen) and every parameter (whole network)
    from seqtransfer.training.network import build_network

    n_params = len(dict(build_network(ZOO.network).named_parameters()))
    assert len(sizes) == 2 and sizes[1] == n_params and sizes[0] < n_params


def test_a_workspace_opens_on_moved_copies_of_its_datasets(workspace, tmp_path: Path) -> None:
    """A Ray worker's copy of the datasets lives elsewhere than the graph's paths say: given the
    verified copies, the workspace reads those (matched by folder name); one missing is refused."""
    import shutil

    moved = []
    for task_root in sorted({t.dataset.root for t in workspace.tasks.values()}):
        copy = tmp_path / "copy" / task_root.name
        shutil.copytree(task_root, copy)
        moved.append(parse_dataset(copy)[0])
    ws = open_workspace(tmp_path / "g", size=16, cache_dir=tmp_path / "c", datasets=moved)
    case = ws.task(TARGET).cases[0]
    assert Path(case.label).is_relative_to(tmp_path / "copy")
    assert ws.cache.key(case) == workspace.cache.key(workspace.task(TARGET).cases[0])  # the same content
    with pytest.raises(StoreError, match="not given"):
        open_workspace(tmp_path / "g", size=16, cache_dir=tmp_path / "c", datasets=moved[:1])
    twice = [*moved, parse_dataset(shutil.copytree(moved[0].root, tmp_path / "again" / moved[0].root.name))[0]]
    with pytest.raises(StoreError, match="several"):
        open_workspace(tmp_path / "g", size=16, cache_dir=tmp_path / "c", datasets=twice)
    # the graph's own datasets given through a link of another name: matched by their folder
    links = []
    for i, task_root in enumerate(sorted({t.dataset.root for t in workspace.tasks.values()})):
        (tmp_path / f"link{i}").symlink_to(task_root.resolve(), target_is_directory=True)
        links.append(parse_dataset(tmp_path / f"link{i}")[0])
    assert open_workspace(tmp_path / "g", size=16, cache_dir=tmp_path / "c", datasets=links).tasks.keys() == (
        workspace.tasks.keys()
    )


def test_predict_finds_a_transfer_s_model_in_a_moved_run_folder(tmp_path: Path) -> None:
    """metrics.json names the final model by the path it had where it was written (another
    machine's copy, a run folder since moved): the model is found by the end of that path."""
    from seqtransfer.pipeline.predict import resolve_model_folder

    model = tmp_path / "now" / "run" / "models" / "finetune" / "0123abcd"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    transfer_dir = tmp_path / "now" / "run" / "models" / "transfers" / "T" / "cafe"
    transfer_dir.mkdir(parents=True)
    recorded = "/elsewhere/scratch/node-12/run/models/finetune/0123abcd"
    (transfer_dir / "metrics.json").write_text(json.dumps({"final_model": recorded}))
    assert resolve_model_folder(transfer_dir) == model.resolve()
    (transfer_dir / "metrics.json").write_text(json.dumps({"final_model": "/elsewhere/models/finetune/gone"}))
    with pytest.raises(ConfigError, match="no config.json"):
        resolve_model_folder(transfer_dir)
