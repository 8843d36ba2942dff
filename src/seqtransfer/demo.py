"""The main job on the embedded benchmark (``seqtransfer demo``, ``make demo``).

The demo is :func:`~seqtransfer.experiment.runner.run_experiment` with :func:`demo_config`, a
scaled-down protocol that fits 10 minutes on 2 CPU cores, followed by the report. Scaled down
means: a benchmark of 3 tumour sites, one target per collection, each
target's 5 nearest sources by w as its source pool, a small DynUNet (8-64 filters at 32^3),
source models trained on 12 cases (12 held out for O) and short trainings without
augmentation (zoo 40 steps, fine-tuning 20 steps per path step,
scratch and MTL 40), 2 random landmarks for "w/o LSI" instead of 10. Its numbers show that everything runs end to
end and how the methods compare at this scale; they are not the method's numbers at full
scale (``seqtransfer run`` with the default configuration is).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from seqtransfer.data.tasks import Task
from seqtransfer.experiment.config import DataConfig, ExperimentConfig, FinetuneSection, ProtocolConfig, ZooSection
from seqtransfer.experiment.protocol import protocol_targets
from seqtransfer.graph.config import GraphConfig
from seqtransfer.training.network import NetworkConfig

Progress = Callable[[str, int, int], None]

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
        zoo=ZooSection(steps=40, max_train=12, augment=False),
        finetune=FinetuneSection(steps=20, lr=0.01, lambda_ewc=0.25, augment=False),
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
    from seqtransfer.experiment.executor import make_executor
    from seqtransfer.experiment.runner import run_experiment
    from seqtransfer.report import write_report

    console = console or Console()
    config = demo_config(seed)
    n_workers = workers if workers is not None else max(1, min(2, os.cpu_count() or 1))
    executor = make_executor("local", workers=n_workers)
    try:
        ctx = run_experiment(config, out_dir, log=lambda m: console.print(m, markup=False), progress=progress, executor=executor)
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
    return {"run_dir": str(out_dir), **{k: str(v) for k, v in written.items()}}

