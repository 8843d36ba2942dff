"""Full-size volumes end to end: spacing preprocessing, patch training, sliding-window inference.

Writes a synthetic nnU-Net raw dataset of BraTS-sized cases (default 240 x 240 x 155 at 1 mm:
an ellipsoidal head with smooth intensity variation and noise, one spherical "tumour" of
random radius and place per case, brighter), then times what the tool does with it:

1. preprocessing at a target spacing (``PreprocessCache`` with ``spacing=(1, 1, 1)``);
2. training the preset's network on patches of those volumes (``train``: foreground
   oversampling, augmentation, bf16 autocast on CUDA), ms per step and peak memory;
3. sliding-window inference on held-out cases, the inverse preprocessing back to the original
   grid and Dice there (``score``-like, without a graph).

Usage::

    python benchmarks/full_size.py --preset nnunet --steps 150 --json out.json        # GPU
    python benchmarks/full_size.py --preset cpu --shape 80,80,60 --cases 4 --steps 3   # smoke test
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from seqtransfer.data.dataset import parse_dataset  # noqa: E402
from seqtransfer.data.io import read_image, write_image  # noqa: E402
from seqtransfer.data.preprocess import PreprocessCache, PreprocessConfig, restore_label  # noqa: E402
from seqtransfer.evaluation.dice import dice_score  # noqa: E402
from seqtransfer.evaluation.inference import predict_volume  # noqa: E402
from seqtransfer.training.config import NetworkConfig, TrainConfig
from seqtransfer.training.loop import train  # noqa: E402
from seqtransfer.training.network import build_network, select_device  # noqa: E402


def write_cases(root: Path, n: int, shape: tuple[int, int, int], seed: int) -> Path:
    """A learnable full-size dataset: bright sphere inside an ellipsoidal head."""
    rng = np.random.default_rng(seed)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    centre = np.array(shape, dtype=np.float32)[:, None, None, None] / 2
    radii = np.array(shape, dtype=np.float32)[:, None, None, None] * 0.38
    head = (((grid - centre) / radii) ** 2).sum(0) <= 1.0
    coarse = rng.normal(size=(n, 6, 6, 5)).astype(np.float32)
    for i in range(n):
        inside = np.argwhere(head)
        r = float(rng.uniform(12, 28))
        c = inside[int(rng.integers(len(inside)))].astype(np.float32)
        c = np.clip(c, np.array(shape) * 0.3, np.array(shape) * 0.7)
        label = ((((grid - c[:, None, None, None]) ** 2).sum(0) <= r * r) & head).astype(np.uint8)
        smooth = torch.nn.functional.interpolate(torch.from_numpy(coarse[i])[None, None], size=shape, mode="trilinear")[
            0, 0
        ].numpy()
        image = np.where(head, 100.0 + 10.0 * smooth + rng.normal(0, 8, size=shape).astype(np.float32), 0.0)
        image = (image + 30.0 * label).astype(np.float32)
        write_image(root / "imagesTr" / f"case_{i:03d}_0000.nii.gz", image, np.eye(4))
        write_image(root / "labelsTr" / f"case_{i:03d}.nii.gz", label, np.eye(4))
    meta = {
        "channel_names": {"0": "T1"},
        "labels": {"background": 0, "tumour": 1},
        "numTraining": n,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="nnunet")
    parser.add_argument("--shape", default="240,240,155")
    parser.add_argument("--cases", type=int, default=12)
    parser.add_argument("--test", type=int, default=4)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--work", type=Path, default=Path("/tmp/full_size"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    res: dict[str, object] = {
        "command": " ".join(sys.argv),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    dev = select_device()
    res["device"] = torch.cuda.get_device_name(0) if dev.type == "cuda" else platform.processor() or "cpu"

    t = time.perf_counter()
    root = write_cases(args.work / "Dataset900_FullSize", args.cases, shape, seed=0)  # type: ignore[arg-type]
    res["write_s"] = round(time.perf_counter() - t, 1)
    cases = parse_dataset(root)[0].cases
    cache = PreprocessCache(args.work / "cache", PreprocessConfig(size=32, spacing=(1.0, 1.0, 1.0)))
    t = time.perf_counter()
    loaded = [cache.load(c) for c in cases]
    res["preprocess_s_per_case"] = round((time.perf_counter() - t) / len(cases), 2)
    res["grid_shapes"] = sorted({tuple(int(v) for v in p.label.shape) for p in loaded})

    n_train = len(cases) - args.test
    train_cases = [
        (np.ascontiguousarray(p.image, dtype=np.float32), (np.asarray(p.label) > 0).astype(np.uint8))
        for p in loaded[:n_train]
    ]
    network = NetworkConfig(preset=args.preset)
    model = build_network(network, generator=torch.Generator().manual_seed(0))
    res["network"] = {
        "patch": list(network.patch_size or ()),
        "filters": list(network.filters or ()),
        "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
    }
    stamps: list[float] = []
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    result = train(
        model,
        train_cases,
        TrainConfig(steps=args.steps),
        network.patch_size,
        device=dev,
        progress=lambda _event: stamps.append(time.perf_counter()),
    )  # type: ignore[arg-type]
    res["train_s"] = round(time.perf_counter() - t, 1)
    steady = np.diff(stamps[5:]) * 1000 if len(stamps) > 6 else np.diff([t, *stamps]) * 1000
    res["train_ms_per_step_median"] = round(float(np.median(steady)), 1)
    res["train_ms_per_step_mean"] = round(float(np.mean(steady)), 1)
    res["loss_first_last"] = [round(result.losses[0], 4), round(float(np.mean(result.losses[-10:])), 4)]
    if dev.type == "cuda":
        res["train_peak_gpu_MiB"] = round(torch.cuda.max_memory_allocated() / 2**20)
        torch.cuda.reset_peak_memory_stats()

    dices, seconds = [], []
    for case, pre in zip(cases[n_train:], loaded[n_train:], strict=True):
        t = time.perf_counter()
        grid_pred = predict_volume(model, np.asarray(pre.image, dtype=np.float32), network.patch_size, dev)  # type: ignore[arg-type]
        original_shape, box = cache.geometry(case)
        pred = restore_label(grid_pred, original_shape, box)
        seconds.append(time.perf_counter() - t)
        reference = read_image(case.label)[0]
        assert pred.shape == reference.shape
        dices.append(dice_score(pred, reference))
    res["inference_s_per_case"] = round(float(np.mean(seconds)), 2)
    res["held_out_dice"] = [round(float(d), 3) for d in dices]
    if dev.type == "cuda":
        res["inference_peak_gpu_MiB"] = round(torch.cuda.max_memory_allocated() / 2**20)
    res["peak_rss_MiB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    text = json.dumps(res, indent=1)
    print(text)
    if args.json is not None:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
