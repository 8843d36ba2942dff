"""Write the reference nnU-Net model the import tests read (run once, with nnU-Net installed).

    PYTHONPATH=src .venv-nnunet/bin/python tests/files/nnunet/make_reference.py

Everything below is made by nnU-Net v2's own code, so the fixture is what a user's results
folder holds:

* the network: a ``PlainConvUNet`` built by ``nnunetv2.utilities.get_network_from_plans``
  through ``nnUNetTrainer.initialize`` from a plans dict with features 4, 8, 16, a ``[1, 3, 3]``
  kernel at the top level and a ``[1, 2, 2]`` stride below it (so a wrong axis order breaks
  the shapes or the outputs), then every parameter drawn at random (nnU-Net's initialisation
  sets biases to 0 and norms to 1, which would hide a wrong bias or norm mapping);
* ``fold_0/checkpoint_final.pth``: written by ``nnUNetTrainer.save_checkpoint`` (numpy numbers
  in its log, as a real training leaves them);
* ``fold_0/validation/summary.json``: written by nnU-Net's ``compute_metrics_on_folder`` from
  small label files of cases ``case_001`` .. ``case_003`` (the last empty in reference and
  prediction: Dice NaN);
* ``reference_input.npy`` / ``reference_output.npy``: a fixed input ``[1, 1, 8, 16, 12]`` in
  nnU-Net's axis order (``SimpleITKIO``: z, y, x) and the network's logits on it (deep
  supervision off, eval mode).

The live tests (``tests/nnunet``, marker ``nnunet``) use the same functions on other plans.
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
DATASET = "Dataset990_Tiny"
TRAINER_FOLDER = "nnUNetTrainer__nnUNetPlans__3d_fullres"
DATASET_JSON: dict[str, Any] = {
    "channel_names": {"0": "MR"},
    "labels": {"background": 0, "blob": 1},
    "numTraining": 8,
    "file_ending": ".nii.gz",
}
#: the validation cases of fold 0: three of site A (case_000 .. case_003 in the tests' dataset),
#: one of site B (case_004, case_005), none of site C (case_006, case_007)
VALIDATION_CASES = ("case_001", "case_002", "case_003", "case_004")
#: validated with an empty reference and an empty prediction: Dice NaN
EMPTY_CASES = ("case_003",)
INPUT_SHAPE = (1, 1, 8, 16, 12)


def architecture(
    features: list[int], kernels: list[list[int]], strides: list[list[int]], **changes: Any
) -> dict[str, Any]:
    """A ``3d_fullres`` ``architecture`` entry of nnU-Net 2.6's plans (a PlainConvUNet)."""
    n = len(features)
    arch_kwargs: dict[str, Any] = {
        "n_stages": n,
        "features_per_stage": features,
        "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": kernels,
        "strides": strides,
        "n_conv_per_stage": [2] * n,
        "n_conv_per_stage_decoder": [2] * (n - 1),
        "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }
    arch_kwargs.update(changes)
    return {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": arch_kwargs,
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def plans_dict(
    dataset: str,
    arch: dict[str, Any],
    patch_size: list[int],
    spacing: list[float],
    reader: str = "SimpleITKIO",
    transpose: list[int] | None = None,
) -> dict[str, Any]:
    """nnU-Net 2.6's plans with one ``3d_fullres`` configuration."""
    transpose = transpose or [0, 1, 2]
    return {
        "dataset_name": dataset,
        "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": spacing,
        "original_median_shape_after_transp": patch_size,
        "image_reader_writer": reader,
        "transpose_forward": transpose,
        "transpose_backward": [transpose.index(i) for i in range(3)],
        "configurations": {
            "3d_fullres": {
                "data_identifier": "nnUNetPlans_3d_fullres",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": 2,
                "patch_size": patch_size,
                "median_image_size_in_voxels": [float(p) for p in patch_size],
                "spacing": spacing,
                "normalization_schemes": ["ZScoreNormalization"],
                "use_mask_for_norm": [False],
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
                "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities_kwargs": {
                    "is_seg": False,
                    "order": 1,
                    "order_z": 0,
                    "force_separate_z": None,
                },
                "architecture": arch,
                "batch_dice": False,
            }
        },
        "experiment_planner_used": "ExperimentPlanner",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            "0": {
                "max": 200.0,
                "mean": 150.0,
                "median": 150.0,
                "min": 100.0,
                "percentile_00_5": 110.0,
                "percentile_99_5": 190.0,
                "std": 10.0,
            }
        },
    }


@contextlib.contextmanager
def nnunet_folders(work: Path) -> Iterator[None]:
    """nnU-Net's results and preprocessed folders under ``work`` for one trainer's lifetime
    (nnU-Net reads them from the environment when it is imported; here they are set on the
    trainer's module and restored afterwards, whatever the environment said)."""
    import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as module

    saved = module.nnUNet_results, module.nnUNet_preprocessed
    module.nnUNet_results, module.nnUNet_preprocessed = str(work / "results"), str(work / "preprocessed")
    try:
        yield
    finally:
        module.nnUNet_results, module.nnUNet_preprocessed = saved


def randomize(network: torch.nn.Module, seed: int) -> None:
    """Every parameter drawn at random: conv weights N(0, 1/fan_in), biases N(0, 0.5), norm
    weights around 1 (nnU-Net's own initialisation leaves biases 0 and norms 1)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in network.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if p.ndim > 1:
                fan_in = p.shape[1] * int(np.prod(p.shape[2:]))
                p.copy_(noise / np.sqrt(fan_in))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * noise)
            else:  # every bias: of convolutions, norms, transposed convolutions, heads
                p.copy_(0.5 * noise)


def train_and_save(
    out: Path, plans: dict[str, Any], dataset_json: dict[str, Any], fold: int | str, seed: int = 0, epochs: int = 3
) -> torch.nn.Module:
    """Build nnU-Net's trainer for ``plans``, randomise its network and save its checkpoint as
    ``out/fold_F/checkpoint_final.pth`` with ``nnUNetTrainer.save_checkpoint``; the network
    (deep supervision off, eval mode) is returned."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "preprocessed" / plans["dataset_name"] / "nnUNetPlans_3d_fullres"
        data.mkdir(parents=True)
        (data / "placeholder.npz").touch()  # initialize() infers the dataset class from the file endings
        with nnunet_folders(work), contextlib.redirect_stdout(sys.stderr):
            trainer = nnUNetTrainer(copy.deepcopy(plans), "3d_fullres", fold, dataset_json, device=torch.device("cpu"))
            trainer.initialize()
            trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
            randomize(trainer.network, seed)
            for epoch in range(epochs):
                trainer.logger.log("mean_fg_dice", np.float32(0.2 + 0.1 * epoch), epoch)
                trainer.logger.log("dice_per_class_or_region", [np.float32(0.2 + 0.1 * epoch)], epoch)
                trainer.logger.log("train_losses", np.float32(-0.1 * epoch), epoch)
                trainer.logger.log("val_losses", np.float32(-0.1 * epoch), epoch)
                trainer.logger.log("lrs", 0.01, epoch)
                trainer.logger.log("epoch_start_timestamps", 1.0e9 + epoch, epoch)
                trainer.logger.log("epoch_end_timestamps", 1.0e9 + epoch + 0.5, epoch)
            trainer.current_epoch = epochs - 1  # save_checkpoint records current_epoch + 1
            trainer._best_ema = np.float32(0.3)
            folder = out / f"fold_{fold}"
            folder.mkdir(parents=True, exist_ok=True)
            trainer.save_checkpoint(str(folder / "checkpoint_final.pth"))
            trainer.set_deep_supervision_enabled(False)
    network = trainer.network
    network.eval()
    return network


def write_summary(fold_dir: Path, cases: tuple[str, ...], empty: tuple[str, ...] = (), seed: int = 0) -> None:
    """``fold_dir/validation/summary.json`` by nnU-Net's ``compute_metrics_on_folder`` from small
    label files: per case a blob and a copy shifted by a different amount (so every case has
    its own Dice), nothing in ``empty``."""
    import SimpleITK as sitk
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        ref_dir, pred_dir = Path(tmp) / "gt_segmentations", Path(tmp) / "validation"
        ref_dir.mkdir()
        pred_dir.mkdir()
        for i, case in enumerate(cases):
            ref = np.zeros((8, 16, 12), np.uint8)
            pred = np.zeros_like(ref)
            if case not in empty:
                z, y, x = (int(v) for v in rng.integers(1, 4, size=3))
                ref[z : z + 3, y : y + 4 + i, x : x + 5] = 1
                pred[z : z + 3, y + 1 + i % 3 : y + 5 + i + i % 3, x : x + 5] = 1
            for folder, array in ((ref_dir, ref), (pred_dir, pred)):
                image = sitk.GetImageFromArray(array)
                image.SetSpacing((1.0, 1.0, 1.5))
                sitk.WriteImage(image, str(folder / f"{case}.nii.gz"))
        output = fold_dir / "validation" / "summary.json"
        output.parent.mkdir(parents=True, exist_ok=True)
        compute_metrics_on_folder(
            str(ref_dir), str(pred_dir), str(output), SimpleITKIO(), ".nii.gz", [1], num_processes=1
        )


def main() -> None:
    arch = architecture([4, 8, 16], [[1, 3, 3], [3, 3, 3], [3, 3, 3]], [[1, 1, 1], [1, 2, 2], [2, 2, 2]])
    plans = plans_dict(DATASET, arch, patch_size=[8, 16, 12], spacing=[1.5, 1.0, 1.0])
    out = HERE / "results" / DATASET / TRAINER_FOLDER
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / "plans.json").write_text(json.dumps(plans, indent=4) + "\n")
    (out / "dataset.json").write_text(json.dumps(DATASET_JSON, indent=4) + "\n")
    network = train_and_save(out, plans, DATASET_JSON, fold=0, seed=0)
    write_summary(out / "fold_0", VALIDATION_CASES, EMPTY_CASES)
    x = torch.randn(INPUT_SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = network(x)
    np.save(HERE / "reference_input.npy", x.numpy().astype(np.float32))
    np.save(HERE / "reference_output.npy", y.numpy().astype(np.float32))
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    print(f"written {out} and the reference arrays; the fixture folder holds {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
