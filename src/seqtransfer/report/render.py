"""``seqtransfer report RUN_DIR``: ``summary.md``, a self-contained ``report.html``, CSV tables, PNG figures.

Everything comes from the run folder of ``seqtransfer run`` (its store, graphs and
predictions); nothing is trained or scored again.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seqtransfer.core.atomic import write_text
from seqtransfer.core.errors import StoreError
from seqtransfer.experiment.store import RunStore, calibrations, protocol_direct_transfers, protocol_scores
from seqtransfer.report.figures import dice_chart, overlays, sample_size_chart
from seqtransfer.report.tables import (
    LABELS,
    QUALITY_METRICS,
    TABLE_I,
    TABLE_II,
    cells,
    method_key,
    method_table,
    selection_quality,
    paired_differences,
    sample_size_curve,
    selection_quality_means,
    win_rates,
)


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


def _header(run: Path, methods: Sequence[dict[str, Any]], targets: Sequence[str]) -> list[str]:
    """The report's header paragraphs (Markdown inline syntax), shown by summary.md and report.html.

    The configuration file and package versions (seqtransfer's own included, and the version
    writing the report when the run was made by another), the run's scale, and how many targets
    and draws every mean is over.
    """
    from seqtransfer import __version__

    lines = []
    resolved = run / "config.resolved.json"
    conf: dict[str, Any] = {}
    if resolved.exists():
        try:
            conf = json.loads(resolved.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise StoreError(f"{resolved}: unreadable ({exc})") from exc
    versions = dict(conf.get("versions") or {})
    line = f"Configuration: `{resolved}`; package versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) if conf else "Configuration: not recorded (no config.resolved.json)"
    if versions.get("seqtransfer") != __version__:
        line += f"; report written by seqtransfer {__version__}"
    lines.append(line)
    c = conf.get("config", {})
    try:
        net, zoo, ft, pr = c["network"], c["zoo"], c["finetune"], c["protocol"]
        pool = f"the {pr['max_sources']} nearest sources by w" if pr.get("max_sources") else "every connected source"
        lines.append(
            f"Scale: {net['architecture']} {net['filters']} at patch {net['patch_size']}; source models {zoo['steps']} steps on up to {zoo['max_train']} cases; "
            f"fine-tuning {ft['steps']} steps per path step (lr {ft['lr']}, lambda_ewc {ft['lambda_ewc']}, augmentation {'on' if ft['augment'] else 'off'}); "
            f"scratch and MTL {pr['scratch_steps']} steps; source pool: {pool}; w/o LSI over {pr['random_landmarks']} random landmarks."
        )
    except (KeyError, TypeError):
        pass
    draws = sorted({int(m["draw"]) for m in methods})
    lines.append(
        f"Targets: {len(targets)}; draws of the 3 target training cases: {len(draws)}; every score is the mean Dice over the three test sets of 10 cases, "
        "averaged over draws (± sd over draws and test sets); a mean row averages its targets, with the 95 % bootstrap interval over them in brackets."
    )
    return lines


def _unlearned_line(zoo: Sequence[dict[str, Any]]) -> str:
    """The source models that learned nothing (never a landmark), or that every one learned."""
    from seqtransfer.selection.landmark import MIN_LEARNED_DICE, learned

    failed = sorted((str(r["task"]), r.get("dice")) for r in zoo if not learned(None if r.get("dice") is None else float(r["dice"])))
    if not failed:
        return f"Source models: {len(zoo)}, every one learned its task (held-out Dice >= {MIN_LEARNED_DICE})."
    names = ", ".join(f"{t} ({_fmt(d)})" for t, d in failed)
    return f"Source models that learned nothing (held-out Dice < {MIN_LEARNED_DICE}; never a landmark): {len(failed)} of {len(zoo)}: {names}."


def _inline_html(text: str) -> str:
    """A header line's Markdown inline syntax (only `code`) as escaped HTML."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def _overlay_rows(run_dir: Path, methods: Sequence[dict[str, Any]], targets: Sequence[str], graph: Any, limit: int = 3) -> list[tuple[str, np.ndarray, np.ndarray, dict[str, np.ndarray]]]:
    from seqtransfer.data.dataset import parse_dataset
    from seqtransfer.data.io import read_image
    from seqtransfer.data.tasks import split_tasks

    rows = []
    for target in targets[:limit]:
        node = graph.nodes[target]
        dataset, _ = parse_dataset(Path(node["dataset"]))
        task = next((t for t in split_tasks([dataset]) if t.name == target), None)
        chosen = [m for m in methods if m["target"] == target and m["draw"] == 0 and m.get("predictions") and m["method"] in ("ours", *TABLE_I)]
        if task is None or not chosen:
            continue
        sel = next((m for m in chosen if m["method"] == "ours"), chosen[0])
        per_case = sorted(Path(sel["predictions"]).glob("*.nii.gz")) if Path(sel["predictions"]).is_dir() else []
        if not per_case:
            continue
        case_id = per_case[0].name.removesuffix(".nii.gz")
        case = next(c for c in task.cases if c.case_id == case_id)
        image = read_image(case.images[task.channel])[0]
        truth = np.isin(np.round(read_image(case.label)[0]), task.label_values).astype(np.uint8)
        predictions = {}
        for m in sorted(chosen, key=lambda m: TABLE_I.index(m["method"]) if m["method"] in TABLE_I else 0):
            f = Path(m["predictions"]) / per_case[0].name
            if f.exists() and m["method"] not in predictions:
                predictions[m["method"]] = read_image(f)[0].astype(np.uint8)
        rows.append((f"{target}\n{case_id}", image, truth, predictions))
    return rows


def write_report(run_dir: str | Path) -> dict[str, Path]:
    """Write the report of a run folder and return the paths written.

    Raises:
        StoreError: the folder holds no finished run.
    """
    from seqtransfer.graph.figures import plot_graph, plot_heatmap
    from seqtransfer.graph.store import GraphStore

    run = Path(run_dir)
    if not (run / "runs.sqlite").exists():
        raise StoreError(f"{run}: no runs.sqlite (not a run folder of `seqtransfer run`)")
    store = RunStore(run / "runs.sqlite")
    methods = [r.result for r in store.records("method", "done") if r.result]
    if not methods:
        raise StoreError(f"{run}: the run has no finished method yet")
    graph, _, h_scale, _ = GraphStore(run / "graphs" / "draw0").load()
    targets = sorted({m["target"] for m in methods})
    collections = {t: str(graph.nodes[t].get("collection", "")) for t in targets}
    out_tables, out_figures = run / "report" / "tables", run / "report" / "figures"
    written: dict[str, Path] = {}
    md: list[str] = [f"# seqtransfer report: {run.name}", ""]
    header_lines = _header(run, methods, targets)
    header_lines.append(_unlearned_line([r.result for r in store.records("zoo", "done") if r.result]))
    for line in header_lines:
        md += [line, ""]
    html_parts: list[str] = [f"<p>{_inline_html(line)}</p>" for line in header_lines]  # the same header as summary.md
    lambda_cols = sorted({method_key(m) for m in methods if m["method"] == "lambda"}, key=lambda k: float(k.split("=")[1]))
    sections = [("Table I: methods", "table1", TABLE_I), ("Table II: ablation", "table2", TABLE_II), ("Table III: lambda", "table3", tuple(lambda_cols))]
    for title, name, columns in sections:
        header, rows, raw = method_table(methods, columns, targets, collections)
        if len(header) <= 1:
            continue
        present = header[1:]
        _write_csv(out_tables / f"{name}.csv", ["target", *[f"{c} mean" for c in present], *[f"{c} sd" for c in present]], raw)
        written[name] = out_tables / f"{name}.csv"
        md += [f"## {title}", "", _md_table(header, rows), ""]
        html_parts.append(f"<h2>{html.escape(title)}</h2>{_html_table(header, rows)}")
    wins = win_rates(methods)
    if wins:
        diffs = paired_differences(methods)
        header = ["method", "ours wins (paired target x draw)", "pairs", "Dice of ours minus the method (mean over targets)", "95 % interval (bootstrap over targets)", "targets"]

        def diff_cells(k: str) -> list[str]:
            d = diffs.get(k)
            if d is None:
                return ["n/a", "n/a", "0"]
            interval = "n/a" if not math.isfinite(d["low"]) else f"[{d['low']:+.3f}, {d['high']:+.3f}]"
            return [f"{d['mean']:+.3f}", interval, str(int(d["targets"]))]

        rows = [[LABELS.get(k, k), f"{v[0]:.2f}", str(v[1]), *diff_cells(k)] for k, v in sorted(wins.items())]
        _write_csv(
            out_tables / "win_rates.csv",
            ["method", "win_rate", "pairs", "mean_difference", "low", "high", "targets"],
            [[k, v[0], v[1], *(diffs[k][c] if k in diffs else float("nan") for c in ("mean", "low", "high", "targets"))] for k, v in sorted(wins.items())],
        )
        md += ["## Win rate of ours", "", _md_table(header, rows), ""]
        html_parts.append(f"<h2>Win rate of ours</h2>{_html_table(header, rows)}")
    sample = [r.result for r in store.records("sample_size", "done") if r.result]
    curve = sample_size_curve(methods, sample) if sample else []
    if curve:
        sizes = sorted({int(r["n_train"]) for r in curve})
        by_key = {(r["method"], int(r["n_train"])): r for r in curve}

        def point(method: str, n: int) -> str:
            r = by_key.get((method, n))
            if r is None or not math.isfinite(r["mean"]):
                return "n/a"
            interval = "" if not math.isfinite(r["low"]) else f" [{r['low']:.3f}, {r['high']:.3f}]"
            return f"{r['mean']:.3f}{interval} ({r['targets']})"

        header = ["method", *[f"{n} labelled" for n in sizes]]
        rows = [[LABELS.get(m, m), *[point(m, n) for n in sizes]] for m in sorted({r["method"] for r in curve})]
        _write_csv(out_tables / "sample_size.csv", ["method", "n_train", "mean", "low", "high", "targets", "runs"], [[r[k] for k in ("method", "n_train", "mean", "low", "high", "targets", "runs")] for r in curve])
        written["sample_size_table"] = out_tables / "sample_size.csv"
        intro = (
            "Dice on the first test set against the number of labelled target cases: mean over targets (each target's mean over its draws), "
            "95 % bootstrap interval over targets in brackets, number of targets in parentheses. Draw d's cases are nested (its 3 protocol cases, "
            "then more in a seeded order), so draws of more than 3 cases may share cases."
        )
        md += ["## Sample size", "", intro, "", _md_table(header, rows), ""]
        html_parts.append(f"<h2>Sample size</h2><p>{_inline_html(intro)}</p>{_html_table(header, rows)}")
    selections = [r.result for r in store.records("selection", "done") if r.result]
    scores = protocol_scores(store)  # not the sample-size study's, not the whole-network ablation's
    direct = protocol_direct_transfers(store)
    calibrated = calibrations(store)
    quality = selection_quality(selections, scores, direct, calibrated, h_scale)
    if quality:
        header = ["target", "draw", "ranking", "Kendall tau", "weighted tau", "Pearson r", "top-1 regret", "sources"]
        rows = [[q["target"], str(q["draw"]), q["ranking"], _fmt(q["kendall_tau"]), _fmt(q["weighted_tau"]), _fmt(q["pearson"]), _fmt(q["top1_regret"]), str(int(q["n"]))] for q in quality]
        _write_csv(out_tables / "selection_quality.csv", header, [[q["target"], q["draw"], q["ranking"], q["kendall_tau"], q["weighted_tau"], q["pearson"], q["top1_regret"], q["n"]] for q in quality])
        written["selection_quality"] = out_tables / "selection_quality.csv"
        means = selection_quality_means(quality)
        def with_interval(m: dict[str, Any], c: str) -> str:
            lo, hi = m[f"{c}_interval"]
            return _fmt_mean(m[c], m[f"{c}_n"], m["n"]) + ("" if not math.isfinite(lo) else f" [{lo:.2f}, {hi:.2f}]")

        mean_rows = [[m["ranking"], *[with_interval(m, c) for c in QUALITY_METRICS], str(m["n"]), str(m["targets"])] for m in means]
        mean_header = ["ranking", "Kendall tau", "weighted tau", "Pearson r", "top-1 regret", "targets x draws", "targets"]
        intro = (
            "Each ranking of the sources against the really trained direct-transfer Dice of every connected source (mean over targets and draws, "
            "then in square brackets its 95 % bootstrap interval over targets, each target's mean over its draws; a measure undefined for some "
            "rows, e.g. Pearson r of a constant ranking, is averaged over the others, their number in parentheses):"
        )
        md += ["## Selection quality", "", intro, "", _md_table(mean_header, mean_rows), "", _md_table(header, rows), ""]
        html_parts.append(
            f"<h2>Selection quality</h2><p>{_inline_html(intro)}</p>{_html_table(mean_header, mean_rows)}"
            f"<details><summary>per target</summary>{_html_table(header, rows)}</details>"
        )
    figures = []
    table = cells(methods)
    figures.append(("Dice per method", dice_chart(table, targets, list(TABLE_I) + ["landmark_direct", "random_landmark", "calibrated"], out_figures / "dice_per_method.png")))
    ours0 = {m["target"]: m for m in methods if m["method"] == "ours" and m["draw"] == 0}
    for target in targets[:3]:
        if target in ours0:
            p = ours0[target]["path"]
            figures.append((f"Graph, landmark and path: {target}", plot_graph(graph, out_figures / f"graph_{target}.png", target=target, landmark=p[0], transfer_path=p)))
    if curve:
        figures.append(("Sample size: Dice against labelled target cases", sample_size_chart(curve, out_figures / "sample_size.png")))
    figures.append(("Affinity heatmap (draw 0)", plot_heatmap(graph, out_figures / "affinity_heatmap.png")))
    rows_ov = _overlay_rows(run, methods, targets, graph)
    if rows_ov:
        figures.append(("Slice overlays: image, ground truth, each method (draw 0, first test case)", overlays(rows_ov, out_figures / "overlays.png")))
    md += ["## Figures", ""]
    for title, path in figures:
        md += [f"### {title}", "", f"![{title}]({path.relative_to(run / 'report')})", ""]
        data = base64.b64encode(path.read_bytes()).decode()
        html_parts.append(f"<h3>{html.escape(title)}</h3><img src='data:image/png;base64,{data}' style='max-width:100%'>")
        written[path.stem] = path
    summary = run / "report" / "summary.md"
    write_text(summary, "\n".join(md) + "\n")
    page = io.StringIO()
    page.write("<!doctype html><html><head><meta charset='utf-8'><title>seqtransfer report</title>")
    page.write("<style>body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px}</style></head><body>")
    page.write(f"<h1>seqtransfer report: {html.escape(run.name)}</h1>")
    page.write("".join(html_parts))
    page.write("</body></html>")
    report = run / "report" / "report.html"
    write_text(report, page.getvalue())
    written["summary"] = summary
    written["report"] = report
    return written
