"""Time of ``seqtransfer adapt`` for a 3-case target, cold and warm, per stage (benchmarks/adapt.md).

Cold: the command builds the graph and trains the source models it needs.
Warm: an existing graph and zoo are given with ``--graph``; the target is new to that graph.

    .venv/bin/python benchmarks/adapt.py --work /tmp/adapt_bench --out benchmarks/results/adapt.json

Every run is a separate ``seqtransfer`` process; wall time and the peak RSS of the process
tree come from ``/usr/bin/time -v`` style accounting (``resource.getrusage(RUSAGE_CHILDREN)``
after each child, max RSS of the largest child). The stage breakdown is the command's own
``adapt.json`` "seconds".
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent / "seqtransfer"


def run(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run([str(BIN), *argv], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "wall_s": round(wall, 2),
        "peak_rss_mib_largest_process": round(max(peak, before) / 1024, 1),
        "stdout": proc.stdout.strip().splitlines()[-6:],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/adapt_bench"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/adapt.json"))
    parser.add_argument("--max-sources", type=int, default=5)
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    env = {**os.environ, "SEQTRANSFER_CACHE": str(args.work / "cache")}
    bench = args.work / "bench"
    results: dict[str, object] = {"load_before": os.getloadavg(), "cpus": os.cpu_count()}
    results["benchmark"] = run(
        ["benchmark", "make", "--out", str(bench), "--size", "48", "--cases", "24", "--sites", "2"], env
    )
    sources = [str(bench / d) for d in ("Dataset501_TumourLike", "Dataset502_TissueLike", "Dataset503_LesionLike")]
    target = str(bench / "Dataset504_NewClinicLike")
    common = ["--preset", "cpu", "--max-sources", str(args.max_sources), "--workers", "2"]
    cold = args.work / "cold"
    results["cold"] = run(
        ["adapt", *sources, target, "--target", "newclinic-T2w-edema", "--out", str(cold), *common], env
    )
    results["cold"]["stages"] = json.loads((cold / "adapt.json").read_text())["seconds"]
    warm = args.work / "warm"
    results["warm"] = run(
        [
            "adapt",
            *sources,
            target,
            "--target",
            "newclinic-T2w-necrosis",
            "--out",
            str(warm),
            "--graph",
            str(cold / "graph"),
            *common,
        ],
        env,
    )
    saved = json.loads((warm / "adapt.json").read_text())
    results["warm"]["stages"] = saved["seconds"]
    results["warm"]["zoo_models_trained"] = saved["zoo_trained"]
    results["cold"]["zoo_models_trained"] = json.loads((cold / "adapt.json").read_text())["zoo_trained"]
    results["rerun"] = run(
        ["adapt", *sources, target, "--target", "newclinic-T2w-edema", "--out", str(cold), *common], env
    )
    results["load_after"] = os.getloadavg()
    for key in ("cold", "warm"):
        folder = cold if key == "cold" else warm
        record = json.loads((folder / "adapt.json").read_text())["targets"][0]
        results[key]["path"] = record["path"]
        results[key]["labelsTs_dice"] = (record.get("labelsTs_dice") or {}).get("mean_dice")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
