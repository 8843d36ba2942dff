"""The run folder of ``seqtransfer run``: where each part of a run lives.

::

    RUN_DIR/
        runs.sqlite               the run store (one record per run)
        config.resolved.json      the resolved configuration, seeds and package versions
        benchmark/                the embedded benchmark: its datasets, benchmark.json, objective_groups.json
        cache/                    the preprocessing cache
        graphs/draw{D}/           the graph of draw D (a GraphStore folder)
        graphs/n{N}_draw{D}/      the sample-size study's graph of N labelled cases, draw D
        models/                   the zoo's and the fine-tunings' models
        predictions/TARGET/       the baselines' predictions, one folder per method and draw
        report/                   summary.md, report.html, tables/ (CSV), figures/ (PNG)
        adapt/                    ``seqtransfer demo``'s adapt run (its own layout)

Every path inside a run folder is spelled here once; the runner, the report and the demo ask
a :class:`RunLayout` for them.
"""

from __future__ import annotations

from pathlib import Path


class RunLayout:
    """The paths of one run folder (nothing is created or read).

    Args:
        root: the run folder.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunLayout({str(self.root)!r})"

    @property
    def store_path(self) -> Path:
        """The run store (SQLite)."""
        return self.root / "runs.sqlite"

    @property
    def config_path(self) -> Path:
        """The resolved configuration with its seeds and package versions."""
        return self.root / "config.resolved.json"

    @property
    def benchmark_dir(self) -> Path:
        """The embedded benchmark's datasets."""
        return self.root / "benchmark"

    @property
    def benchmark_marker(self) -> Path:
        """The benchmark's configuration and dataset names (it is complete when this exists)."""
        return self.benchmark_dir / "benchmark.json"

    @property
    def benchmark_groups(self) -> Path:
        """The benchmark's objective-group map."""
        return self.benchmark_dir / "objective_groups.json"

    @property
    def cache_dir(self) -> Path:
        """The preprocessing cache."""
        return self.root / "cache"

    @property
    def models_dir(self) -> Path:
        """The zoo's and the fine-tunings' models."""
        return self.root / "models"

    @property
    def graphs_dir(self) -> Path:
        """Every graph of the run."""
        return self.root / "graphs"

    def graph_dir(self, draw: int) -> Path:
        """The graph folder of a draw of the protocol's target training cases.

        Raises:
            ValueError: a negative draw.
        """
        return self.graphs_dir / f"draw{_count(draw, 'draw')}"

    def sample_size_graph_dir(self, n_train: int, draw: int) -> Path:
        """The sample-size study's graph folder of ``n_train`` labelled target cases, draw ``draw``.

        Raises:
            ValueError: a negative draw or fewer than one case.
        """
        if n_train < 1:
            raise ValueError(f"n_train must be at least 1, not {n_train}")
        return self.graphs_dir / f"n{n_train}_draw{_count(draw, 'draw')}"

    @property
    def predictions_dir(self) -> Path:
        """The saved predictions of every target."""
        return self.root / "predictions"

    def target_predictions(self, target: str) -> Path:
        """The saved predictions of one target."""
        return self.predictions_dir / target

    def method_predictions(self, target: str, method: str, draw: int) -> Path:
        """Where a baseline (scratch, MST, MTL) saves its predictions of a target in a draw."""
        return self.target_predictions(target) / f"{method}_draw{_count(draw, 'draw')}"

    @property
    def report_dir(self) -> Path:
        """The report: ``summary.md``, ``report.html``, ``tables/``, ``figures/``."""
        return self.root / "report"

    @property
    def report_tables(self) -> Path:
        """The report's CSV tables."""
        return self.report_dir / "tables"

    @property
    def report_figures(self) -> Path:
        """The report's PNG figures."""
        return self.report_dir / "figures"

    @property
    def summary_path(self) -> Path:
        """The report's Markdown summary."""
        return self.report_dir / "summary.md"

    @property
    def report_html(self) -> Path:
        """The report's self-contained HTML page."""
        return self.report_dir / "report.html"

    @property
    def adapt_dir(self) -> Path:
        """``seqtransfer demo``'s adapt run (laid out by ``seqtransfer adapt``)."""
        return self.root / "adapt"


def _count(value: int, name: str) -> int:
    if value < 0:
        raise ValueError(f"{name} must be 0 or more, not {value}")
    return value
