"""The full protocol at the paper's scale on N GPUs, estimated from a finished run and measured times.

    python benchmarks/paper_scale.py --run RUN_DIR [--step-seconds 0.100] [--sources 93] [--targets 21 93]

1. From a finished run (``seqtransfer demo`` or ``seqtransfer run``) it counts what one
   (target, draw) unit of the protocol trains: fine-tuning steps (model folders under
   ``models/finetune``) apart from the selection-quality study's direct transfers (one per
   connected source and target in the quality draws), and the store rows a unit writes.
2. It scales those counts to S sources and T targets (3 draws, the protocol's defaults: zoo
   300 steps, fine-tuning 150 steps per path step, scratch and MTL 300 steps) and turns
   optimizer steps into GPU time with a measured step time (``--step-seconds``: the ``nnunet``
   preset on one H200, ``benchmarks/full_size.md``: 0.100 s mean with augmentation, bf16).
3. It measures how many store rows per second the driver writes (:meth:`RunStore.apply`, two
   transactions per run: started, finished) against a baseline in the same process (the same
   rows in one transaction), with results of the run's median size.

Everything is printed as Markdown; ``benchmarks/scaling.md`` holds a measured copy.
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from seqtransfer.experiment.store import RunStore, canonical_json, run_key


def unit_counts(run: Path) -> dict[str, float]:
    """Per (target, draw): fine-tuning steps and store rows; the quality study's transfers apart."""
    config = json.loads((run / "config.resolved.json").read_text())["config"]
    protocol = config["protocol"]
    with sqlite3.connect(run / "runs.sqlite") as db:
        rows = db.execute("SELECT kind, spec, result FROM runs WHERE status = 'done'").fetchall()
    methods = [json.loads(spec) for kind, spec, _ in rows if kind == "method"]
    targets = {m["target"] for m in methods}
    units = len(targets) * protocol["draws"]
    quality = {
        (tuple(json.loads(result)["path"]), json.loads(spec)["draw"])
        for kind, spec, result in rows
        if kind == "transfer"
        and len(json.loads(result)["path"]) == 2
        and json.loads(spec)["draw"] < protocol["quality_draws"]
    }
    finetune = len([p for p in (run / "models" / "finetune").iterdir() if p.is_dir()])
    zoo = sum(1 for kind, _, _ in rows if kind == "zoo")
    sizes = [len(result) for _, _, result in rows]
    return {
        "units": units,
        "targets": len(targets),
        "zoo": zoo,
        "finetune_steps": finetune,
        "quality_transfers": len(quality),
        "finetune_per_unit": (finetune - len(quality)) / units,
        "rows_per_unit": (len(rows) - zoo) / units,
        "result_bytes": statistics.median(sizes),
        "scratch_like_per_unit": sum(1 for m in methods if m["method"] in ("scratch", "mtl")) / units,
    }


def store_rates(n: int, result_bytes: int) -> tuple[float, float]:
    """Rows per second: the driver's apply (2 transactions a run) and one transaction for all."""
    payload = {"per_case": "x" * max(0, int(result_bytes) - 40), "dice": 0.5}
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "runs.sqlite")
        start = time.perf_counter()
        for i in range(n):
            spec = {"method": "ours", "target": f"t{i}", "draw": 0}
            store.apply(("running", "method", spec))
            store.apply(("done", "method", spec, payload, 1.0))
        driver = n / (time.perf_counter() - start)
        base = RunStore(Path(tmp) / "base.sqlite")
        start = time.perf_counter()
        with sqlite3.connect(base.path) as db:
            db.executemany(
                "INSERT INTO runs (key, kind, spec, status, result, attempts) VALUES (?, ?, ?, 'done', ?, 1)",
                [
                    (
                        run_key("method", s := {"method": "ours", "target": f"t{i}", "draw": 0}),
                        "method",
                        canonical_json(s),
                        canonical_json(payload),
                    )
                    for i in range(n)
                ],
            )
        baseline = n / (time.perf_counter() - start)
    return driver, baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished run folder")
    parser.add_argument("--step-seconds", type=float, default=0.100, help="one optimizer step on one GPU")
    parser.add_argument("--sources", type=int, default=93, help="source tasks (84 tumour + 6 tissue + 3 lesion)")
    parser.add_argument("--targets", type=int, nargs="+", default=[21, 93])
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--zoo-steps", type=int, default=300)
    parser.add_argument("--finetune-steps", type=int, default=150)
    parser.add_argument("--scratch-steps", type=int, default=300)
    parser.add_argument("--rows", type=int, default=2000, help="runs written in the store measurement")
    args = parser.parse_args()

    c = unit_counts(args.run)
    print(f"## Counts of {args.run} ({c['targets']} targets, {c['units']} target x draw units)\n")
    for key, value in c.items():
        print(f"- {key}: {value:.4g}" if isinstance(value, float) else f"- {key}: {value}")
    driver, baseline = store_rates(args.rows, int(c["result_bytes"]))
    print(
        f"\n## Store writes ({args.rows} runs, results of {c['result_bytes']:.0f} B)\n\n"
        f"- driver (`RunStore.apply`, 2 transactions a run): {driver:.0f} runs/s\n"
        f"- baseline (one transaction for all, same process): {baseline:.0f} runs/s\n"
        f"- ratio: {driver / baseline:.3f}\n"
    )
    print("## The protocol at the paper's scale\n")
    print(
        "| targets T | trainings | optimizer steps | GPU-hours | units | one unit | wall N=1 | N=8 | N=64 "
        "| store rows/s needed at N=64 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for t in args.targets:
        units = t * args.draws
        zoo_steps = args.sources * args.zoo_steps
        quality = args.sources * t  # one direct transfer per source and target, one quality draw
        finetune = units * c["finetune_per_unit"] + quality
        scratch = units * c["scratch_like_per_unit"]
        steps = zoo_steps + finetune * args.finetune_steps + scratch * args.scratch_steps
        seconds = steps * args.step_seconds
        unit_seconds = c["finetune_per_unit"] * args.finetune_steps + c["scratch_like_per_unit"] * args.scratch_steps
        unit_seconds *= args.step_seconds
        rows = units * c["rows_per_unit"] + args.sources

        quality_per_unit = quality / units * args.finetune_steps * args.step_seconds

        def wall(n: int, seconds: float = seconds, unit: float = unit_seconds + quality_per_unit) -> float:
            # the zoo first (S trainings), then the units; a unit runs its methods one after
            # another, and the quality transfers of its target are spread over the draws' units
            zoo_wall = math.ceil(args.sources / n) * args.zoo_steps * args.step_seconds
            rest = seconds - args.sources * args.zoo_steps * args.step_seconds
            return zoo_wall + max(rest / n, unit)

        trainings = args.sources + finetune + scratch
        print(
            f"| {t} | {trainings:,.0f} | {steps:,.0f} | {seconds / 3600:.1f} | {units} | {unit_seconds / 60:.1f} min | "
            f"{wall(1) / 3600:.1f} h | {wall(8) / 3600:.2f} h | {wall(64) / 3600:.2f} h | {rows / wall(64):.3f} |"
        )


if __name__ == "__main__":
    main()
