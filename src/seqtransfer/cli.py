"""The ``seqtransfer`` command line: parses, calls the library, prints.

Every error a user can cause (:class:`seqtransfer.core.errors.SeqTransferError`, a bad option)
ends as one line on stderr and exit status 2; no traceback reaches the user for bad input.

Every default is read from the library's configuration dataclasses (:class:`GraphConfig`,
:class:`SelectionConfig`, :class:`ZooConfig`, :class:`FinetuneConfig`), which import neither
torch nor MONAI. The library logs through :mod:`logging` (loggers under ``seqtransfer``) and
reports progress through :mod:`seqtransfer.core.progress`, drawn here as rich bars on stderr;
``--verbose`` shows its debug and info messages, ``--quiet`` only its errors; by default its
warnings and the stage runners' info lines (:data:`NARRATORS`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from seqtransfer.adapt.config import AdaptConfig
from seqtransfer.benchmark.config import NEW_TARGET_LABELLED, NEW_TARGET_UNLABELLED, BenchmarkConfig
from seqtransfer.core.errors import ConfigError, DatasetError, SeqTransferError, WorkerLost
from seqtransfer.core.progress import Progress, ProgressEvent
from seqtransfer.graph.config import GraphConfig
from seqtransfer.pipeline.config import FinetuneConfig, ZooConfig
from seqtransfer.selection.config import SelectionConfig
from seqtransfer.selection.landmark import MIN_LEARNED_DICE
from seqtransfer.training.config import NetworkConfig

try:  # typer >= 0.2x vendors click; older typer depends on it
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

app = typer.Typer(
    name="seqtransfer",
    help="Graph-guided sequential transfer for medical image segmentation.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
benchmark_app = typer.Typer(help="The embedded synthetic benchmark.", no_args_is_help=True)
app.add_typer(benchmark_app, name="benchmark")
graph_app = typer.Typer(help="The source graph: build it, add targets, draw it.", no_args_is_help=True)
app.add_typer(graph_app, name="graph")
zoo_app = typer.Typer(help="The source model zoo.", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")
export_app = typer.Typer(help="A selected path for other tools: nnU-Net v2.", no_args_is_help=True)
app.add_typer(export_app, name="export")

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)

#: the library's defaults, the one truth of every option's default below
GRAPH = GraphConfig()
SELECTION = SelectionConfig()
ZOO = ZooConfig()
BENCHMARK = BenchmarkConfig()
ADAPT = AdaptConfig()
FINETUNE = FinetuneConfig()
NETWORK = NetworkConfig()


class _LogHandler(logging.Handler):
    """Log records on stderr: through rich on a terminal (so they do not break the progress
    bars), else as plain lines ("message" for info, "warning: message" above) that a log file
    keeps whole, without rich's wrapping at 80 columns."""

    def __init__(self) -> None:
        super().__init__()
        self._rich = RichHandler(console=err, show_time=False, show_path=False, markup=False, rich_tracebacks=False)

    def emit(self, record: logging.LogRecord) -> None:
        if err.is_terminal:
            self._rich.emit(record)
            return
        message = record.getMessage()
        if record.levelno != logging.INFO:
            message = f"{record.levelname.lower()}: {message}"
        try:
            sys.stderr.write(message + "\n")
        except (OSError, ValueError):  # a closed or broken stderr: nothing to tell
            pass


_LOG_HANDLER = _LogHandler()

#: the loggers of the stage runners, whose info lines ("graphs: 3 draw(s), ...", "zoo: 13 source
#: model(s) ...", "... skipped (...)") say what a long command is doing: shown by default
NARRATORS = ("seqtransfer.experiment.runner", "seqtransfer.adapt.run")


def configure_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Show the library's log records on stderr: debug and up with ``verbose``, errors only
    with ``quiet``, warnings and errors otherwise, and the info lines of the stage runners
    (:data:`NARRATORS`) too.

    The rest of the library's info lines (a training resuming, a zoo model started) are too
    many for a long run and wait for ``--verbose``. Worker processes (the process pool, Ray)
    configure no logging: only their warnings reach stderr, through Python's last-resort handler.
    """
    if verbose and quiet:
        raise ConfigError("--verbose and --quiet exclude each other")
    logger = logging.getLogger("seqtransfer")
    logger.setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING)
    for name in NARRATORS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO)
    if _LOG_HANDLER not in logger.handlers:
        logger.addHandler(_LOG_HANDLER)


def _print_version(value: bool) -> None:
    """``--version``: the installed package's version (from its metadata), then exit."""
    if value:
        from seqtransfer import __version__

        out.print(__version__, markup=False)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Show the library's debug and info messages (e.g. a training resuming)."),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Show only errors, no warnings or info.")] = False,
) -> None:
    """Graph-guided sequential transfer for medical image segmentation."""
    configure_logging(verbose, quiet)


def _progress(*extra: TextColumn, transient: bool = True) -> RichProgress:
    """The rich progress display of every command (on stderr, off when it is not a terminal)."""
    return RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra,
        TimeElapsedColumn(),
        console=err,
        transient=transient,
        disable=not err.is_terminal,
    )


@contextlib.contextmanager
def progress_bar(description: str) -> Iterator[Progress]:
    """One rich progress bar named ``description``; yields the library's progress callback
    (every event moves the same bar, whatever its stage)."""
    with _progress() as progress:
        task_id = progress.add_task(description, total=None)

        def update(event: ProgressEvent) -> None:
            progress.update(task_id, completed=event.done, total=event.total)

        yield update


DatasetDirs = Annotated[list[Path], typer.Argument(help="nnU-Net v2 raw dataset folders.", show_default=False)]


@app.command()
def verify(datasets: DatasetDirs) -> None:
    """Check datasets like nnU-Net's verify_dataset_integrity, and more.

    Prints one line per problem, naming the file. Exit 0 when clean, 2 on errors.
    """
    from seqtransfer.data.verify import verify_datasets

    with progress_bar("verifying") as update:
        problems = verify_datasets(datasets, update)
    for problem in problems:
        (err if problem.severity == "error" else out).print(str(problem), markup=False)
    n_err = sum(p.severity == "error" for p in problems)
    n_warn = len(problems) - n_err
    if n_err:
        out.print(f"{n_err} error(s), {n_warn} warning(s) in {len(datasets)} dataset(s)", markup=False)
        raise typer.Exit(2)
    out.print(f"ok: {len(datasets)} dataset(s) verified, {n_warn} warning(s)", markup=False)


def _load_tasks(
    datasets: list[Path], groups: Path | None, modalities: Path | None = None
) -> tuple[list[Any], Path | None]:
    """The datasets' tasks (:func:`~seqtransfer.data.verify.verified_tasks`), warnings printed."""
    from seqtransfer.data.verify import verified_tasks

    with progress_bar("verifying") as update:
        found = verified_tasks(datasets, groups, modalities, update)
    for warning in found.warnings:
        err.print(str(warning), markup=False)
    return found.tasks, found.groups_file


Modalities = Annotated[
    Path | None,
    typer.Option(
        help='Modality alias map (JSON {channel name: modality}, e.g. {"T2w": "T2"}); default: modality_aliases.json '
        "beside the datasets."
    ),
]


@app.command()
def tasks(
    datasets: DatasetDirs,
    groups: Annotated[Path | None, typer.Option(help="Objective-group map (JSON {objective: group}).")] = None,
    modalities: Modalities = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the binary tasks site-modality-objective of datasets."""
    task_list, groups_path = _load_tasks(datasets, groups, modalities)
    if as_json:
        rows = [
            {
                "task": t.name,
                "site": t.site,
                "modality": t.modality,
                "objective": t.objective,
                "group": t.group,
                "dataset": t.dataset.name,
                "cases": t.n_cases,
            }
            for t in task_list
        ]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title=f"{len(task_list)} tasks" + (f" (groups: {groups_path})" if groups_path else ""))
    for column in ("task", "site", "modality", "objective", "group", "cases"):
        table.add_column(column, justify="right" if column == "cases" else "left", no_wrap=True)
    for t in task_list:
        table.add_row(t.name, t.site, t.modality, t.objective, t.group, str(t.n_cases))
    out.print(table)


@benchmark_app.command("make")
def benchmark_make(
    out_dir: Annotated[Path, typer.Option("--out", file_okay=False, help="Folder to write the datasets into.")],
    seed: Annotated[int, typer.Option(help="Random seed.")] = BENCHMARK.seed,
    size: Annotated[int, typer.Option(help="Edge length in voxels of the isotropic volumes.")] = BENCHMARK.size,
    cases: Annotated[int, typer.Option(help="Cases per site.")] = BENCHMARK.cases,
    sites: Annotated[int, typer.Option(help="Sites of the tumour collection.")] = BENCHMARK.tumour_sites,
    new_target: Annotated[
        bool,
        typer.Option(
            "--new-target/--no-new-target", help="Also write Dataset504_NewClinicLike, a new hospital with few labels."
        ),
    ] = True,
    new_target_labelled: Annotated[
        int, typer.Option(min=1, help="Labelled cases (imagesTr) of the new hospital.")
    ] = NEW_TARGET_LABELLED,
    new_target_unlabelled: Annotated[
        int, typer.Option(min=0, help="Unlabelled cases (imagesTs) of the new hospital.")
    ] = NEW_TARGET_UNLABELLED,
    deep_grey: Annotated[
        bool,
        typer.Option(
            "--deep-grey",
            help="Also write Dataset505_DeepGreyLike (hippocampus, thalamus and other deep-grey nuclei; T1, T2).",
        ),
    ] = BENCHMARK.deep_grey,
) -> None:
    """Write the embedded benchmark: synthetic nnU-Net raw datasets from MNI152 + AAL.

    Three source collections (four with --deep-grey), then (unless --no-new-target) a new
    hospital's dataset with few labelled cases, unlabelled cases in imagesTs and their
    held-back labels in labelsTs.
    """
    from seqtransfer.benchmark import BenchmarkConfig, make_benchmark, make_new_target

    config = BenchmarkConfig(seed=seed, size=size, cases=cases, tumour_sites=sites, deep_grey=deep_grey)
    with progress_bar("generating") as update:
        roots = make_benchmark(out_dir, config, update)
        if new_target:
            roots.append(make_new_target(out_dir, config, new_target_labelled, new_target_unlabelled, update))
    for root in roots:
        out.print(str(root), markup=False)


@graph_app.command("build")
def graph_build(
    datasets: DatasetDirs,
    out_dir: Annotated[Path, typer.Option("--out", file_okay=False, help="Graph folder to write.")],
    target: Annotated[
        list[str] | None, typer.Option("--target", help="Target task (repeatable); every other task is a source.")
    ] = None,
    size: Annotated[int, typer.Option(help="Edge of the common grid volumes are resampled to.")] = GRAPH.size,
    volumes: Annotated[int, typer.Option(help="Volumes sampled per source task.")] = GRAPH.volumes_per_task,
    max_pairs: Annotated[int, typer.Option(help="Volume pairs per task pair before subsampling.")] = GRAPH.max_pairs,
    mode: Annotated[
        str, typer.Option(help="paper (shared PCA, exact W1, Gaussian SSIM) or official (published code).")
    ] = GRAPH.mode,
    add: Annotated[
        bool, typer.Option("--add", help="Add the --target tasks to an existing graph (only their edges are computed).")
    ] = False,
    groups: Annotated[Path | None, typer.Option(help="Objective-group map (JSON {objective: group}).")] = None,
    modalities: Modalities = None,
    seed: Annotated[int, typer.Option(help="Seed of every sampling step.")] = GRAPH.seed,
    executor: Annotated[str, typer.Option(help="Where the feature and pair shards run: local or ray.")] = "local",
    workers: Annotated[int, typer.Option(min=1, help="Local worker processes (1: in this process).")] = 1,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (ray executor; default: local cluster).")
    ] = None,
) -> None:
    """Build the source graph of datasets' tasks (or add targets to one with --add)."""
    from seqtransfer.core.executor import make_executor
    from seqtransfer.graph.service import build_graph_folder

    targets = list(target or [])
    if add and not targets:
        raise ConfigError("--add needs at least one --target")
    config = (
        None if add else GraphConfig(size=size, volumes_per_task=volumes, max_pairs=max_pairs, mode=mode, seed=seed)
    )
    task_list, _ = _load_tasks(datasets, groups, modalities)
    pool = make_executor(executor, workers=workers, address=address)
    try:
        with progress_bar("graph") as update:
            graph = build_graph_folder(
                task_list, out_dir, config, targets=targets, add=add, progress=update, executor=pool
            )
    finally:
        pool.close()
    n_src = sum(d["role"] == "source" for _, d in graph.nodes(data=True))
    out.print(
        f"graph: {n_src} sources, {graph.number_of_nodes() - n_src} targets, {graph.number_of_edges()} edges -> "
        f"{out_dir / 'graph.json'}",
        markup=False,
    )


@graph_app.command("show")
def graph_show(
    graph_dir: Annotated[Path, typer.Argument(help="Graph folder.")],
    target: Annotated[str | None, typer.Option(help="Highlight this target with its stored selection.")] = None,
) -> None:
    """Draw the graph (with landmark and path when --target has a selection) and the heatmap."""
    from seqtransfer.graph import GraphStore
    from seqtransfer.graph.figures import plot_graph, plot_heatmap
    from seqtransfer.selection.run import stored_selection

    graph, _, _, _ = GraphStore(graph_dir).load()
    landmark, path = None, None
    if target is not None:
        if target not in graph:
            raise ConfigError(f"target {target!r} is not in the graph {graph_dir}")
        selection = stored_selection(graph_dir, target)
        if selection is not None:
            landmark, path = selection.landmark, selection.path
    figures = graph_dir / "figures"
    name = f"graph_{target}.png" if target else "graph.png"
    written = [
        plot_graph(graph, figures / name, target=target, landmark=landmark, transfer_path=path),
        plot_heatmap(graph, figures / "affinity_heatmap.png"),
    ]
    for path_written in written:
        out.print(str(path_written), markup=False)


def _check_score(score: str, extra: tuple[str, ...] = ()) -> None:
    from seqtransfer.selection.landmark import SCORES

    if score not in (*extra, *SCORES):
        raise ConfigError(f"--score must be one of {', '.join((*extra, *SCORES))}, got {score!r}")


@app.command("select")
def select_cmd(
    graph_dir: Annotated[Path, typer.Option("--graph", help="Graph folder.")],
    target: Annotated[str, typer.Option(help="Target task.")],
    lam: Annotated[float, typer.Option("--lambda", help="Trade-off lambda of eq. 8, in [0, 1].")] = SELECTION.lam,
    max_length: Annotated[int, typer.Option(help="Most transfer steps.")] = SELECTION.max_length,
    c_search: Annotated[float, typer.Option(help="Cost of one more step, in units of w.")] = SELECTION.c_search,
    w_c: Annotated[float | None, typer.Option(help="Density threshold (default: median source edge weight).")] = None,
    performance: Annotated[Path | None, typer.Option(help="O per source: CSV task,dice or JSON.")] = None,
    uniform_performance: Annotated[bool, typer.Option(help="Use O = 1 for sources without a measured Dice.")] = False,
    top: Annotated[int, typer.Option(help="Landmark scores shown.")] = 5,
    min_source_dice: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="Held-out Dice below which a source model learned nothing (never a landmark)."
        ),
    ] = MIN_LEARNED_DICE,
    score: Annotated[
        str,
        typer.Option(
            help="Landmark score: leep (eq. 7 with O replaced by exp(LEEP) of each zoo model on the target's "
            "affinity cases; needs the zoo), "
            "paper (eq. 7), or auto (leep when every connected source has its zoo model, else paper)."
        ),
    ] = "auto",
    preset: Preset = NETWORK.preset,
    spacing: Spacing = "auto",
) -> None:
    """Choose the landmark source and the optimal transfer path for a target."""
    from seqtransfer.selection.run import load_performance, resolve_score, select_for_target

    _check_score(score, ("auto",))
    perf = load_performance(performance) if performance else None
    score = resolve_score(graph_dir, target, score, other_performance=perf is not None or uniform_performance)
    transferability = None
    if score == "leep":
        from seqtransfer.adapt.run import target_transferability

        transferability = target_transferability(graph_dir, target, preset, spacing)
    selection = select_for_target(
        graph_dir,
        target,
        lam=lam,
        max_length=max_length,
        c_search=c_search,
        w_c=w_c,
        performance=perf,
        performance_label=str(performance) if performance else None,
        uniform_performance=uniform_performance,
        min_dice=min_source_dice,
        transferability=transferability,
    )
    title = f"landmark scores for {target} (O from {selection.performance_source}" + (
        "; score leep: gamma = rho * T, T = exp(LEEP))" if score == "leep" else ")"
    )
    table = Table(title=title)
    numbers = ("w", "zeta", "rho", "O", *(("T",) if score == "leep" else ()), "score")
    for column in ("source", *numbers, "note"):
        table.add_column(column, justify="left" if column in ("source", "note") else "right", no_wrap=True)
    candidates = [r for r in selection.landmark_scores if not r.get("excluded")]
    excluded = [r for r in selection.landmark_scores if r.get("excluded")]
    for row in candidates[:top] + excluded:
        table.add_row(row["source"], *(f"{row[k]:.4g}" for k in numbers), row.get("excluded") or "")
    out.print(table)
    if excluded:
        out.print(
            f"left out: {len(excluded)} source model(s) that learned nothing (held-out Dice < {min_source_dice:g})",
            markup=False,
        )
    out.print(f"landmark: {selection.landmark}", markup=False)
    out.print(
        f"path: {' -> '.join(selection.path)}  (steps {len(selection.path) - 1}, objective {selection.objective:.4f})",
        markup=False,
    )
    out.print(f"saved: {graph_dir / 'selections' / (target + '.json')}", markup=False)


@app.command()
def calibrate(
    graph_dir: Annotated[Path, typer.Option("--graph", help="Graph folder.")],
    transfers: Annotated[Path, typer.Option(help="CSV source,target,dice of really trained transfers.")],
    trials: Annotated[int, typer.Option(help="Bayesian-optimisation trials.")] = 50,
    seed: Annotated[int, typer.Option(help="Sampler seed.")] = 0,
    objective: Annotated[
        str,
        typer.Option(
            help="within: mean within-target Kendall tau (targets with 3+ transfers); pooled: one tau over all pairs."
        ),
    ] = "within",
) -> None:
    """Choose alpha and beta of eq. 5 by Bayesian optimisation on measured transfers."""
    from seqtransfer.graph.calibrate import read_transfers
    from seqtransfer.graph.service import calibrate_graph

    result = calibrate_graph(graph_dir, read_transfers(transfers), n_trials=trials, seed=seed, objective=objective)
    out.print(f"transfers used: {result.n_pairs} (skipped, no edge: {result.skipped})", markup=False)
    out.print(f"Kendall tau ({objective}): {result.tau_before:.3f} -> {result.tau_after:.3f}", markup=False)
    out.print(f"Pearson r:   {result.pearson_before:.3f} -> {result.pearson_after:.3f}", markup=False)
    out.print(
        f"alpha = {result.alpha:.4f}, beta = {result.beta:.4f} written to {graph_dir / 'params.json'}", markup=False
    )


def _zoo_config(
    preset: str, steps: int, max_train: int, seed: int, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> ZooConfig:
    """The zoo configuration of the options (every other setting ZooConfig's default)."""
    return ZOO.with_recipe(
        network=NetworkConfig(preset=preset, spacing=spacing), steps=steps, max_train=max_train, seed=seed
    )


@contextlib.contextmanager
def _training_progress() -> Iterator[Progress]:
    """One bar per trained node (the events' stage), with the last step's loss."""
    with _progress(TextColumn("loss {task.fields[loss]:.4f}")) as progress:
        bars: dict[str, Any] = {}

        def update(event: ProgressEvent) -> None:
            if event.stage not in bars:
                bars[event.stage] = progress.add_task(f"training {event.stage}", total=event.total, loss=float("nan"))
            loss = float("nan") if event.loss is None else event.loss
            progress.update(bars[event.stage], completed=event.done, total=event.total, loss=loss)

        yield update


Preset = Annotated[str, typer.Option(help="Network preset: cpu (small, 32^3) or nnunet (GPU, 128^3).")]
Spacing = Annotated[
    str,
    typer.Option(
        help="Training grid: cube (each case resampled to one patch), median (nnU-Net's median spacing, "
        "patches from full-size volumes), mm as X or X,Y,Z, or auto (cube for cpu, median for nnunet)."
    ),
]


@zoo_app.command("train")
def zoo_train(
    graph_dir: Annotated[Path, typer.Option("--graph", help="Graph folder.")],
    tasks: Annotated[str | None, typer.Option(help="Comma-separated source tasks (default: every source).")] = None,
    preset: Preset = NETWORK.preset,
    steps: Annotated[int, typer.Option(help="Training steps per source model.")] = ZOO.train.steps,
    max_train: Annotated[int, typer.Option(help="Most training cases per source.")] = ZOO.max_train,
    seed: Annotated[int, typer.Option(help="Seed of splits and training.")] = ZOO.seed,
    spacing: Spacing = "auto",
) -> None:
    """Train one model per source task; its held-out Dice becomes the node's O."""
    from seqtransfer.pipeline.workspace import open_training_workspace
    from seqtransfer.pipeline.zoo import train_zoo

    workspace, grid_spacing = open_training_workspace(graph_dir, preset, spacing)
    config = _zoo_config(preset, steps, max_train, seed, grid_spacing)
    names = (
        [n.strip() for n in tasks.split(",")]
        if tasks
        else sorted(n for n, d in workspace.graph.nodes(data=True) if d["role"] == "source")
    )
    for name in names:
        workspace.task(name)
        if workspace.graph.nodes[name].get("role") != "source":
            raise ConfigError(f"{name}: not a source of the graph (targets get no zoo model)")
    with _training_progress() as update:
        models = train_zoo(workspace, names, config, progress=update)
    from seqtransfer.selection.landmark import MIN_LEARNED_DICE, learned

    table = Table(title=f"zoo: {len(models)} source model(s)")
    for column in ("source", "held-out Dice (O)", "train cases", "folder"):
        table.add_column(column, overflow="fold")
    for m in models:
        table.add_row(
            m.task,
            f"{m.dice:.3f}" + ("" if learned(m.dice) else "  (did not learn)"),
            str(len(m.train_cases)),
            str(m.folder),
        )
    out.print(table)
    failed = [m for m in models if not learned(m.dice)]
    for m in failed:
        err.print(
            f"warning: {m.task}: the source model learned nothing (held-out Dice {m.dice:.3f} < {MIN_LEARNED_DICE}); "
            "it will never be a landmark",
            markup=False,
        )


zoo_import_app = typer.Typer(help="Import models trained elsewhere into the zoo.", no_args_is_help=True)
zoo_app.add_typer(zoo_import_app, name="import")


@zoo_import_app.command("nnunet")
def zoo_import_nnunet(
    results_dir: Annotated[
        Path,
        typer.Argument(
            metavar="RESULTS_DIR",
            help="nnU-Net's results folder (DatasetXXX_Name/TRAINER__PLANS__3d_fullres/fold_F), one dataset's "
            "folder in it, or one trainer folder.",
            show_default=False,
        ),
    ],
    graph_dir: Annotated[Path, typer.Option("--graph", help="Graph folder.")],
    fold: Annotated[
        str | None, typer.Option(help="Fold to import: all or a number (default: all when trained, else the lowest).")
    ] = None,
    trainer: Annotated[
        str | None, typer.Option(help="Only models of this nnU-Net trainer (e.g. nnUNetTrainer).")
    ] = None,
    plans: Annotated[str | None, typer.Option(help="Only models of these plans (e.g. nnUNetPlans).")] = None,
) -> None:
    """Make trained nnU-Net v2 3d_fullres models the zoo models of the graph's source tasks.

    A model goes to every source task whose dataset folder has the nnU-Net dataset's name;
    its O is nnU-Net's validation Dice of the fold. Importing again changes nothing.
    """
    from seqtransfer.nnunet.importer import import_nnunet
    from seqtransfer.nnunet.results import parse_fold

    report = import_nnunet(results_dir, graph_dir, fold=parse_fold(fold), trainer=trainer, plans=plans)
    table = Table(title=f"zoo: {len(report.imported)} source model(s) imported from nnU-Net")
    for column in ("source task", "nnU-Net model", "O", "note"):
        table.add_column(column, overflow="fold")
    for row in report.imported:
        note = row.note if row.created else f"already imported; {row.note}"
        table.add_row(row.task, row.source, f"{row.dice:.3f}", note)
    out.print(table)
    for skipped in report.not_imported:
        out.print(f"not imported: {skipped}", markup=False)
    from seqtransfer.selection.landmark import MIN_LEARNED_DICE, learned

    for row in report.imported:
        if not learned(row.dice):
            err.print(
                f"warning: {row.task}: the imported model's O ({row.dice:.3f}) is below {MIN_LEARNED_DICE}: it "
                "learned nothing and will never be a landmark",
                markup=False,
            )


@app.command()
def transfer(
    graph_dir: Annotated[Path, typer.Option("--graph", help="Graph folder.")],
    target: Annotated[str, typer.Option(help="Target task.")],
    path: Annotated[
        str | None, typer.Option(help="Comma-separated path landmark,...,target (default: the stored selection).")
    ] = None,
    draw: Annotated[int, typer.Option(help="Which seeded draw of the target's training cases.")] = FINETUNE.draw,
    preset: Preset = NETWORK.preset,
    zoo_steps: Annotated[
        int, typer.Option(help="Training steps of the landmark's zoo model, when the graph records none (`zoo train`).")
    ] = ZOO.train.steps,
    steps: Annotated[int, typer.Option(help="Fine-tuning steps per path step.")] = FINETUNE.steps,
    lr: Annotated[float, typer.Option(help="Fine-tuning learning rate.")] = FINETUNE.lr,
    lambda_ewc: Annotated[float, typer.Option(help="EWC strength (mean-1 Fisher).")] = FINETUNE.lambda_ewc,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted step from its checkpoint.")] = True,
    seed: Annotated[int, typer.Option(help="Seed.")] = FINETUNE.seed,
    spacing: Spacing = "auto",
    all_cases: Annotated[
        bool,
        typer.Option(
            help="Train the target step on every labelled case (no test sets); automatic for a target too small for "
            "the protocol's draws."
        ),
    ] = False,
) -> None:
    """Fine-tune along the path (frozen encoder, EWC), scoring the target after every step."""
    from seqtransfer.data.splits import protocol_split_possible
    from seqtransfer.pipeline.transfer import run_transfer
    from seqtransfer.pipeline.workspace import open_training_workspace
    from seqtransfer.pipeline.zoo import landmark_zoo_model
    from seqtransfer.selection.run import stored_selection

    finetune = FinetuneConfig(steps=steps, lr=lr, lambda_ewc=lambda_ewc, draw=draw, seed=seed)  # bad values fail first
    workspace, grid_spacing = open_training_workspace(graph_dir, preset, spacing)
    target_task = workspace.task(target)  # an unknown target is named as such, before looking for its selection
    target_cases = None
    if all_cases or not protocol_split_possible(target_task.n_cases, n_train=finetune.n_train):
        target_cases = [c.case_id for c in target_task.cases]
        out.print(
            f"{target}: training on all {len(target_cases)} labelled case(s); no test sets, nothing is scored",
            markup=False,
        )
    else:
        graph_seed = workspace.store.params().get("config", {}).get("seed", seed)
        if graph_seed != seed:  # another seed would draw other training cases and test sets than the graph saw
            raise ConfigError(
                f"the graph in {graph_dir} drew {target}'s cases with seed {graph_seed}; transfer with --seed "
                f"{graph_seed} (one split per target)"
            )
    if path:
        nodes = [n.strip() for n in path.split(",") if n.strip()]
    else:
        selection = stored_selection(graph_dir, target)
        if selection is None:
            where = workspace.store.selection_path(target)
            raise ConfigError(f"{where}: no stored selection for {target!r}; run `seqtransfer select` or pass --path")
        nodes = list(selection.path)
    zoo = _zoo_config(preset, zoo_steps, ZOO.max_train, seed, grid_spacing)
    landmark = None
    if nodes:  # the model `zoo train` made, with the settings it was made with: never a second one
        landmark, zoo = landmark_zoo_model(workspace, nodes[0], zoo)
    if landmark is not None:
        out.print(f"landmark model: {nodes[0]}'s zoo model {landmark.key} (recorded in the graph)", markup=False)
    with _training_progress() as update:
        metrics = run_transfer(
            workspace,
            target,
            nodes,
            zoo,
            finetune,
            resume=resume,
            progress=update,
            target_cases=target_cases,
            landmark=landmark,
        )

    def dice(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    title = (
        f"transfer to {target} (draw {draw}): mean Dice over 3 test sets"
        if target_cases is None
        else f"transfer to {target} ({len(target_cases)} labelled case(s), no test sets)"
    )
    table = Table(title=title)
    for column in ("step", "task", "Dice before", "Dice after", "cached"):
        table.add_column(column, no_wrap=True)
    table.add_row("0", f"{nodes[0]} (zoo)", "", dice(metrics.zero_shot_dice), "")
    for i, step in enumerate(metrics.steps, start=1):
        table.add_row(str(i), step.node, dice(step.dice_before), dice(step.dice_after), "yes" if step.cached else "")
    out.print(table)
    out.print(f"metrics: {Path(metrics.run_dir) / 'metrics.json'}", markup=False)


@export_app.command("nnunet")
def export_nnunet_cmd(
    graph_dir: Annotated[Path, typer.Option("--graph", help="Graph folder.")],
    target: Annotated[str, typer.Option(help="Target task.")],
    out_dir: Annotated[
        Path, typer.Option("--out", file_okay=False, help="New folder: nnUNet_raw/, run_nnunet.sh, export.json.")
    ],
    path: Annotated[
        str | None, typer.Option(help="Comma-separated path landmark,...,target (default: the stored selection).")
    ] = None,
    inputs: Annotated[
        list[Path] | None,
        typer.Option("--input", help="The target's images to predict, nnU-Net-named (default: its imagesTs/)."),
    ] = None,
    first_id: Annotated[
        int,
        typer.Option(min=1, help="Smallest nnU-Net dataset id; ids in $nnUNet_raw/_preprocessed/_results are skipped."),
    ] = 500,
    seed: Annotated[int, typer.Option(help="Seed of the intermediate steps' cases (as `transfer`).")] = FINETUNE.seed,
) -> None:
    """Write the path as nnU-Net v2 datasets and a script that trains it with nnU-Net itself."""
    from seqtransfer.nnunet.export import export_nnunet, plan_export

    nodes = [n.strip() for n in path.split(",") if n.strip()] if path else None
    plan = plan_export(
        graph_dir,
        target,
        path=nodes,
        unlabelled_inputs=inputs,
        first_id=first_id,
        finetune=FinetuneConfig(seed=seed),
    )
    with progress_bar("writing the datasets") as update:
        script = export_nnunet(plan, out_dir, progress=update)
    table = Table(title=f"nnU-Net export of the path to {target}")
    for column in ("step", "role", "task", "nnU-Net id", "cases", "to predict"):
        table.add_column(column, overflow="fold")
    for step in plan.steps:
        table.add_row(
            str(step.index),
            step.role,
            step.task,
            f"{step.dataset_id:03d}",
            str(len(step.cases)),
            str(len(step.unlabelled)),
        )
    out.print(table)
    out.print(f"datasets: {out_dir / 'nnUNet_raw'}", markup=False)
    out.print(f"landmark cases: {plan.landmark_cases_from}", markup=False)
    out.print(f"run it with nnU-Net v2 installed: {script}  (its header: TRAINER, FOLD, DEVICE)", markup=False)


@app.command()
def predict(
    model: Annotated[Path, typer.Option(help="A model folder (zoo or fine-tuning step) or a transfer run folder.")],
    inputs: Annotated[list[Path], typer.Option("--input", help="NIfTI files or folders of them (repeatable).")],
    out_dir: Annotated[Path, typer.Option("--out", file_okay=False, help="Folder for the predicted labels.")],
) -> None:
    """Segment images with a trained model; labels keep each input's affine."""
    from seqtransfer.pipeline.predict import predict_files

    written = predict_files(model, inputs, out_dir)
    out.print(f"{len(written)} prediction(s) written to {out_dir}", markup=False)


@app.command("run")
def run_command(
    config_file: Annotated[
        Path, typer.Argument(metavar="CONFIG", help="Experiment TOML (see seqtransfer.experiment.config).")
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", file_okay=False, help="Run folder (its store makes a rerun skip finished work).")
    ] = Path("run"),
    executor: Annotated[str, typer.Option(help="Where independent runs go: local (process pool) or ray.")] = "local",
    workers: Annotated[
        int | None, typer.Option(min=1, help="Local worker processes (default: one per core; 1: no pool).")
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (ray executor; default: local cluster).")
    ] = None,
    gpus_per_training: Annotated[
        float,
        typer.Option(
            help="GPUs one training asks Ray for where the cluster has GPUs (ray executor; 0.5: two share one GPU)."
        ),
    ] = 1.0,
    storage: Annotated[
        str | None,
        typer.Option(
            help="A folder every Ray node mounts, for the tasks' copy of the run's files (ray executor; "
            "default: each node's temporary folder, files sent through Ray)."
        ),
    ] = None,
) -> None:
    """Run the protocol of an experiment file: graphs, zoo, every method, every draw."""
    from seqtransfer.core.executor import make_executor
    from seqtransfer.experiment.config import load_config
    from seqtransfer.experiment.runner import run_experiment
    from seqtransfer.report import write_report

    config = load_config(config_file)
    pool = make_executor(
        executor, workers=workers, address=address, gpus_per_training=gpus_per_training, storage=storage
    )
    try:
        with _staged_bars() as update:
            run_experiment(config, out_dir, progress=update, executor=pool)
    finally:
        pool.close()
    written = write_report(out_dir)
    out.print(f"report: {written['report']} (summary: {written['summary']})", markup=False)


@app.command("report")
def report_command(
    run_dir: Annotated[
        Path, typer.Argument(metavar="RUN_DIR", help="A run folder of `seqtransfer run` or `seqtransfer demo`.")
    ],
) -> None:
    """Write summary.md, report.html, CSV tables and figures of a run folder."""
    from seqtransfer.report import write_report

    written = write_report(run_dir)
    out.print(f"report: {written['report']} (summary: {written['summary']})", markup=False)


@contextlib.contextmanager
def _staged_bars() -> Iterator[Progress]:
    """One progress bar per stage name of the events."""
    with _progress(transient=False) as progress:
        bars: dict[str, Any] = {}

        def update(event: ProgressEvent) -> None:
            if event.stage not in bars:
                bars[event.stage] = progress.add_task(event.stage, total=event.total)
            progress.update(bars[event.stage], completed=event.done, total=event.total)

        yield update


@app.command()
def adapt(
    datasets: Annotated[
        list[Path],
        typer.Argument(
            metavar="SOURCE_DATASET... TARGET_DATASET",
            help="Source nnU-Net raw datasets, then the target dataset (last).",
            show_default=False,
        ),
    ],
    target: Annotated[
        list[str],
        typer.Option(
            "--target", help="Target task of the target dataset (repeatable), or 'all' (every label of --modality)."
        ),
    ],
    out_dir: Annotated[
        Path,
        typer.Option("--out", file_okay=False, help="Output folder: predictions/, adapt.json, report.html, graph/."),
    ],
    graph: Annotated[
        Path | None,
        typer.Option("--graph", help="An existing graph of these sources (its zoo is reused; the targets are added)."),
    ] = None,
    inputs: Annotated[
        list[Path] | None,
        typer.Option("--input", help="Images to segment, nnU-Net-named (default: the target dataset's imagesTs/)."),
    ] = None,
    modality: Annotated[
        str | None, typer.Option(help="Channel of --target all (needed when the target dataset has several).")
    ] = None,
    preset: Preset = NETWORK.preset,
    zoo_steps: Annotated[
        int, typer.Option(min=1, help="Training steps of a source model the graph lacks.")
    ] = ZOO.train.steps,
    steps: Annotated[int, typer.Option(min=1, help="Fine-tuning steps per path step.")] = FINETUNE.steps,
    lr: Annotated[float, typer.Option(help="Fine-tuning learning rate.")] = FINETUNE.lr,
    lambda_ewc: Annotated[float, typer.Option(help="EWC strength (mean-1 Fisher).")] = FINETUNE.lambda_ewc,
    estimate: Annotated[
        bool, typer.Option(help="Leave-one-out Dice estimate on the labelled cases (n more trainings; 2+ cases).")
    ] = ADAPT.estimate,
    max_sources: Annotated[
        int,
        typer.Option(
            min=0,
            help="0: every connected source competes; N: only the target's N nearest by w (fewer source models to "
            "train).",
        ),
    ] = ADAPT.max_sources,
    size: Annotated[int, typer.Option(help="Grid edge of the affinity (a new graph only).")] = GRAPH.size,
    volumes: Annotated[
        int, typer.Option(help="Volumes per source task in the affinity (a new graph only).")
    ] = GRAPH.volumes_per_task,
    groups: Annotated[
        Path | None,
        typer.Option(
            help="Objective-group map (JSON {objective: group}); default: objective_groups.json beside the datasets."
        ),
    ] = None,
    modalities: Modalities = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    spacing: Spacing = "auto",
    workers: Annotated[
        int,
        typer.Option(
            min=1, help="Local worker processes for the graph and missing source models (1: in this process)."
        ),
    ] = 1,
    score: Annotated[
        str,
        typer.Option(
            help="Landmark score: leep (eq. 7 with O replaced by exp(LEEP) of each source model on the labelled "
            "cases; chose better in the selection study) or paper (eq. 7)."
        ),
    ] = ADAPT.score,
) -> None:
    """From source datasets and a target with a few labels to a trained model and predictions.

    verify -> graph (new, or --graph with the targets added) -> source models the landmark
    score needs -> landmark and path -> fine-tuning on every labelled case -> predictions of
    every unlabelled image (OUT/predictions/CASE.nii.gz) -> adapt.json and report.html.
    """
    from seqtransfer.adapt import adapt as run_adapt
    from seqtransfer.adapt import plan_adapt
    from seqtransfer.core.atomic import prepare_output_folder, removed_on_failure
    from seqtransfer.core.executor import make_executor
    from seqtransfer.pipeline.workspace import parse_spacing

    if len(datasets) < 2:
        raise ConfigError("give at least one source dataset and the target dataset (last)")
    _check_score(score)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: --out is a file, not a folder")
    finetune = FinetuneConfig(steps=steps, lr=lr, lambda_ewc=lambda_ewc, seed=seed)
    graph_config = GraphConfig(size=size, volumes_per_task=volumes, seed=seed)
    with _staged_bars() as update:
        plan = plan_adapt(
            datasets[:-1],
            datasets[-1],
            target,
            inputs=inputs,
            groups=groups,
            modalities=modalities,
            modality=modality,
            estimate=estimate,
            progress=update,
        )
    if graph is not None:
        from seqtransfer.graph.store import GraphStore

        GraphStore(graph).load()  # a missing or corrupt graph is refused before anything is written
    grid = parse_spacing(spacing, preset)
    config = AdaptConfig(
        zoo=_zoo_config(preset, zoo_steps, ZOO.max_train, seed),
        finetune=finetune,
        graph=graph_config,
        spacing=grid,
        estimate=estimate,
        max_sources=max_sources,
        score=score,
    )
    created = prepare_output_folder(out_dir)
    pool = make_executor("local", workers=workers)
    try:
        with removed_on_failure(out_dir, created, only_if_empty=True), _staged_bars() as update:
            result = run_adapt(
                plan,
                out_dir,
                config,
                graph_dir=graph,
                executor=pool if workers > 1 else None,
                progress=update,
            )
    finally:
        pool.close()
    for record in result["targets"]:
        out.print(
            f"{record['target']}: landmark {record['landmark']}, path {' -> '.join(record['path'])} "
            f"({len(record['labelled_cases'])} labelled case(s))",
            markup=False,
        )
        if record.get("estimate"):
            est = record["estimate"]
            mean = "n/a" if est["mean_dice"] is None else f"{est['mean_dice']:.3f}"
            out.print(f"  leave-one-out Dice (small-sample estimate, n={est['n']}): {mean}", markup=False)
    out.print(
        f"predictions: {len(result['predictions']['cases'])} case(s) in {result['predictions']['folder']}", markup=False
    )
    out.print(f"report: {out_dir / 'report.html'}  (choices: {out_dir / 'adapt.json'})", markup=False)


@app.command()
def demo(
    out_dir: Annotated[
        Path, typer.Option("--out", file_okay=False, help="Run folder (a rerun skips finished work).")
    ] = Path("demo_run"),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes (default: up to 2).")] = None,
) -> None:
    """The main job on the embedded benchmark (what `make demo` runs): protocol + report."""
    from seqtransfer.demo import run_demo

    with _staged_bars() as update:
        run_demo(out_dir, seed=seed, console=out, progress=update, workers=workers)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: one-line errors and exit status 2 for bad input."""
    command = typer.main.get_command(app)
    logger = logging.getLogger("seqtransfer")
    levels = {name: logging.getLogger(name).level for name in ("seqtransfer", *NARRATORS)}
    try:
        # without standalone mode, click returns the code of typer.Exit instead of raising it
        code = command.main(args=argv, prog_name="seqtransfer", standalone_mode=False)
        if isinstance(code, int) and code != 0:
            sys.exit(code)
    except DatasetError as exc:
        for line in exc.problems:
            err.print(f"error: {line}" if not line.startswith(("error:", "warning:")) else line, markup=False)
        sys.exit(2)
    except SeqTransferError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(2)
    except WorkerLost as exc:  # not bad input (status 1): a rerun resumes
        err.print(f"error: {exc}", markup=False)
        sys.exit(1)
    except OSError as exc:  # a file system error no layer below turned into a sentence
        where = f"{exc.filename}: " if exc.filename else ""
        err.print(f"error: {where}{exc.strerror or exc}".replace("\n", " "), markup=False)
        sys.exit(2)
    except click_exceptions.ClickException as exc:
        err.print(f"error: {exc.format_message()}".replace("\n", " "), markup=False)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("error: aborted", markup=False)
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("error: interrupted", markup=False)
        sys.exit(130)
    finally:  # a caller that runs main in its own process (tests, scripts) gets its logging back
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        logger.removeHandler(_LOG_HANDLER)


if __name__ == "__main__":
    main()
