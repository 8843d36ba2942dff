"""``seqtransfer zoo import nnunet`` on a reference model made by nnU-Net itself (no nnunetv2 needed).

``tests/files/nnunet/`` holds a tiny results folder written by nnU-Net v2's own trainer and
evaluation code (``make_reference.py``): a random-weight ``PlainConvUNet`` (features 4, 8, 16,
a ``[1, 3, 3]`` kernel and a ``[1, 2, 2]`` stride), its checkpoint, its fold's
``summary.json``, and nnU-Net's logits on a fixed input in nnU-Net's axis order. The imported
model must give those logits on the same input in nibabel's axis order; O must be the
summary's Dice; a second import writes nothing; what cannot be mapped is one line.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from seqtransfer.core.errors import ConfigError

FILES = Path(__file__).resolve().parents[1] / "files" / "nnunet"
RESULTS = FILES / "results"
DATASET = "Dataset990_Tiny"
MODEL = RESULTS / DATASET / "nnUNetTrainer__nnUNetPlans__3d_fullres"
SHAPE = (16, 16, 16)
SITES = {f"case_{i:03d}": ("A" if i < 4 else "B" if i < 6 else "C") for i in range(8)}
TARGET = "Other-MR-blob"
SOURCES = ("A-MR-blob", "B-MR-blob", "C-MR-blob")
#: the plans' 3d_fullres spacing [1.5, 1, 1] (z, y, x) in nibabel's order
SPACING = "1,1,1.5"
ATOL = 1e-4


def reference() -> tuple[np.ndarray, np.ndarray]:
    """nnU-Net's input and logits, in nnU-Net's (SimpleITK: z, y, x) axis order."""
    return np.load(FILES / "reference_input.npy"), np.load(FILES / "reference_output.npy")


def sitk_to_nibabel(array: np.ndarray) -> np.ndarray:
    """``[B, C, z, y, x]`` (SimpleITK's arrays) -> ``[B, C, x, y, z]`` (nibabel's, seqtransfer's)."""
    return np.ascontiguousarray(array.transpose(0, 1, 4, 3, 2))


def run_model(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def summary_dice() -> tuple[dict[str, float], float]:
    """The summary's Dice of label 1 per case (from the prediction file names) and its mean."""
    summary = read_json(MODEL / "fold_0" / "validation" / "summary.json")
    per_case = {
        Path(e["prediction_file"]).name.removesuffix(".nii.gz"): float(e["metrics"]["1"]["Dice"])
        for e in summary["metric_per_case"]
    }
    return per_case, float(summary["mean"]["1"]["Dice"])


# --- the network --------------------------------------------------------------------------


def _imported(plans: dict | None = None, dataset_json: dict | None = None) -> Any:
    from seqtransfer.nnunet.architecture import import_network, load_nnunet_checkpoint

    checkpoint = load_nnunet_checkpoint(MODEL / "fold_0" / "checkpoint_final.pth")
    return import_network(
        checkpoint,
        plans if plans is not None else read_json(MODEL / "plans.json"),
        dataset_json if dataset_json is not None else read_json(MODEL / "dataset.json"),
    )


def test_the_checkpoint_loads_with_weights_only_and_its_biases_are_not_zero() -> None:
    from seqtransfer.nnunet.architecture import load_nnunet_checkpoint

    with pytest.raises(Exception, match="numpy"):  # nnU-Net pickles numpy numbers: plain weights_only fails
        torch.load(MODEL / "fold_0" / "checkpoint_final.pth", weights_only=True)
    checkpoint = load_nnunet_checkpoint(MODEL / "fold_0" / "checkpoint_final.pth")
    assert checkpoint["trainer_name"] == "nnUNetTrainer" and checkpoint["current_epoch"] == 3
    assert isinstance(checkpoint["_best_ema"], np.floating)
    bias = checkpoint["network_weights"]["encoder.stages.1.0.convs.0.conv.bias"]
    assert bias.abs().min() > 0  # the norm must cancel it for the outputs to agree


def test_reference_network_gives_nnunets_outputs_in_nibabels_axes() -> None:
    from seqtransfer.training.network import build_network

    imported = _imported()
    config = imported.config
    # the plans' (z, y, x) values reversed
    assert config.patch_size == (12, 16, 8) and config.spacing == (1.0, 1.0, 1.5)
    assert config.kernel_sizes == ((3, 3, 1), (3, 3, 3), (3, 3, 3))
    assert config.strides == ((1, 1, 1), (2, 2, 1), (2, 2, 2))
    assert config.filters == (4, 8, 16) and config.trans_bias and config.preset == "nnunet"
    assert imported.reader == "SimpleITKIO" and imported.warnings == ()
    model = build_network(config)
    model.load_state_dict(imported.state)
    x, y = reference()
    ours = run_model(model, sitk_to_nibabel(x))
    np.testing.assert_allclose(ours, sitk_to_nibabel(y), atol=ATOL, rtol=0)
    assert np.abs(y).max() > 0.5  # logits of a size that makes the tolerance meaningful


def test_a_conv_bias_before_instance_norm_changes_nothing() -> None:
    generator = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv3d(3, 5, 3, padding=1, bias=True)
    with torch.no_grad():
        conv.bias.copy_(torch.randn(5, generator=generator) * 10)
    norm = torch.nn.InstanceNorm3d(5, affine=True)
    x = torch.randn(2, 3, 6, 7, 5, generator=generator)
    with torch.no_grad():
        with_bias = norm(conv(x))
        without = norm(torch.nn.functional.conv3d(x, conv.weight, None, padding=1))
    torch.testing.assert_close(with_bias, without, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("reader", "transpose"),
    [("SimpleITKIO", [0, 1, 2]), ("NibabelIO", [0, 1, 2]), ("SimpleITKIO", [2, 0, 1]), ("NibabelIO", [1, 2, 0])],
)
def test_axes_follow_the_reader_and_the_plans_transpose(reader: str, transpose: list[int]) -> None:
    """The same weights under other readers and transposes: nnU-Net's input is the reader's array
    transposed by ``transpose_forward``, its output goes back by ``transpose_backward``."""
    from seqtransfer.training.network import build_network

    plans = read_json(MODEL / "plans.json")
    plans.update(image_reader_writer=reader, transpose_forward=transpose)
    imported = _imported(plans)
    model = build_network(imported.config)
    model.load_state_dict(imported.state)
    x_net, y_net = reference()
    backward = [transpose.index(i) for i in range(3)]  # nnU-Net's transpose_backward
    x_reader = x_net.transpose(0, 1, *(2 + a for a in backward))
    y_reader = y_net.transpose(0, 1, *(2 + a for a in backward))
    flip = reader == "SimpleITKIO"
    x_nib = sitk_to_nibabel(x_reader) if flip else x_reader
    y_nib = sitk_to_nibabel(y_reader) if flip else y_reader
    np.testing.assert_allclose(run_model(model, np.ascontiguousarray(x_nib)), y_nib, atol=ATOL, rtol=0)
    assert imported.config.patch_size == x_nib.shape[2:]


def test_legacy_plans_format_reads_as_the_same_plan() -> None:
    """nnU-Net v2 before 2.4 wrote the plain U-Net's settings as flat keys."""
    from seqtransfer.nnunet.architecture import plain_unet_plan

    configuration = read_json(MODEL / "plans.json")["configurations"]["3d_fullres"]
    kwargs = configuration["architecture"]["arch_kwargs"]
    legacy = {
        "UNet_class_name": "PlainConvUNet",
        "UNet_base_num_features": 4,
        "unet_max_num_features": 320,
        "conv_kernel_sizes": kwargs["kernel_sizes"],
        "pool_op_kernel_sizes": kwargs["strides"],
        "n_conv_per_stage_encoder": [2, 2, 2],
        "n_conv_per_stage_decoder": [2, 2],
    }
    assert plain_unet_plan(legacy) == plain_unet_plan(configuration)


# --- the import into a graph --------------------------------------------------------------


@pytest.fixture(scope="module")
def _graph_once(tmp_path_factory: pytest.TempPathFactory, dataset_writer) -> tuple[Path, Path]:
    """A graph of the fixture's dataset (sites A, B, C: three sources) and a 3-case target dataset."""
    import contextlib
    import io

    from seqtransfer.cli import main

    root = tmp_path_factory.mktemp("nnunet_import")
    common = {"channels": ("MR",), "labels": ("blob",), "shape": SHAPE}
    tiny = dataset_writer(root / DATASET, n_cases=8, sites=SITES, seed=1, **common)
    other = dataset_writer(root / "Dataset991_Other", n_cases=3, seed=2, **common)
    graph = root / "graph"
    argv = ["graph", "build", tiny, other, "--out", graph, "--target", TARGET, "--size", 16, "--volumes", 3]
    with (
        pytest.MonkeyPatch.context() as mp,
        contextlib.redirect_stdout(io.StringIO()),
        pytest.raises(SystemExit) as info,
    ):
        mp.setenv("SEQTRANSFER_CACHE", str(root / "cache"))
        main([str(a) for a in [*argv, "--max-pairs", 4]])
        raise SystemExit(0)
    assert int(info.value.code or 0) == 0
    return root, graph


@pytest.fixture
def graph(_graph_once: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the module's graph (tests write into it), the build's cache shared."""
    root, built = _graph_once
    monkeypatch.setenv("SEQTRANSFER_CACHE", str(root / "cache"))
    copy = tmp_path / "graph"
    shutil.copytree(built, copy)
    return copy


def results_copy(tmp_path: Path, dataset: str = DATASET) -> Path:
    """A writable copy of the fixture's results folder (its model under ``dataset``)."""
    root = tmp_path / "results"
    shutil.copytree(MODEL, root / dataset / MODEL.name)
    return root


def test_import_writes_zoo_models_whose_outputs_and_o_are_nnunets(graph: Path, run_cli) -> None:
    from seqtransfer.nnunet.importer import import_nnunet
    from seqtransfer.pipeline.zoo import load_model

    code, stdout, err = run_cli("zoo", "import", "nnunet", RESULTS, "--graph", graph)
    assert code == 0, err
    for source in SOURCES:
        assert source in stdout
    assert DATASET in stdout  # the table folds the model's name to its column's width
    per_case, fold_mean = summary_dice()
    site_cases = {s: [c for c, site in SITES.items() if site == s[0]] for s in SOURCES}
    nodes = {n["id"]: n for n in read_json(graph / "graph.json")["nodes"]}
    x, y = reference()
    for source in SOURCES:
        validated = [per_case[c] for c in site_cases[source] if c in per_case]
        expected = float(np.nanmean(validated)) if validated else fold_mean
        node = nodes[source]
        assert node["dice"] == pytest.approx(expected, abs=1e-12)
        folder = graph / "zoo" / source / node["zoo_key"]
        metrics = read_json(folder / "metrics.json")
        assert metrics["dice"] == pytest.approx(expected, abs=1e-12) and metrics["learned"] is True
        assert sorted(metrics["test_cases"]) == sorted(c for c in site_cases[source] if c in per_case)
        assert metrics["train_cases"] == [c for c in site_cases[source] if c not in per_case]
        assert node["n_train"] == len(metrics["train_cases"]) and node["o_cases"] == len(metrics["test_cases"])
        config = read_json(folder / "config.json")
        record = config["imported_from"]
        import hashlib

        sha = hashlib.sha256((MODEL / "fold_0" / "checkpoint_final.pth").read_bytes()).hexdigest()
        assert record["checkpoint_sha256"] == sha and record["fold"] == "0" and record["trainer"] == "nnUNetTrainer"
        assert config["network"]["preset"] == "nnunet" and config["preprocess"]["spacing"] == [1.0, 1.0, 1.5]
        model, network = load_model(folder, "cpu")
        np.testing.assert_allclose(run_model(model, sitk_to_nibabel(x)), sitk_to_nibabel(y), atol=ATOL, rtol=0)
    # site A: two validated cases with a Dice (the third empty: NaN); B: one; C: none (the fold's mean)
    assert nodes["A-MR-blob"]["dice"] == pytest.approx((per_case["case_001"] + per_case["case_002"]) / 2)
    assert math.isnan(per_case["case_003"])
    notes = {m.task: m.note for m in import_nnunet(RESULTS, graph).imported}
    assert notes["A-MR-blob"].startswith("O: 3 validated case(s) of the site (1 without a Dice")
    assert notes["B-MR-blob"].startswith("O: 1 validated case(s)")
    assert notes["C-MR-blob"].startswith("O: fold mean: no case of the site was validated")


def test_reimport_is_a_no_op_and_other_results_paths_are_accepted(graph: Path) -> None:
    from seqtransfer.nnunet.importer import import_nnunet

    first = import_nnunet(RESULTS, graph)
    assert [m.created for m in first.imported] == [True, True, True]
    stamps = {p: p.stat().st_mtime_ns for p in [*(graph / "zoo").rglob("*"), graph / "graph.json"] if p.is_file()}
    for where in (RESULTS, RESULTS / DATASET, MODEL):  # the results root, one dataset, one trainer folder
        again = import_nnunet(where, graph)
        assert [m.created for m in again.imported] == [False, False, False]
        assert [m.model.key for m in again.imported] == [m.model.key for m in first.imported]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing rewritten, graph.json included


def test_a_dataset_the_graph_lacks_is_one_line_not_an_error(graph: Path, tmp_path: Path, run_cli) -> None:
    results = results_copy(tmp_path)
    shutil.copytree(MODEL, results / "Dataset992_Elsewhere" / MODEL.name)
    code, stdout, err = run_cli("zoo", "import", "nnunet", results, "--graph", graph)
    assert code == 0, err
    lines = [line for line in stdout.splitlines() if line.startswith("not imported:")]
    assert len(lines) == 1 and "Dataset992_Elsewhere" in lines[0] and "no source task" in lines[0]


def test_fold_trainer_and_plans_choose_among_models(graph: Path, tmp_path: Path) -> None:
    from seqtransfer.nnunet.importer import import_nnunet

    results = results_copy(tmp_path)
    other = results / DATASET / "nnUNetTrainer_5epochs__nnUNetPlans__3d_fullres"
    shutil.copytree(MODEL, other)
    shutil.copytree(other / "fold_0", other / "fold_all")
    lowres = results / DATASET / "nnUNetTrainer__nnUNetPlans__3d_lowres"
    shutil.copytree(MODEL, lowres)
    with pytest.raises(ConfigError, match=r"several models .*--trainer"):
        import_nnunet(results, graph)
    report = import_nnunet(results, graph, trainer="nnUNetTrainer_5epochs")
    assert {m.source for m in report.imported} == {f"{DATASET}/{other.name}/fold_all"}  # all before 0
    assert any("3d_lowres: only 3d_fullres" in str(s) for s in report.not_imported)
    report = import_nnunet(results, graph, trainer="nnUNetTrainer_5epochs", fold="0", plans="nnUNetPlans")
    assert {m.source for m in report.imported} == {f"{DATASET}/{other.name}/fold_0"}
    with pytest.raises(ConfigError, match=r"fold 3 has no checkpoint_final.pth \(trained folds: all, 0\)"):
        import_nnunet(results, graph, trainer="nnUNetTrainer_5epochs", fold="3")
    with pytest.raises(ConfigError, match="no 3d_fullres model matches --trainer Nope --plans nnUNetPlans"):
        import_nnunet(results, graph, trainer="Nope", plans="nnUNetPlans")


def test_fold_all_trains_and_validates_on_every_case(graph: Path, tmp_path: Path) -> None:
    from seqtransfer.nnunet.importer import import_nnunet

    results = results_copy(tmp_path)
    trainer = results / DATASET / MODEL.name
    (trainer / "fold_0").rename(trainer / "fold_all")
    report = import_nnunet(results, graph)
    by_task = {m.task: m for m in report.imported}
    site_a = [c for c, s in SITES.items() if s == "A"]
    assert list(by_task["A-MR-blob"].model.train_cases) == site_a  # fold all trains on every case
    assert "fold all validates on its training cases" in by_task["A-MR-blob"].note


def test_an_ignore_label_is_no_class_and_a_recorded_model_is_replaced_by_name(graph: Path, tmp_path: Path) -> None:
    from seqtransfer.nnunet.importer import import_nnunet

    results = results_copy(tmp_path)
    dataset_file = results / DATASET / MODEL.name / "dataset.json"
    dataset_json = read_json(dataset_file)
    dataset_json["labels"]["ignore"] = 2  # nnU-Net's ignore label: not one of the network's classes
    dataset_file.write_text(json.dumps(dataset_json))
    data = read_json(graph / "graph.json")
    for node in data["nodes"]:
        if node["id"] == "A-MR-blob":
            node["zoo_key"] = "0123456789abcdef"  # as `zoo train` would have left it
    (graph / "graph.json").write_text(json.dumps(data))
    notes = {m.task: m.note for m in import_nnunet(results, graph).imported}
    assert set(notes) == set(SOURCES)
    assert notes["A-MR-blob"].endswith("replaces the recorded zoo model 0123456789abcdef")
    assert "replaces" not in notes["B-MR-blob"]


def _edit_checkpoint(path: Path, change) -> None:
    from seqtransfer.nnunet.architecture import load_nnunet_checkpoint

    checkpoint = load_nnunet_checkpoint(path)
    change(checkpoint["network_weights"])
    torch.save(checkpoint, path)


def _bad(kind: str, trainer: Path) -> str:
    """Break the copied trainer folder as ``kind`` says; the reason the import must give."""
    plans_file, dataset_file = trainer / "plans.json", trainer / "dataset.json"
    checkpoint = trainer / "fold_0" / "checkpoint_final.pth"
    plans, dataset_json = read_json(plans_file), read_json(dataset_file)
    arch = plans["configurations"]["3d_fullres"]["architecture"]
    if kind == "resenc":
        arch["network_class_name"] = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
        arch["arch_kwargs"]["n_blocks_per_stage"] = arch["arch_kwargs"].pop("n_conv_per_stage")
        reason = "architecture ResidualEncoderUNet: only nnU-Net's PlainConvUNet maps onto DynUNet"
    elif kind == "4 channels":
        dataset_json["channel_names"] = {str(i): f"MR{i}" for i in range(4)}
        name = "encoder.stages.0.0.convs.0.conv.weight"
        _edit_checkpoint(checkpoint, lambda w: w.update({name: w[name].repeat(1, 4, 1, 1, 1)}))
        reason = "4 input channels: the graph's tasks are single-channel"
    elif kind == "3 classes":
        dataset_json["labels"] = {"background": 0, "blob": 1, "rim": 2}

        def three(w: dict) -> None:
            for key in [k for k in w if k.startswith("decoder.seg_layers.")]:
                w[key] = torch.cat([w[key], w[key][:1]])

        _edit_checkpoint(checkpoint, three)
        reason = "3 output classes: the graph's tasks are binary"
    elif kind == "reader":
        plans["image_reader_writer"] = "NibabelIOWithReorient"
        reason = "image reader NibabelIOWithReorient: only SimpleITKIO"
    elif kind == "three convs":
        arch["arch_kwargs"]["n_conv_per_stage"] = [3, 3, 3]
        reason = "DynUNet has 2 convolutions per stage"
    elif kind == "corrupt checkpoint":
        checkpoint.write_bytes(checkpoint.read_bytes()[:5000])
        reason = "corrupt or unreadable nnU-Net checkpoint"
    elif kind == "foreign object":
        from seqtransfer.nnunet.architecture import load_nnunet_checkpoint

        saved = load_nnunet_checkpoint(checkpoint)
        saved["init_args"]["output_folder"] = Path("/results")  # an object weights_only does not build
        torch.save(saved, checkpoint)
        reason = "not loaded without running code from it (pathlib.PosixPath)"
    elif kind == "missing summary":
        (trainer / "fold_0" / "validation" / "summary.json").unlink()
        reason = "summary.json: not found (O, the model's validation Dice, is read from it"
    else:
        raise AssertionError(kind)
    plans_file.write_text(json.dumps(plans))
    dataset_file.write_text(json.dumps(dataset_json))
    return reason


BAD = [
    "resenc",
    "4 channels",
    "3 classes",
    "reader",
    "three convs",
    "corrupt checkpoint",
    "foreign object",
    "missing summary",
]


@pytest.mark.parametrize("kind", BAD)
def test_a_model_that_cannot_be_mapped_is_one_line_and_nothing_is_written(
    kind: str, graph: Path, tmp_path: Path, run_cli
) -> None:
    results = results_copy(tmp_path)
    reason = _bad(kind, results / DATASET / MODEL.name)
    before = (graph / "graph.json").read_bytes()
    code, stdout, err = run_cli("zoo", "import", "nnunet", results, "--graph", graph)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert reason in err and "nothing could be imported" in err
    assert (graph / "graph.json").read_bytes() == before and not (graph / "zoo").exists()


def test_ct_normalisation_imports_with_a_warning(graph: Path, tmp_path: Path, caplog) -> None:
    from seqtransfer.nnunet.importer import import_nnunet

    results = results_copy(tmp_path)
    plans_file = results / DATASET / MODEL.name / "plans.json"
    plans = read_json(plans_file)
    plans["configurations"]["3d_fullres"]["normalization_schemes"] = ["CTNormalization"]
    plans_file.write_text(json.dumps(plans))
    with caplog.at_level("WARNING", logger="seqtransfer.nnunet.importer"):
        report = import_nnunet(results, graph)
    assert len(report.imported) == 3 and all("normalisation CTNormalization" in m.note for m in report.imported)
    assert any("zero-shot outputs will differ" in r.getMessage() for r in caplog.records)


def test_bad_arguments_are_one_line(graph: Path, tmp_path: Path, run_cli) -> None:
    code, _, err = run_cli("zoo", "import", "nnunet", RESULTS, "--graph", graph, "--fold", "last")
    assert code == 2 and "--fold must be 'all' or a fold number" in err
    code, _, err = run_cli("zoo", "import", "nnunet", tmp_path / "none", "--graph", graph)
    assert code == 2 and "not a folder" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli("zoo", "import", "nnunet", empty, "--graph", graph)
    assert code == 2 and "no nnU-Net results" in err
    code, _, err = run_cli("zoo", "import", "nnunet", RESULTS, "--graph", tmp_path / "nograph")
    assert code == 2 and "graph.json: not found" in err


def test_select_with_leep_and_transfer_start_from_the_imported_landmark(graph: Path, run_cli) -> None:
    code, _, err = run_cli("zoo", "import", "nnunet", RESULTS, "--graph", graph)
    assert code == 0, err
    grid = ["--preset", "nnunet", "--spacing", SPACING]
    code, stdout, err = run_cli("select", "--graph", graph, "--target", TARGET, "--score", "leep", *grid)
    assert code == 0, err
    selection = read_json(graph / "selections" / f"{TARGET}.json")
    assert selection["landmark"] in SOURCES and "score leep" in stdout
    code, stdout, err = run_cli("transfer", "--graph", graph, "--target", TARGET, "--steps", "1", *grid)
    assert code == 0, err
    key = read_json(graph / "graph.json")["nodes"]
    key = next(n["zoo_key"] for n in key if n["id"] == selection["landmark"])
    assert f"landmark model: {selection['landmark']}'s zoo model {key} (recorded in the graph)" in stdout
    assert "recorded zoo model" not in err  # trained at the plans' spacing: no grid warning
    run = next((graph / "transfers" / TARGET).iterdir())
    metrics = read_json(run / "metrics.json")
    assert metrics["landmark_model"] == str(graph / "zoo" / selection["landmark"] / key)
    assert metrics["zoo"]["network"]["strides"] == [[1, 1, 1], [2, 2, 1], [2, 2, 2]]
    # predict with the imported model: on its plans' spacing, the label in the input's grid
    nodes = {n["id"]: n for n in read_json(graph / "graph.json")["nodes"]}
    image = Path(nodes[TARGET]["dataset"]) / "imagesTr" / "case_000_0000.nii.gz"
    landmark = graph / "zoo" / selection["landmark"] / key
    code, _, err = run_cli("predict", "--model", landmark, "--input", image, "--out", graph.parent / "predicted")
    assert code == 0, err
    import nibabel as nib

    predicted = nib.load(graph.parent / "predicted" / image.name)
    assert predicted.shape == nib.load(image).shape
    # on another grid the landmark still runs, with a warning naming the spacing to use
    code, _, err = run_cli("transfer", "--graph", graph, "--target", TARGET, "--steps", "1", "--preset", "nnunet")
    assert code == 0, err
    assert "pass --spacing 1,1,1.5" in err


# --- against nnU-Net itself (marker nnunet: `make check-nnunet`) ----------------------------


def reference_maker() -> Any:
    """tests/files/nnunet/make_reference.py as a module (its plans and trainer helpers)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_make_reference", FILES / "make_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LIVE_PLANS = {
    # the fixture's network
    "fixture": ([4, 8, 16], [[1, 3, 3], [3, 3, 3], [3, 3, 3]], [[1, 1, 1], [1, 2, 2], [2, 2, 2]], [8, 16, 12], {}),
    # four stages, two of them in-plane only, no biases
    "anisotropic": (
        [4, 8, 8, 16],
        [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]],
        [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2]],
        [4, 16, 16],
        {"conv_bias": False},
    ),
    # an odd kernel of 5 and a one-axis stride
    "kernel5": ([4, 8, 16], [[3, 3, 5], [3, 3, 3], [3, 3, 3]], [[1, 1, 1], [2, 2, 1], [2, 2, 2]], [8, 8, 12], {}),
}


@pytest.mark.nnunet
@pytest.mark.parametrize("name", sorted(LIVE_PLANS))
@pytest.mark.parametrize(("reader", "transpose"), [("SimpleITKIO", [0, 1, 2]), ("NibabelIO", [2, 0, 1])])
def test_networks_nnunet_builds_from_plans_map_exactly(name: str, reader: str, transpose: list[int]) -> None:
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    from seqtransfer.nnunet.architecture import import_network
    from seqtransfer.training.network import build_network

    maker = reference_maker()
    features, kernels, strides, patch, changes = LIVE_PLANS[name]
    arch = maker.architecture(features, kernels, strides, **changes)
    plans = maker.plans_dict(DATASET, arch, patch, [2.0, 1.0, 0.8], reader=reader, transpose=transpose)
    net = get_network_from_plans(
        arch["network_class_name"], arch["arch_kwargs"], arch["_kw_requires_import"], 1, 2, deep_supervision=False
    )
    maker.randomize(net, seed=7)
    net.eval()
    imported = import_network({"network_weights": net.state_dict()}, plans, maker.DATASET_JSON)
    ours = build_network(imported.config)
    ours.load_state_dict(imported.state)
    x_net = torch.randn(2, 1, *patch, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y_net = net(x_net).numpy()
    backward = [transpose.index(i) for i in range(3)]
    to_nib = (lambda a: sitk_to_nibabel(a)) if reader == "SimpleITKIO" else (lambda a: a)
    x_ours = np.ascontiguousarray(to_nib(x_net.numpy().transpose(0, 1, *(2 + a for a in backward))))
    y_ours = to_nib(y_net.transpose(0, 1, *(2 + a for a in backward)))
    np.testing.assert_allclose(run_model(ours, x_ours), y_ours, atol=ATOL, rtol=0)


@pytest.mark.nnunet
def test_a_model_saved_by_nnunets_trainer_imports_and_predicts_as_nnunets_predictor(
    graph: Path, tmp_path: Path
) -> None:
    """nnU-Net's trainer saves the checkpoint, nnU-Net's predictor loads it back; the imported
    zoo model's logits are the predictor's network's."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    from seqtransfer.nnunet.importer import import_nnunet
    from seqtransfer.pipeline.zoo import load_model

    maker = reference_maker()
    features, kernels, strides, patch, changes = LIVE_PLANS["anisotropic"]
    arch = maker.architecture(features, kernels, strides, **changes)
    plans = maker.plans_dict(DATASET, arch, patch, [3.0, 0.8, 0.8])
    folder = tmp_path / "results" / DATASET / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    folder.mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(maker.DATASET_JSON))
    maker.train_and_save(folder, plans, maker.DATASET_JSON, fold="all", seed=11)
    maker.write_summary(folder / "fold_all", tuple(SITES), empty=("case_007",))
    report = import_nnunet(tmp_path / "results", graph)
    assert {m.task for m in report.imported} == set(SOURCES)
    predictor = nnUNetPredictor(device=torch.device("cpu"), allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(folder), use_folds=("all",))
    network = predictor.network
    network.eval()
    x = torch.randn(1, 1, *patch, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = sitk_to_nibabel(network(x).numpy())
    model, config = load_model(report.imported[0].model.folder, "cpu")
    assert config.spacing == (0.8, 0.8, 3.0) and config.kernel_sizes[0] == (3, 3, 1)
    np.testing.assert_allclose(run_model(model, sitk_to_nibabel(x.numpy())), expected, atol=ATOL, rtol=0)
