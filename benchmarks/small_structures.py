"""Held-out Dice of source models against structure size, per network and budget.

    .venv/bin/python benchmarks/small_structures.py --out benchmarks/results/small_structures.json

The embedded benchmark (48^3, 3 tumour sites, 24 cases per site, seed 0: what the demo
generates) gives structures from 0.08 % to 11 % of the volume. For each structure one source
task (site and channel fixed below, never a test set of anything), its zoo split (12 training
cases, 12 held out, as the demo's ``max_train = 12``), and each candidate configuration: train
from the same seeded initialisation, then the mean Dice on the 12 held-out cases on the
training grid (the cube of 32^3 the cpu preset and the demo use). Every configuration runs in
this one process, one thread, one after another, so the times compare.

With ``--deep-grey`` the benchmark also holds the optional ``Dataset505_DeepGreyLike``
(hippocampus, thalamus, caudate, putamen, pallidum, amygdala on T1 and T2; sites harp, ibsr,
oasis), so its tasks (e.g. ``harp-T1-hippocampus``) can be chosen with ``--tasks``::

    .venv/bin/python benchmarks/small_structures.py --deep-grey --work /tmp/ss_dg \
        --tasks harp-T1-hippocampus,harp-T1-thalamus,harp-T1-pallidum --seeds 0,1 \
        --out benchmarks/results/small_structures_deep_grey.json

Each row also gives ``fraction_of_volume``: the structure's mean share of the original
volume (48^3), before the crop to the brain's box and the resampling to 32^3.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from seqtransfer.benchmark import DEEP_GREY_DATASET, BenchmarkConfig, make_benchmark
from seqtransfer.core.threads import single_threaded
from seqtransfer.data.dataset import parse_dataset
from seqtransfer.data.io import read_image
from seqtransfer.data.preprocess import PreprocessCache, PreprocessConfig
from seqtransfer.data.splits import source_split
from seqtransfer.data.tasks import Task, split_tasks
from seqtransfer.evaluation.inference import dice_on_cases
from seqtransfer.training.config import NetworkConfig, TrainConfig
from seqtransfer.training.loop import train
from seqtransfer.training.network import build_network

#: one source task per structure: (task, why this channel)
STRUCTURES = [
    "inst1-T1ce-NCR",
    "utrecht-FLAIR-WMH",
    "inst1-T1ce-ET",
    "inst1-FLAIR-ED",
    "iseg-T2-CSF",
    "iseg-T1-GM",
]

CONFIGS = {
    "demo: 8-64, 40 steps": (
        NetworkConfig(patch_size=(32, 32, 32), filters=(8, 16, 32, 64)),
        TrainConfig(steps=40, augment=False),
    ),
    "8-64, 40 steps, batch Dice": (
        NetworkConfig(patch_size=(32, 32, 32), filters=(8, 16, 32, 64)),
        TrainConfig(steps=40, augment=False, batch_dice=True),
    ),
    "8-64, 120 steps": (
        NetworkConfig(patch_size=(32, 32, 32), filters=(8, 16, 32, 64)),
        TrainConfig(steps=120, augment=False),
    ),
    "8-64, 120 steps, batch Dice": (
        NetworkConfig(patch_size=(32, 32, 32), filters=(8, 16, 32, 64)),
        TrainConfig(steps=120, augment=False, batch_dice=True),
    ),
    "cpu preset 16-128, 40 steps": (NetworkConfig(preset="cpu"), TrainConfig(steps=40, augment=False)),
    "cpu preset 16-128, 120 steps": (NetworkConfig(preset="cpu"), TrainConfig(steps=120, augment=False)),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/small_structures"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/small_structures.json"))
    parser.add_argument("--tasks", default=",".join(STRUCTURES), help="comma-separated source tasks")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds of the initialisation and training")
    parser.add_argument("--deep-grey", action="store_true", help="also generate and use Dataset505_DeepGreyLike")
    args = parser.parse_args()
    bench = args.work / "bench"
    names = ["Dataset501_TumourLike", "Dataset502_TissueLike", "Dataset503_LesionLike"] + (
        [DEEP_GREY_DATASET] if args.deep_grey else []
    )
    if not all((bench / d / "dataset.json").exists() for d in names):
        start = time.perf_counter()
        make_benchmark(bench, BenchmarkConfig(seed=0, size=48, cases=24, tumour_sites=3, deep_grey=args.deep_grey))
        print(f"benchmark generated in {time.perf_counter() - start:.1f} s", flush=True)
    datasets = [parse_dataset(bench / d)[0] for d in names]
    tasks = {t.name: t for t in split_tasks(datasets)}
    cache = PreprocessCache(args.work / "cache", PreprocessConfig(size=32))
    results = {"load_before": os.getloadavg(), "torch_threads": 1, "rows": []}
    seeds = [int(v) for v in args.seeds.split(",")]
    with single_threaded():
        for name in args.tasks.split(","):
            task = tasks[name]
            train_ids, test_ids = source_split(task.split_key, [c.case_id for c in task.cases], seed=0, max_train=12)
            by_id = {c.case_id: c for c in task.cases}

            def arrays(
                ids: tuple[str, ...], by_id: dict = by_id, task: Task = task
            ) -> list[tuple[np.ndarray, np.ndarray]]:
                out = []
                for i in ids:
                    image, label = cache.task_volume(by_id[i], task.channel, task.label_values)
                    out.append(
                        (
                            np.ascontiguousarray(image[None], dtype=np.float32),
                            np.ascontiguousarray(label, dtype=np.uint8),
                        )
                    )
                return out

            train_cases, test_cases = arrays(train_ids), arrays(test_ids)
            fraction = float(np.mean([lbl.mean() for _, lbl in train_cases + test_cases]))
            values = list(task.label_values)
            of_volume = [
                float(np.isin(read_image(c.label, np.uint8)[0], values).mean())
                for c in task.cases
                if c.case_id in train_ids + test_ids
            ]
            fraction_of_volume = float(np.mean(of_volume))
            for seed, (label, (network, config)) in ((s, item) for s in seeds for item in CONFIGS.items()):
                model = build_network(network, generator=torch.Generator().manual_seed(seed))
                start = time.perf_counter()
                train(model, train_cases, replace(config, seed=seed), network.patch_size, device="cpu")
                seconds = time.perf_counter() - start
                dice = dice_on_cases(model, test_cases, network.patch_size, "cpu")
                finite = [d for d in dice if np.isfinite(d)]
                row = {
                    "task": name,
                    "fraction_of_grid": fraction,
                    "fraction_of_volume": fraction_of_volume,
                    "config": label,
                    "seed": seed,
                    "mean_dice": float(np.mean(finite)) if finite else None,
                    "n_test": len(finite),
                    "zero_dice_cases": int(sum(d == 0 for d in finite)),
                    "train_seconds": round(seconds, 2),
                }
                results["rows"].append(row)
                print(json.dumps(row), flush=True)
    results["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
