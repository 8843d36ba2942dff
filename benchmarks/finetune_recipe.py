"""Choose the fine-tuning recipe (lr, steps) by measurement over several targets and draws.

METHOD section 6: pilots at 32^3 disagreed between one split and twelve, so the default
recipe of ``FinetuneConfig`` is decided here, over targets of all three collections and three
seeded draws of the 3 target training cases each, along each target's stored selection.

Usage (a graph folder made by ``seqtransfer demo``; runs are cached, so it resumes)::

    .venv/bin/python benchmarks/finetune_recipe.py --graph /tmp/recipe/graph \
        --cache /tmp/recipe/cache --out benchmarks/finetune_recipe.json

Writes the per-run Dice to the JSON file and prints a table of mean Dice per recipe.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from seqtransfer.threads import single_threaded
from seqtransfer.training.transfer import FinetuneConfig, run_transfer
from seqtransfer.training.workspace import open_workspace
from seqtransfer.training.zoo import ZooConfig

RECIPES = [
    {"lr": 1e-2, "steps": 150},
    {"lr": 1e-3, "steps": 300},
    {"lr": 1e-2, "steps": 50},
    {"lr": 1e-3, "steps": 150},
]
TARGETS = ["inst6-T1ce-ET", "inst6-FLAIR-ED", "iseg-T1-GM", "utrecht-FLAIR-WMH"]
DRAWS = [0, 1, 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", type=Path, required=True)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/finetune_recipe.json"))
    parser.add_argument("--draws", default=",".join(map(str, DRAWS)), help="comma-separated draws to run (e.g. one per process)")
    parser.add_argument("--also-done", type=Path, nargs="*", default=[], help="result files of other processes: skip what they hold")
    args = parser.parse_args()
    draws = [int(d) for d in args.draws.split(",")]
    workspace = open_workspace(args.graph, size=32, cache_dir=args.cache)
    results = json.loads(args.out.read_text()) if args.out.exists() else []
    others = [r for f in args.also_done if f.exists() for r in json.loads(f.read_text())]
    done = {(r["target"], r["draw"], r["lr"], r["steps"]) for r in [*results, *others]}
    paths = {t: json.loads(workspace.store.selection_path(t).read_text())["path"] for t in TARGETS}
    for draw in draws:  # draw-major, so every target is covered before the later draws
        for target in TARGETS:
            path = paths[target]
            for recipe in RECIPES:
                if (target, draw, recipe["lr"], recipe["steps"]) in done:
                    continue
                start = time.perf_counter()
                with single_threaded():
                    metrics = run_transfer(workspace, target, path, ZooConfig(), FinetuneConfig(draw=draw, **recipe))
                results.append(
                    {
                        "target": target,
                        "path": path,
                        "draw": draw,
                        **recipe,
                        "zero_shot": metrics["zero_shot_dice"],
                        "steps_dice": [s["dice_after"] for s in metrics["steps"]],
                        "final": metrics["final_dice"],
                        "seconds": time.perf_counter() - start,
                    }
                )
                args.out.write_text(json.dumps(results, indent=1))
                print(f"{target} draw {draw} lr {recipe['lr']} steps {recipe['steps']}: {metrics['final_dice']:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
    print("\nrecipe            mean   sd    per target")
    results = results + [r for r in others if (r["target"], r["draw"], r["lr"], r["steps"]) not in {(x["target"], x["draw"], x["lr"], x["steps"]) for x in results}]
    for recipe in RECIPES:
        rows = [r for r in results if r["lr"] == recipe["lr"] and r["steps"] == recipe["steps"]]
        finals = np.array([r["final"] for r in rows])
        per_target = {t: np.mean([r["final"] for r in rows if r["target"] == t]) for t in TARGETS}
        print(f"lr {recipe['lr']:g} x {recipe['steps']:<4d} {finals.mean():.3f} {finals.std():.3f} " + " ".join(f"{t}={v:.3f}" for t, v in per_target.items()))


if __name__ == "__main__":
    main()
