"""The demo's protocol three ways, compared record by record (issue 6, "done when"):

1. ``seqtransfer demo --out W/local``: the reference (local pool of 2 workers);
2. ``seqtransfer run examples/demo.toml --out W/ray --executor ray``: the same protocol as Ray
   tasks on a local Ray cluster (``ray.init()`` with the machine's CPUs);
3. ``seqtransfer demo --out W/killed``, killed with SIGKILL four times (while the embedded
   benchmark is written, while draw 0's graph features are written, inside the zoo stage,
   inside the methods stage), then run once more to completion.

Compared: every method record (Dice on the training draw's evaluation and the mean test-set
Dice), every zoo model's held-out Dice, every stored selection (landmark, path), the graph
edges of every draw, and the report's CSV tables. Results: ``benchmarks/results/demo_executors.json``
and ``benchmarks/demo_executors.md``.

Usage (about 35 minutes on 2 cores)::

    . .venv/bin/activate
    python benchmarks/demo_executors.py --work /tmp/demo_exec
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _seqtransfer(*argv: str) -> list[str]:
    code = "import sys; from seqtransfer.cli import main; sys.argv[0] = 'seqtransfer'; main()"
    return [sys.executable, "-c", code, *argv]


def _timed(argv: list[str], log: Path) -> dict:
    start = time.time()
    with open(log, "a") as handle:
        code = subprocess.run(argv, stdout=handle, stderr=subprocess.STDOUT).returncode
    return {"returncode": code, "wall_s": time.time() - start}


def _count_done(run: Path, kind: str) -> int:
    try:
        with sqlite3.connect(run / "runs.sqlite", timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM runs WHERE kind = ? AND status = 'done'", (kind,)).fetchone()[0]
    except sqlite3.Error:
        return 0


def _kill_when(argv: list[str], log: Path, ready) -> dict:
    start = time.time()
    with open(log, "a") as handle:
        proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        while not ready():
            if proc.poll() is not None:
                return {"killed": False, "returncode": proc.returncode, "wall_s": time.time() - start}
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)  # the command and its pool workers, like a lost machine
        proc.wait()
    return {"killed": True, "wall_s": time.time() - start}


def _records(run: Path) -> dict:
    conn = sqlite3.connect(run / "runs.sqlite")
    rows = conn.execute("SELECT kind, result, attempts FROM runs WHERE status = 'done'").fetchall()
    conn.close()
    methods, zoo, attempts = {}, {}, []
    for kind, result, n in rows:
        data = json.loads(result)
        attempts.append(n)
        if kind == "method":
            methods[f"{data['method']}|{data['target']}|{data['draw']}|{data['variant']}"] = [
                data.get("dice"),
                data.get("test_set_dice"),
                data.get("path"),
            ]
        elif kind == "zoo":
            zoo[data["task"]] = data["dice"]
    edges = {}
    for graph in sorted((run / "graphs").glob("draw*/graph.json")):
        links = json.loads(graph.read_text())["links"]
        edges[graph.parent.name] = sorted(
            (min(l["source"], l["target"]), max(l["source"], l["target"]), l["H"], l["R"], l["weight"]) for l in links
        )
    tables = {p.name: p.read_text() for p in sorted((run / "report" / "tables").glob("*.csv"))}
    return {
        "methods": methods,
        "zoo": zoo,
        "edges": edges,
        "tables": tables,
        "max_attempts": max(attempts, default=0),
        "n_runs": len(rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--skip", nargs="*", default=[], choices=("local", "ray", "killed"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / "log.txt"
    saved = HERE / "results" / "demo_executors.json"
    # runs skipped now keep what an earlier invocation recorded of them
    out: dict = json.loads(saved.read_text()) if saved.exists() and args.skip else {}
    out[f"started_{'_'.join(sorted({'local', 'ray', 'killed'} - set(args.skip))) or 'compare'}"] = time.strftime(
        "%Y-%m-%d %H:%M:%S"
    )
    if "local" not in args.skip:
        out["local"] = _timed(_seqtransfer("demo", "--out", str(args.work / "local")), log)
    if "ray" not in args.skip:
        out["ray"] = _timed(
            _seqtransfer(
                "run", str(ROOT / "examples" / "demo.toml"), "--out", str(args.work / "ray"), "--executor", "ray"
            ),
            log,
        )
    if "killed" not in args.skip:
        killed = args.work / "killed"
        argv = _seqtransfer("demo", "--out", str(killed))
        kills = [
            ("benchmark written", lambda: len(list((killed / "benchmark").rglob("*.nii.gz"))) >= 100),
            (
                "graph features written",
                lambda: (killed / "graphs").exists() and len(list((killed / "graphs").rglob("*.np[yz]"))) >= 50,
            ),
            ("zoo stage", lambda: _count_done(killed, "zoo") >= 4),
            ("methods stage", lambda: _count_done(killed, "method") >= 6),
        ]
        out["kills"] = [{"when": name, **_kill_when(argv, log, ready)} for name, ready in kills]
        out["killed_final"] = _timed(argv, log)
    runs = {
        name: _records(args.work / name)
        for name in ("local", "ray", "killed")
        if (args.work / name / "runs.sqlite").exists()
    }
    reference = runs.get("local")
    out["comparison"] = {}
    for name, rec in runs.items():
        if name == "local" or reference is None:
            continue
        out["comparison"][name] = {key: rec[key] == reference[key] for key in ("methods", "zoo", "edges", "tables")} | {
            "n_methods": len(rec["methods"]),
            "max_attempts": rec["max_attempts"],
            "n_runs": rec["n_runs"],
        }
    out["reference_runs"] = reference["n_runs"] if reference else None
    out["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    saved.parent.mkdir(exist_ok=True)
    saved.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
