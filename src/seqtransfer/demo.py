"""The main job on the embedded benchmark (``seqtransfer demo``, ``make demo``).

The demo is :func:`~seqtransfer.experiment.runner.run_experiment` with :func:`demo_config`, a
scaled-down protocol that fits 10 minutes on 2 CPU cores, followed by the report. Scaled down
means: a benchmark of 3 tumour sites, one target per collection, each
target's 5 nearest sources by w as its source pool, a small DynUNet (8-64 filters at 32^3),
source models trained on 12 cases (12 held out for O) and short trainings without
augmentation (zoo 120 steps, chosen by ``benchmarks/small_structures.md``: at 40 steps the
source models of structures of 0.2 % of the grid learned nothing; fine-tuning 20 steps per path step,
scratch and MTL 40), 2 random landmarks for "w/o LSI" instead of 10. Its numbers show that everything runs end to
end and how the methods compare at this scale; they are not the method's numbers at full
scale (``seqtransfer run`` with the default configuration is).

It ends with the user's job (:func:`demo_adapt`): the benchmark's new hospital
(``Dataset504_NewClinicLike``: 3 labelled cases, 10 unlabelled in ``imagesTs``, its own
channel and label names) is adapted with ``seqtransfer adapt``'s library call on the
protocol's graph and zoo (the target added to a linked copy of draw 0's graph, the same
5-nearest source pool and training scale), and its unlabelled images are segmented. The
held-back ``labelsTs`` give the Dice of those predictions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from seqtransfer.core.progress import Progress, prefixed
from seqtransfer.data.tasks import Task
from seqtransfer.experiment.config import DataConfig, ExperimentConfig, ProtocolConfig, ZooSection
from seqtransfer.experiment.layout import RunLayout
from seqtransfer.experiment.protocol import protocol_targets
from seqtransfer.graph.config import GraphConfig
from seqtransfer.pipeline.config import FinetuneConfig
from seqtransfer.training.config import NetworkConfig

__all__ = ["demo_config", "protocol_targets", "run_demo"]


def demo_config(seed: int = 0) -> ExperimentConfig:
    """The demo's scaled-down protocol (module docstring)."""
    return ExperimentConfig(
        seed=seed,
        data=DataConfig(benchmark=True, benchmark_size=48, benchmark_cases=24, benchmark_tumour_sites=3),
        protocol=ProtocolConfig(
            targets_per_collection=1,
            draws=3,
            random_landmarks=2,
            top_k=3,
            max_sources=5,
            quality_draws=1,
            score_voxels=300,
            scratch_steps=40,
            calibration_trials=20,
        ),
        graph=GraphConfig(size=32, volumes_per_task=10, max_pairs=25, n_components=8, seed=seed),
        network=NetworkConfig(patch_size=(32, 32, 32), filters=(8, 16, 32, 64)),
        zoo=ZooSection(steps=120, max_train=12, augment=False),
        finetune=FinetuneConfig(steps=20, lr=0.01, lambda_ewc=0.25, augment=False, seed=seed),
    )


def _task_table(tasks: list[Task], targets: list[str]) -> Table:
    table = Table(title=f"{len(tasks)} tasks; targets: {', '.join(targets)}")
    for column in ("collection", "sites", "modalities", "objectives", "tasks"):
        table.add_column(column, overflow="fold")
    by_collection: dict[str, list[Task]] = {}
    for t in tasks:
        by_collection.setdefault(t.collection, []).append(t)
    for name, members in sorted(by_collection.items()):
        table.add_row(
            name,
            ", ".join(sorted({t.site for t in members})),
            ", ".join(sorted({t.modality for t in members})),
            ", ".join(sorted({t.objective for t in members})),
            str(len(members)),
        )
    return table


def run_demo(
    out_dir: Path,
    seed: int = 0,
    console: Console | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Run the demo in ``out_dir`` (resumable: a rerun skips what is done) and write the report.

    Returns:
        The paths the report wrote, and the run folder.
    """
    from seqtransfer.core.executor import make_executor
    from seqtransfer.experiment.runner import run_experiment
    from seqtransfer.report import write_report

    console = console or Console()
    config = demo_config(seed)
    n_workers = workers if workers is not None else max(1, min(2, os.cpu_count() or 1))
    executor = make_executor("local", workers=n_workers)
    try:
        ctx = run_experiment(config, out_dir, progress=progress, executor=executor)
    finally:
        executor.close()
    console.print(_task_table(list(ctx.tasks.values()), ctx.targets))
    written = write_report(out_dir)
    summary = written["summary"].read_text()
    start = summary.find("## Table I")
    end = summary.find("## Table II")
    if start >= 0:
        console.print(summary[start : end if end > start else None].strip(), markup=False)
    console.print(f"report: {written['report']}\nsummary: {written['summary']}", markup=False)
    adapted = demo_adapt(out_dir, config, console, progress)
    adapt_report = RunLayout(out_dir).adapt_dir / "report.html"  # the adapt folder's own layout
    return {
        "run_dir": str(out_dir),
        **{k: str(v) for k, v in written.items()},
        "adapt": str(adapt_report),
        "adapt_result": adapted,
    }


#: The demo's new target: the new hospital's oedema on its own T2 channel name.
DEMO_ADAPT_TARGET = ("T2w", "edema")


def demo_adapt(
    run_dir: Path, config: ExperimentConfig, console: Console, progress: Progress | None = None
) -> dict[str, Any]:
    """``seqtransfer adapt`` on the benchmark's new hospital, reusing the protocol's graph and zoo.

    Returns:
        What ``RUN_DIR/adapt/adapt.json`` holds.
    """
    import json

    from seqtransfer.adapt import AdaptConfig, adapt, plan_adapt
    from seqtransfer.benchmark import NEW_TARGET_DATASET, NEW_TARGET_SITE, make_new_target
    from seqtransfer.benchmark.config import NEW_TARGET_LABELLED, NEW_TARGET_UNLABELLED
    from seqtransfer.data.tasks import task_name
    from seqtransfer.experiment.runner import benchmark_config_of, finetune_config_of, zoo_config_of
    from seqtransfer.graph.store import GraphStore

    layout = RunLayout(run_dir)
    bench_dir = layout.benchmark_dir
    marker = json.loads(layout.benchmark_marker.read_text())
    sources = [bench_dir / name for name in marker["datasets"]]
    target_root = bench_dir / NEW_TARGET_DATASET
    if not (target_root / "dataset.json").exists():
        make_new_target(
            bench_dir,
            benchmark_config_of(config),
            labelled=NEW_TARGET_LABELLED,
            unlabelled=NEW_TARGET_UNLABELLED,
            progress=prefixed(progress, "benchmark "),
        )
    target = task_name(NEW_TARGET_SITE, *DEMO_ADAPT_TARGET)
    console.print(
        f"\nYour new target: {target} ({NEW_TARGET_LABELLED} labelled cases, "
        f"{NEW_TARGET_UNLABELLED} unlabelled in {target_root / 'imagesTs'})",
        markup=False,
    )
    out = layout.adapt_dir
    graph = GraphStore(layout.graph_dir(0)).clone(out / "graph")  # the protocol's graph stays as it is
    adapt_config = AdaptConfig(
        zoo=zoo_config_of(config),  # the protocol's: its source models are found, not trained again
        finetune=finetune_config_of(config),
        lam=config.selection.lam,
        max_length=config.selection.max_length,
        c_search=config.selection.c_search,
        max_sources=config.protocol.max_sources,
    )
    plan = plan_adapt(sources, target_root, [target], progress=progress)
    result = adapt(
        plan,
        out,
        adapt_config,
        graph_dir=graph.root,
        cache_dir=layout.cache_dir,
        models_root=layout.models_dir,
        progress=progress,
    )
    record = result["targets"][0]
    console.print(f"landmark: {record['landmark']}\npath: {' -> '.join(record['path'])}", markup=False)
    held = record.get("labelsTs_dice")
    if held:
        mean = "n/a" if held["mean_dice"] is None else f"{held['mean_dice']:.3f}"
        console.print(
            f"predictions: {len(result['predictions']['cases'])} unlabelled case(s); Dice against the held-back "
            f"labelsTs: {mean} (mean of {held['n']})",
            markup=False,
        )
    console.print(f"adapt report: {out / 'report.html'}\npredictions: {out / 'predictions'}", markup=False)
    return result
