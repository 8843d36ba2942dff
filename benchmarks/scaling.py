"""Scaling study: graph building against the number of tasks and the volume size, a transfer
against the volume size (issue 6; results and discussion in ``benchmarks/scaling.md``).

Data: one embedded benchmark generated at 128^3 with 12 tumour sites and 20 cases per site
(12 x 4 modalities x 3 objectives = 144 tumour tasks, 6 tissue and 3 lesion tasks: 153), so
every source task has the 20 volumes of the issue. The volume size of the study is the
preprocessing grid (``GraphConfig.size``): the raw data stay the same, each size has its own
preprocessing cache, filled in a phase of its own (``preprocess``) so the graph phases start
with a warm cache and an empty graph folder (no cached features), like ``graph build`` after
``verify``.

Phases, each in a fresh child process (every peak belongs to one phase):

* ``preprocess --size S``: every case to the S^3 grid.
* ``graph --tasks N --size S [--workers W]``: ``build_graph`` of N tasks, all sources (no
  targets), ``volumes_per_task=20`` and the other defaults; the N tasks are a seeded sample of
  the 153. ``--engine old`` runs the same build with the previous engine (commit 76cd8d0, all
  volumes and SSIM statistics in memory) from a worktree, as the baseline.
* ``transfer --size S``: a zoo model of ``inst1-T1-ET`` (40 steps on 12 cases) and a transfer
  ``inst1-T1-ET -> inst3-T1-ET`` (40 steps, EWC, frozen encoder) with the cpu preset (patch
  32^3), scored with sliding windows over the S^3 volumes of the target's 3 test sets.

Memory: a sampler thread sums ``VmRSS`` over the phase process and all its descendants (the
pool workers) every 0.1 s; the peak of that sum is "peak RSS, all processes". RSS includes the
touched pages of memory-mapped files (the preprocessing cache), so it over-states what must
be resident. Time is wall time of the call.

Usage::

    . .venv/bin/activate
    seqtransfer benchmark make --out /tmp/scal/bench128 --size 128 --cases 20 --sites 12
    python benchmarks/scaling.py --bench /tmp/scal/bench128 --work /tmp/scal/work --plan full
    python benchmarks/scaling.py --bench ... --work ... --plots-only   # redraw the figures

Results: ``benchmarks/results/scaling.json`` and ``benchmarks/results/scaling_*.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


# --------------------------------------------------------------------------- memory


def _tree_rss_kib(root: int) -> int:
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        rss[int(entry)] = int(line.split()[1])
                        break
            parents[int(entry)] = ppid
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(rss.get(pid, 0) for pid in tree)


class TreeSampler:
    """Peak of the summed RSS of this process and its descendants."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss_kib(os.getpid()))
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _tree_rss_kib(os.getpid()))


# --------------------------------------------------------------------------- phases


def _tasks(bench: Path):
    from seqtransfer.data.dataset import parse_dataset
    from seqtransfer.data.tasks import load_objective_groups, split_tasks

    roots = sorted(p for p in bench.iterdir() if p.name.startswith("Dataset"))
    datasets = [parse_dataset(r)[0] for r in roots]
    return split_tasks(datasets, load_objective_groups(bench / "objective_groups.json"))


def _sample(tasks, n: int):
    import numpy as np

    ordered = sorted(tasks, key=lambda t: t.name)
    chosen = np.random.default_rng(0).permutation(len(ordered))[:n]
    return [ordered[i] for i in sorted(chosen)]


def phase_preprocess(args: argparse.Namespace) -> dict:
    from seqtransfer.data.preprocess import PreprocessCache, PreprocessConfig

    tasks = _tasks(args.bench)
    cache = PreprocessCache(args.work / f"cache{args.size}", PreprocessConfig(size=args.size))
    cases = {c.label: c for t in tasks for c in t.cases}
    start = time.perf_counter()
    with TreeSampler() as sampler:
        cache.ensure(cases.values())
    return {
        "phase": "preprocess",
        "size": args.size,
        "cases": len(cases),
        "wall_s": time.perf_counter() - start,
        "peak_rss_mib": sampler.peak / 1024,
    }


def phase_graph(args: argparse.Namespace) -> dict:
    from seqtransfer.data.preprocess import PreprocessCache, PreprocessConfig
    from seqtransfer.graph import GraphConfig, build_graph

    tasks = _sample(_tasks(args.bench), args.tasks)
    cache = PreprocessCache(args.work / f"cache{args.size}", PreprocessConfig(size=args.size))
    out = args.work / f"graph_{args.engine}_n{args.tasks}_s{args.size}_w{args.workers}"
    shutil.rmtree(out, ignore_errors=True)
    config = GraphConfig(size=args.size, volumes_per_task=20)
    kwargs = {}
    executor = None
    if args.engine == "new" and args.workers > 1:
        from seqtransfer.core.executor import ProcessExecutor

        executor = ProcessExecutor(args.workers)
        kwargs["executor"] = executor
    stages: dict[str, float] = {}
    last = [time.perf_counter(), None]

    def progress(event: Any) -> None:  # a seqtransfer.core.progress.ProgressEvent
        stage = event.stage
        now = time.perf_counter()
        if last[1] is not None:
            stages[last[1]] = stages.get(last[1], 0.0) + now - last[0]
        last[0], last[1] = now, stage

    start = time.perf_counter()
    with TreeSampler() as sampler:
        graph = build_graph(tasks, out, config, cache=cache, progress=progress, **kwargs)
    wall = time.perf_counter() - start
    if executor is not None:
        executor.close()
    features = (
        sum(p.stat().st_size for p in (out / "features").rglob("*") if p.is_file())
        if (out / "features").exists()
        else 0
    )
    result = {
        "phase": "graph",
        "engine": args.engine,
        "tasks": args.tasks,
        "size": args.size,
        "workers": args.workers,
        "edges": graph.number_of_edges(),
        "wall_s": wall,
        "peak_rss_mib": sampler.peak / 1024,
        "feature_cache_mib": features / 2**20,
        "stages_s": stages,
    }
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return result


def phase_transfer(args: argparse.Namespace) -> dict:
    from seqtransfer.data.preprocess import PreprocessCache, PreprocessConfig
    from seqtransfer.graph import GraphConfig, build_graph
    from seqtransfer.pipeline.config import FinetuneConfig, ZooConfig
    from seqtransfer.pipeline.transfer import run_transfer
    from seqtransfer.pipeline.workspace import open_workspace
    from seqtransfer.pipeline.zoo import train_source
    from seqtransfer.training.config import TrainConfig

    landmark, target = "inst1-T1-ET", "inst3-T1-ET"
    tasks = [t for t in _tasks(args.bench) if t.name in (landmark, target)]
    out = args.work / f"transfer_s{args.size}"
    shutil.rmtree(out, ignore_errors=True)
    cache_dir = args.work / f"cache{args.size}"
    build_graph(
        tasks,
        out,
        GraphConfig(size=args.size, volumes_per_task=3),
        targets=[target],
        cache=PreprocessCache(cache_dir, PreprocessConfig(size=args.size)),
    )
    workspace = open_workspace(out, size=args.size, cache_dir=cache_dir)
    zoo = ZooConfig(train=TrainConfig(steps=40, lr=0.01, augment=False), max_train=12)
    start = time.perf_counter()
    with TreeSampler() as sampler:
        t0 = time.perf_counter()
        train_source(workspace, landmark, zoo)
        t_zoo = time.perf_counter() - t0
        t0 = time.perf_counter()
        metrics = run_transfer(workspace, target, [landmark, target], zoo, FinetuneConfig(steps=40, augment=False))
        t_transfer = time.perf_counter() - t0
    result = {
        "phase": "transfer",
        "size": args.size,
        "wall_s": time.perf_counter() - start,
        "zoo_s": t_zoo,
        "transfer_s": t_transfer,
        "final_dice": metrics.final_dice,
        "peak_rss_mib": sampler.peak / 1024,
    }
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return result


# --------------------------------------------------------------------------- driver

PLANS = {
    "quick": [("preprocess", {"size": 32}), ("graph", {"tasks": 12, "size": 32}), ("graph", {"tasks": 25, "size": 32})],
    "full": (
        [("preprocess", {"size": s}) for s in (32, 64, 96, 128)]
        + [("graph", {"tasks": n, "size": 32}) for n in (12, 25, 50, 100, 150)]
        + [("graph", {"tasks": 25, "size": s}) for s in (64, 96, 128)]
        + [("graph", {"tasks": 50, "size": s, "engine": "old"}) for s in (32, 64)]
        + [("graph", {"tasks": 50, "size": 64})]
        + [("transfer", {"size": s}) for s in (32, 64, 96, 128)]
        + [("graph", {"tasks": 150, "size": 128, "workers": 2})]
    ),
}


def _child(kind: str, params: dict, args: argparse.Namespace) -> dict:
    argv = [sys.executable, __file__, "--bench", str(args.bench), "--work", str(args.work), "--phase", kind]
    for key, value in params.items():
        argv += [f"--{key}", str(value)]
    env = dict(os.environ)
    if params.get("engine") == "old":
        env["PYTHONPATH"] = str(args.old_src)
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"phase": kind, **params, "error": done.stderr[-1500:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _load_avg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def run_plan(args: argparse.Namespace) -> None:
    path = RESULTS / "scaling.json"
    results = json.loads(path.read_text()) if path.exists() and not args.fresh else []
    results = [r for r in results if "error" not in r]  # failed phases are run again
    done = {
        json.dumps({k: r.get(k) for k in ("phase", "tasks", "size", "workers", "engine")}, sort_keys=True)
        for r in results
        if "error" not in r
    }
    for kind, params in PLANS[args.plan]:
        full = {"workers": 1, "engine": "new", **params} if kind == "graph" else dict(params)
        key = json.dumps(
            {
                "phase": kind,
                "tasks": full.get("tasks"),
                "size": full.get("size"),
                "workers": full.get("workers"),
                "engine": full.get("engine"),
            },
            sort_keys=True,
        )
        if key in done:
            continue
        load = _load_avg()
        print(f"{time.strftime('%H:%M:%S')} {kind} {full} (load {load:.2f})", flush=True)
        result = _child(kind, full, args)
        result.update({"load_before": load, "load_after": _load_avg(), "when": time.strftime("%Y-%m-%d %H:%M:%S")})
        print(json.dumps(result), flush=True)
        results.append(result)
        RESULTS.mkdir(exist_ok=True)
        path.write_text(json.dumps(results, indent=1))
    plot(results)


def plot(results: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if "error" not in r]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))

    def time_and_memory(ax, rows: list[dict], x: str, xlabel: str, title: str):
        ax.plot([r[x] for r in rows], [r["wall_s"] for r in rows], "o-")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("graph build, wall s")
        twin = ax.twinx()
        twin.plot([r[x] for r in rows], [r["peak_rss_mib"] for r in rows], "s--", color="tab:red", label="peak RSS")
        twin.set_ylabel("peak RSS (all processes), MiB", color="tab:red")
        ax.set_title(title)
        return twin

    graphs = [r for r in ok if r["phase"] == "graph" and r.get("engine", "new") == "new" and r.get("workers", 1) == 1]
    by_tasks = sorted((r for r in graphs if r["size"] == 32), key=lambda r: r["tasks"])
    if by_tasks:
        time_and_memory(
            axes[0], by_tasks, "tasks", "tasks (32^3, 20 volumes each)", "graph vs number of tasks"
        ).set_ylim(bottom=0)
    by_size = sorted((r for r in graphs if r["tasks"] == 25), key=lambda r: r["size"])
    old = sorted((r for r in ok if r["phase"] == "graph" and r.get("engine") == "old"), key=lambda r: r["size"])
    new50 = sorted((r for r in graphs if r["tasks"] == 50), key=lambda r: r["size"])
    if by_size:
        twin = time_and_memory(axes[1], by_size, "size", "volume edge (voxels), 25 tasks", "graph vs volume size")
        if old:
            twin.plot(
                [r["size"] for r in old],
                [r["peak_rss_mib"] for r in old],
                "x:",
                color="tab:gray",
                label="peak RSS, 50 tasks, previous engine",
            )
            twin.plot(
                [r["size"] for r in new50],
                [r["peak_rss_mib"] for r in new50],
                "^--",
                color="tab:purple",
                label="peak RSS, 50 tasks",
            )
        twin.set_ylim(bottom=0)
        twin.legend(loc="upper left", fontsize=7)
    transfers = sorted((r for r in ok if r["phase"] == "transfer"), key=lambda r: r["size"])
    if transfers:
        ax = axes[2]
        ax.plot([r["size"] for r in transfers], [r["zoo_s"] for r in transfers], "o-", label="zoo model (40 steps)")
        ax.plot(
            [r["size"] for r in transfers],
            [r["transfer_s"] for r in transfers],
            "o-",
            label="transfer (40 steps + scoring)",
        )
        ax.set_xlabel("volume edge (voxels)")
        ax.set_ylabel("wall s")
        twin = ax.twinx()
        twin.plot([r["size"] for r in transfers], [r["peak_rss_mib"] for r in transfers], "s--", color="tab:red")
        twin.set_ylabel("peak RSS, MiB", color="tab:red")
        twin.set_ylim(bottom=0)
        ax.legend(loc="upper left", fontsize=7)
        ax.set_title("transfer vs volume size (cpu preset)")
    fig.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    fig.savefig(RESULTS / "scaling.png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--phase", choices=("preprocess", "graph", "transfer"))
    parser.add_argument("--plan", choices=tuple(PLANS), default="full")
    parser.add_argument("--tasks", type=int, default=12)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--engine", choices=("new", "old"), default="new")
    parser.add_argument(
        "--old-src", type=Path, default=Path("/tmp/cmp/old/src"), help="src/ of a worktree at the baseline commit"
    )
    parser.add_argument("--keep", action="store_true", help="keep the graph folders")
    parser.add_argument("--fresh", action="store_true", help="ignore earlier results")
    parser.add_argument("--plots-only", action="store_true")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("SEQTRANSFER_CACHE", str(args.work / "user_cache"))
    if args.plots_only:
        plot(json.loads((RESULTS / "scaling.json").read_text()))
        return
    if args.phase is None:
        run_plan(args)
        return
    result = {"preprocess": phase_preprocess, "graph": phase_graph, "transfer": phase_transfer}[args.phase](args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
