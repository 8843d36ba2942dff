"""The main job on the embedded benchmark (``seqtransfer demo``, ``make demo``).

What it runs today: generate the benchmark (once; reused when its configuration matches),
verify it, list its tasks, build the source graph with the paper's protocol targets (the
tasks of one held-out tumour site and of the tissue and lesion collections), select a
landmark and a path for every target, draw the figures, and run one real sequential
transfer (landmark zoo model, then every path step) for the target with the longest path.
Baselines, several draws and the report are added by the experiment stage.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from seqtransfer.atomic import write_json
from seqtransfer.data.benchmark import BenchmarkConfig, make_benchmark
from seqtransfer.data.preprocess import PreprocessCache, PreprocessConfig
from seqtransfer.data.tasks import Task, load_objective_groups, split_tasks
from seqtransfer.data.verify import require_valid

StagedProgress = Callable[[str], contextlib.AbstractContextManager[Callable[[str, int, int], None]]]


def protocol_targets(tasks: list[Task]) -> list[str]:
    """The paper's targets (METHOD section 7), for any datasets.

    The held-out site is the last site (in name order) of the collection with the most
    sites (the tumour-like one); every task of the other collections is a target too (the
    tissue- and lesion-like ones). The remaining tasks are the sources.
    """
    by_collection: dict[str, list[Task]] = {}
    for task in tasks:
        by_collection.setdefault(task.collection, []).append(task)
    n_sites = {c: len({t.site for t in ts}) for c, ts in by_collection.items()}
    main = max(sorted(by_collection), key=lambda c: n_sites[c])
    held_out = sorted({t.site for t in by_collection[main]})[-1]
    targets = [t.name for t in by_collection[main] if t.site == held_out]
    for collection, members in sorted(by_collection.items()):
        if collection != main:
            targets += [t.name for t in members]
    return sorted(targets)


def _benchmark(out: Path, config: BenchmarkConfig, console: Console, progress: StagedProgress) -> list[Path]:
    marker = out / "benchmark.json"
    if marker.exists():
        try:
            saved = json.loads(marker.read_text())
            if saved.get("config") == asdict(config):
                console.print(f"benchmark: reusing {out}", markup=False)
                return [out / name for name in saved["datasets"]]
        except (OSError, json.JSONDecodeError, KeyError):
            pass
    with progress("generating benchmark") as update:
        roots = make_benchmark(out, config, update)
    write_json(marker, {"config": asdict(config), "datasets": [r.name for r in roots]})
    console.print(f"benchmark: wrote {len(roots)} datasets to {out}", markup=False)
    return roots


def run_demo(out_dir: Path, seed: int = 0, console: Console | None = None, progress: StagedProgress | None = None) -> dict[str, Any]:
    """Run the demo and return a summary (also written to ``out_dir/summary.json``)."""
    from seqtransfer.graph import GraphConfig, build_graph
    from seqtransfer.graph.figures import plot_graph, plot_heatmap
    from seqtransfer.selection.run import select_for_target

    console = console or Console()
    progress = progress or (lambda _name: contextlib.nullcontext(lambda *_: None))
    out_dir = Path(out_dir)
    bench_config = BenchmarkConfig(seed=seed)
    roots = _benchmark(out_dir / "benchmark", bench_config, console, progress)
    with progress("verifying") as update:
        datasets, warnings = require_valid(roots, update)
    console.print(f"verify: {len(datasets)} datasets clean ({len(warnings)} warning(s))", markup=False)
    groups = load_objective_groups(out_dir / "benchmark" / "objective_groups.json")
    tasks = split_tasks(datasets, groups)
    targets = protocol_targets(tasks)
    table = Table(title=f"{len(tasks)} tasks ({len(targets)} targets)")
    for column in ("collection", "sites", "modalities", "objectives", "tasks", "cases/task"):
        table.add_column(column, overflow="fold")
    for dataset in datasets:
        members = [t for t in tasks if t.dataset is dataset]
        table.add_row(
            dataset.name,
            ", ".join(dataset.sites),
            ", ".join(dataset.channel_names),
            ", ".join(dataset.labels),
            str(len(members)),
            str(min(t.n_cases for t in members)),
        )
    console.print(table)

    graph_config = GraphConfig(size=32, seed=seed)
    cache = PreprocessCache(out_dir / "cache", PreprocessConfig(size=graph_config.size))
    graph_dir = out_dir / "graph"
    with progress("source graph") as update:
        graph = build_graph(tasks, graph_dir, graph_config, targets=targets, cache=cache, progress=update)
    console.print(f"graph: {graph.number_of_nodes()} nodes, {graph.number_of_edges()} edges -> {graph_dir}", markup=False)

    selections = {}
    sel_table = Table(title="landmark and path per target (O uniform until the model zoo is trained)")
    for column in ("target", "landmark", "via", "objective"):
        sel_table.add_column(column, overflow="fold")
    for target in targets:
        selection = select_for_target(graph_dir, target, uniform_performance=True)
        selections[target] = selection.to_json()
        via = " -> ".join(selection.path[1:-1]) or "(direct)"
        sel_table.add_row(target, selection.landmark, via, f"{selection.objective:.4f}")
    console.print(sel_table)
    figures = graph_dir / "figures"
    plot_heatmap(graph, figures / "affinity_heatmap.png")
    # draw the targets with the longest paths (the interesting ones), one per collection first
    shown = sorted(targets, key=lambda t: (-len(selections[t]["path"]), t))[:3]
    for target in shown:
        sel = selections[target]
        plot_graph(graph, figures / f"graph_{target}.png", target=target, landmark=sel["landmark"], transfer_path=sel["path"])
    # one real transfer: the target with the longest selected path, along that path
    from seqtransfer.training.transfer import FinetuneConfig, run_transfer
    from seqtransfer.training.workspace import open_workspace
    from seqtransfer.training.zoo import ZooConfig

    demo_target = shown[0]
    workspace = open_workspace(graph_dir, size=32, cache_dir=out_dir / "cache")
    with progress(f"transfer to {demo_target}") as update:
        metrics = run_transfer(
            workspace,
            demo_target,
            selections[demo_target]["path"],
            ZooConfig(),
            FinetuneConfig(seed=seed),
            progress=lambda _node, step, total, _loss: update("training", step, total),
        )
    workspace.store.save_graph(workspace.graph)
    step_table = Table(title=f"sequential transfer to {demo_target} (mean Dice over 3 test sets of 10)")
    for column in ("step", "task", "Dice after"):
        step_table.add_column(column, no_wrap=True)
    step_table.add_row("0", f"{metrics['path'][0]} (zoo model, zero-shot)", f"{metrics['zero_shot_dice']:.3f}")
    for i, step in enumerate(metrics["steps"], start=1):
        step_table.add_row(str(i), step["node"], f"{step['dice_after']:.3f}")
    console.print(step_table)
    summary = {
        "benchmark": asdict(bench_config),
        "tasks": len(tasks),
        "targets": targets,
        "selections": selections,
        "transfer": {k: metrics[k] for k in ("target", "path", "zero_shot_dice", "final_dice", "run_dir")},
    }
    write_json(out_dir / "summary.json", summary)
    console.print(f"done: {out_dir / 'summary.json'}, figures in {figures}", markup=False)
    return summary
