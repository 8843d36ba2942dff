"""``seqtransfer report RUN_DIR``: ``summary.md``, a self-contained ``report.html``, CSV tables, PNG figures.

Everything comes from the run folder of ``seqtransfer run`` (its store, graphs and
predictions), read by :func:`~seqtransfer.report.read.read_report_data`; the numbers are
computed by :mod:`seqtransfer.report.tables`; this module writes them. Nothing is trained or
scored again.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqtransfer.core.atomic import write_text
from seqtransfer.experiment.layout import RunLayout
from seqtransfer.graph.figures import plot_graph, plot_heatmap
from seqtransfer.report.figures import dice_chart, overlays, sample_size_chart
from seqtransfer.report.read import ReportData, RunConfiguration, RunScale, SourceModel, read_report_data
from seqtransfer.report.tables import (
    LABELS,
    QUALITY_METRICS,
    TABLE_I,
    TABLE_II,
    cells,
    first_draw_paths,
    lambda_columns,
    method_table,
    paired_differences,
    sample_size_curve,
    selection_quality,
    selection_quality_means,
    win_rates,
)
from seqtransfer.selection.landmark import MIN_LEARNED_DICE, learned

#: a table as shown: its header and its rows of formatted cells
Table = tuple[Sequence[str], Sequence[Sequence[str]]]

#: targets whose graph, landmark and path get a figure
GRAPH_FIGURES = 3

SAMPLE_SIZE_INTRO = (
    "Dice on the first test set against the number of labelled target cases: "
    "mean over targets (each target's mean over its draws), "
    "95 % bootstrap interval over targets in brackets, number of targets in parentheses. "
    "Draw d's cases are nested (its 3 protocol cases, then more in a seeded order), "
    "so draws of more than 3 cases may share cases."
)
SELECTION_QUALITY_INTRO = (
    "Each ranking of the sources against the really trained direct-transfer Dice of every connected source "
    "(mean over targets and draws, then in square brackets its 95 % bootstrap interval over targets, "
    "each target's mean over its draws; a measure undefined for some rows, e.g. Pearson r of a constant ranking, "
    "is averaged over the others, their number in parentheses):"
)


def write_report(run_dir: str | Path) -> dict[str, Path]:
    """Write the report of a run folder and return the paths written.

    Raises:
        StoreError: the folder holds no finished run.
    """
    return render_report(read_report_data(run_dir))


def render_report(data: ReportData) -> dict[str, Path]:
    """Write the report of read run data into its run folder's ``report/``.

    Returns:
        The paths written: tables, figures (by file stem), ``summary`` and ``report``.
    """
    doc = _Document(data.layout, markdown=[f"# seqtransfer report: {data.name}", ""])
    for line in header_lines(data):
        doc.paragraph(line)
    _method_sections(doc, data)
    _win_rate_section(doc, data.methods)
    curve = sample_size_curve(data.methods, data.sample_size) if data.sample_size else []
    _sample_size_section(doc, curve)
    _selection_quality_section(doc, data)
    doc.markdown += ["## Figures", ""]
    for title, path in _figures(data, curve):
        doc.figure(title, path)
    return doc.save(data.name)


@dataclass
class _Document:
    """The report being written: summary.md's lines, report.html's parts, the files written so far."""

    layout: RunLayout
    markdown: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    written: dict[str, Path] = field(default_factory=dict)

    def paragraph(self, text: str) -> None:
        """A header paragraph (Markdown inline syntax), in both documents."""
        self.markdown += [text, ""]
        self.html.append(f"<p>{_inline_html(text)}</p>")

    def section(
        self, title: str, tables: Sequence[Table], intro: str | None = None, folded: Table | None = None
    ) -> None:
        """A titled section: an introduction, tables, and one more table the HTML shows folded."""
        self.markdown += [f"## {title}", ""]
        part = f"<h2>{html.escape(title)}</h2>"
        if intro is not None:
            self.markdown += [intro, ""]
            part += f"<p>{_inline_html(intro)}</p>"
        for header, rows in [*tables, *([folded] if folded is not None else [])]:
            self.markdown += [_md_table(header, rows), ""]
        part += "".join(_html_table(header, rows) for header, rows in tables)
        if folded is not None:
            part += f"<details><summary>per target</summary>{_html_table(*folded)}</details>"
        self.html.append(part)

    def csv(self, name: str, header: Sequence[str], rows: Sequence[Sequence[Any]], key: str | None = None) -> None:
        """Write ``tables/NAME.csv``; listed among the paths written under ``key`` if given."""
        path = self.layout.report_tables / f"{name}.csv"
        _write_csv(path, header, rows)
        if key is not None:
            self.written[key] = path

    def figure(self, title: str, path: Path) -> None:
        """A written PNG: linked from summary.md, embedded in report.html."""
        self.markdown += [f"### {title}", "", f"![{title}]({path.relative_to(self.layout.report_dir)})", ""]
        data = base64.b64encode(path.read_bytes()).decode()
        self.html.append(
            f"<h3>{html.escape(title)}</h3><img src='data:image/png;base64,{data}' style='max-width:100%'>"
        )
        self.written[path.stem] = path

    def save(self, name: str) -> dict[str, Path]:
        """Write summary.md and report.html; return every path written."""
        summary, report = self.layout.summary_path, self.layout.report_html
        write_text(summary, "\n".join(self.markdown) + "\n")
        write_text(report, _page(name, self.html))
        self.written["summary"] = summary
        self.written["report"] = report
        return self.written


def _page(name: str, parts: Sequence[str]) -> str:
    """report.html: a self-contained page of the given parts."""
    page = io.StringIO()
    page.write("<!doctype html><html><head><meta charset='utf-8'><title>seqtransfer report</title>")
    page.write(
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:3px 6px}</style></head><body>"
    )
    page.write(f"<h1>seqtransfer report: {html.escape(name)}</h1>")
    page.write("".join(parts))
    page.write("</body></html>")
    return page.getvalue()


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def cell(text: str) -> str:
        text = str(text)
        if text.startswith("**") and text.endswith("**"):
            return f"<td><b>{html.escape(text[2:-2])}</b></td>"
        return f"<td>{html.escape(text)}</td>"

    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if v is None else (f"{v:.6g}" if isinstance(v, float) else v) for v in row] for row in rows])
    write_text(path, buffer.getvalue())


def _fmt(v: Any) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3f}"


def _fmt_mean(mean: float, count: int, total: int) -> str:
    """A mean over ``count`` of ``total`` rows: the count is shown when some rows were left out."""
    return _fmt(mean) if count in (0, total) else f"{_fmt(mean)} ({count} of {total})"


def _inline_html(text: str) -> str:
    """A header line's Markdown inline syntax (only `code`) as escaped HTML."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def header_lines(data: ReportData) -> list[str]:
    """The report's header paragraphs (Markdown inline syntax), shown by summary.md and report.html.

    The configuration file and package versions (seqtransfer's own included, and the version
    writing the report when the run was made by another), the run's scale, how many targets
    and draws every mean is over, and the source models that learned nothing.
    """
    scale = data.configuration.scale
    return [
        _configuration_line(data.configuration),
        *([_scale_line(scale)] if scale is not None else []),
        _targets_line(len(data.targets), len(data.draws)),
        _unlearned_line(data.zoo),
    ]


def _configuration_line(conf: RunConfiguration) -> str:
    from seqtransfer import __version__

    if conf.recorded:
        line = f"Configuration: `{conf.path}`; package versions: " + ", ".join(
            f"{k} {v}" for k, v in conf.versions.items()
        )
    else:
        line = f"Configuration: not recorded (no {conf.path.name})"
    if conf.versions.get("seqtransfer") != __version__:
        line += f"; report written by seqtransfer {__version__}"
    return line


def _scale_line(s: RunScale) -> str:
    pool = f"the {s.max_sources} nearest sources by w" if s.max_sources else "every connected source"
    return (
        f"Scale: {s.architecture} {s.filters} at patch {s.patch_size}; "
        f"source models {s.zoo_steps} steps on up to {s.zoo_max_train} cases; "
        f"fine-tuning {s.finetune_steps} steps per path step "
        f"(lr {s.lr}, lambda_ewc {s.lambda_ewc}, augmentation {'on' if s.augment else 'off'}); "
        f"scratch and MTL {s.scratch_steps} steps; source pool: {pool}; "
        f"w/o LSI over {s.random_landmarks} random landmarks."
    )


def _targets_line(n_targets: int, n_draws: int) -> str:
    return (
        f"Targets: {n_targets}; draws of the 3 target training cases: {n_draws}; "
        "every score is the mean Dice over the three test sets of 10 cases, "
        "averaged over draws (± sd over draws and test sets); "
        "a mean row averages its targets, with the 95 % bootstrap interval over them in brackets."
    )


def _unlearned_line(zoo: Sequence[SourceModel]) -> str:
    """The source models that learned nothing (never a landmark), or that every one learned."""
    failed = sorted((m.task, m.dice) for m in zoo if not learned(m.dice))
    if not failed:
        return f"Source models: {len(zoo)}, every one learned its task (held-out Dice >= {MIN_LEARNED_DICE})."
    names = ", ".join(f"{t} ({_fmt(d)})" for t, d in failed)
    return (
        f"Source models that learned nothing (held-out Dice < {MIN_LEARNED_DICE}; never a landmark): "
        f"{len(failed)} of {len(zoo)}: {names}."
    )


def _method_sections(doc: _Document, data: ReportData) -> None:
    """Tables I-III: Dice per target and method (CSV: means and standard deviations)."""
    sections = [
        ("Table I: methods", "table1", TABLE_I),
        ("Table II: ablation", "table2", TABLE_II),
        ("Table III: lambda", "table3", lambda_columns(data.methods)),
    ]
    for title, name, columns in sections:
        header, rows, raw = method_table(data.methods, columns, data.targets, data.collections)
        if len(header) <= 1:
            continue
        present = header[1:]
        doc.csv(name, ["target", *[f"{c} mean" for c in present], *[f"{c} sd" for c in present]], raw, key=name)
        doc.section(title, [(header, rows)])


def _win_rate_section(doc: _Document, methods: Sequence[Mapping[str, Any]]) -> None:
    """How often ours wins against each method, and by how much."""
    wins = win_rates(methods)
    if not wins:
        return
    diffs = paired_differences(methods)
    header = [
        "method",
        "ours wins (paired target x draw)",
        "pairs",
        "Dice of ours minus the method (mean over targets)",
        "95 % interval (bootstrap over targets)",
        "targets",
    ]
    rows = [
        [LABELS.get(k, k), f"{v[0]:.2f}", str(v[1]), *_difference_cells(diffs.get(k))] for k, v in sorted(wins.items())
    ]
    doc.csv(
        "win_rates",
        ["method", "win_rate", "pairs", "mean_difference", "low", "high", "targets"],
        [
            [k, v[0], v[1], *(diffs[k][c] if k in diffs else float("nan") for c in ("mean", "low", "high", "targets"))]
            for k, v in sorted(wins.items())
        ],
    )
    doc.section("Win rate of ours", [(header, rows)])


def _difference_cells(d: Mapping[str, float] | None) -> list[str]:
    """Ours minus a method: mean, interval, number of targets."""
    if d is None:
        return ["n/a", "n/a", "0"]
    interval = "n/a" if not math.isfinite(d["low"]) else f"[{d['low']:+.3f}, {d['high']:+.3f}]"
    return [f"{d['mean']:+.3f}", interval, str(int(d["targets"]))]


def _sample_size_section(doc: _Document, curve: Sequence[Mapping[str, Any]]) -> None:
    """Dice against the number of labelled target cases, per method."""
    if not curve:
        return
    sizes = sorted({int(r["n_train"]) for r in curve})
    by_key = {(r["method"], int(r["n_train"])): r for r in curve}
    header = ["method", *[f"{n} labelled" for n in sizes]]
    rows = [
        [LABELS.get(m, m), *[_curve_point(by_key.get((m, n))) for n in sizes]]
        for m in sorted({r["method"] for r in curve})
    ]
    columns = ("method", "n_train", "mean", "low", "high", "targets", "runs")
    doc.csv("sample_size", list(columns), [[r[k] for k in columns] for r in curve], key="sample_size_table")
    doc.section("Sample size", [(header, rows)], intro=SAMPLE_SIZE_INTRO)


def _curve_point(r: Mapping[str, Any] | None) -> str:
    """One point of the sample-size curve: mean [interval] (targets)."""
    if r is None or not math.isfinite(r["mean"]):
        return "n/a"
    interval = "" if not math.isfinite(r["low"]) else f" [{r['low']:.3f}, {r['high']:.3f}]"
    return f"{r['mean']:.3f}{interval} ({r['targets']})"


def _selection_quality_section(doc: _Document, data: ReportData) -> None:
    """Each ranking of the sources against their measured direct transfers: means, then per target."""
    quality = selection_quality(data.selections, data.scores, data.direct, data.calibrated, data.h_scale)
    if not quality:
        return
    header = ["target", "draw", "ranking", "Kendall tau", "weighted tau", "Pearson r", "top-1 regret", "sources"]
    rows = [
        [q["target"], str(q["draw"]), q["ranking"], *[_fmt(q[c]) for c in QUALITY_METRICS], str(int(q["n"]))]
        for q in quality
    ]
    doc.csv(
        "selection_quality",
        header,
        [[q["target"], q["draw"], q["ranking"], *[q[c] for c in QUALITY_METRICS], q["n"]] for q in quality],
        key="selection_quality",
    )
    means = selection_quality_means(quality)
    mean_header = ["ranking", "Kendall tau", "weighted tau", "Pearson r", "top-1 regret", "targets x draws", "targets"]
    mean_rows = [
        [m["ranking"], *[_mean_with_interval(m, c) for c in QUALITY_METRICS], str(m["n"]), str(m["targets"])]
        for m in means
    ]
    doc.section("Selection quality", [(mean_header, mean_rows)], intro=SELECTION_QUALITY_INTRO, folded=(header, rows))


def _mean_with_interval(m: Mapping[str, Any], measure: str) -> str:
    """A measure's mean (with its count when rows were left out) and its bootstrap interval."""
    lo, hi = m[f"{measure}_interval"]
    return _fmt_mean(m[measure], m[f"{measure}_n"], m["n"]) + (
        "" if not math.isfinite(lo) else f" [{lo:.2f}, {hi:.2f}]"
    )


def _figures(data: ReportData, curve: Sequence[Mapping[str, Any]]) -> list[tuple[str, Path]]:
    """Write the PNG figures; return each one's title and path, in the report's order."""
    out = data.layout.report_figures
    targets = data.targets
    shown = [*TABLE_I, "landmark_direct", "random_landmark", "calibrated"]
    figures = [("Dice per method", dice_chart(cells(data.methods), targets, shown, out / "dice_per_method.png"))]
    paths = first_draw_paths(data.methods, "ours")
    for target in targets[:GRAPH_FIGURES]:
        if target in paths:
            path = paths[target]
            figure = plot_graph(
                data.graph, out / f"graph_{target}.png", target=target, landmark=path[0], transfer_path=path
            )
            figures.append((f"Graph, landmark and path: {target}", figure))
    if curve:
        figures.append(
            ("Sample size: Dice against labelled target cases", sample_size_chart(curve, out / "sample_size.png"))
        )
    figures.append(("Affinity heatmap (draw 0)", plot_heatmap(data.graph, out / "affinity_heatmap.png")))
    if data.overlays:
        rows = [(o.label, o.image, o.truth, o.predictions) for o in data.overlays]
        figures.append(
            (
                "Slice overlays: image, ground truth, each method (draw 0, first test case)",
                overlays(rows, out / "overlays.png"),
            )
        )
    return figures
