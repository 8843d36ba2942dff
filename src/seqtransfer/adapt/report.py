"""``OUT/report.html`` of ``seqtransfer adapt``: why this landmark and path, how training went,
what the predictions look like. Self-contained (figures embedded); figures also in ``OUT/figures``.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import numpy as np

from seqtransfer.core.atomic import write_text


def _img(path: Path, title: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    title = html.escape(title)
    return (
        f"<figure><img src='data:image/png;base64,{data}' style='max-width:100%' alt='{title}'>"
        f"<figcaption>{title}</figcaption></figure>"
    )


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}" if np.isfinite(value) else "inf" if value > 0 else "n/a"
    return str(value)


def _losses(folder: str) -> list[float]:
    from seqtransfer.training.checkpoint import CHECKPOINT_FINAL, load_checkpoint

    try:
        saved = load_checkpoint(Path(folder) / CHECKPOINT_FINAL)
        return [float(v) for v in saved["history"]["losses"]]
    except Exception:  # noqa: BLE001 - a curve is optional
        return []


def _curves(record: dict[str, Any], path: Path) -> Path | None:
    from seqtransfer.report.figures import _save, plt

    series = [(f"{i}. {s['node']}", _losses(s["folder"])) for i, s in enumerate(record["step_models"], start=1)]
    series = [(name, values) for name, values in series if values]
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    offset = 0
    for name, values in series:
        ax.plot(np.arange(offset + 1, offset + len(values) + 1), values, label=name)
        offset += len(values)
    ax.set_xlabel("optimizer step (path steps one after another)")
    ax.set_ylabel("loss (Dice + CE + EWC)")
    ax.set_title(f"Fine-tuning along the path to {record['target']}")
    ax.legend(fontsize=7, frameon=False)
    return _save(fig, path)


def _overlays(out: Path, result: dict[str, Any], plan: Any, path: Path, limit: int = 3) -> Path | None:
    from seqtransfer.data.io import read_image
    from seqtransfer.report.figures import _save, plt

    cases = result["predictions"]["cases"][:limit]
    if not cases:
        return None
    ending = result["predictions"]["file_ending"]
    by_id = {c.case_id: c for c in plan.unlabelled}
    channel = plan.targets[0].channel
    fig, axes = plt.subplots(1, len(cases), figsize=(3.0 * len(cases), 3.2), squeeze=False)
    top = max(max(v) for v in plan.target_dataset.labels.values())
    for ax, case_id in zip(axes[0], cases, strict=True):
        image, _ = read_image(by_id[case_id].images[channel])
        label, _ = read_image(out / "predictions" / f"{case_id}{ending}")
        z = int(np.argmax((label > 0).reshape(-1, label.shape[2]).sum(0))) if (label > 0).any() else label.shape[2] // 2
        ax.imshow(np.rot90(image[:, :, z]), cmap="gray")
        ax.imshow(
            np.rot90(np.ma.masked_where(label[:, :, z] == 0, label[:, :, z])),
            cmap="autumn",
            alpha=0.6,
            vmin=0,
            vmax=max(1, top),
        )
        ax.set_title(f"{case_id} (slice {z})", fontsize=8)
        ax.axis("off")
    fig.suptitle(f"Predictions on {plan.target_dataset.channel_names[channel]}", fontsize=9)
    return _save(fig, path)


def write_adapt_report(out: Path, result: dict[str, Any], plan: Any, graph: Any) -> Path:
    """Write ``out/report.html`` (and its figures in ``out/figures``)."""
    from seqtransfer.graph.figures import plot_graph

    figures = out / "figures"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>seqtransfer adapt</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse;margin:6px 0}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}figure{margin:8px 0}</style></head><body>",
        f"<h1>seqtransfer adapt: {html.escape(plan.target_dataset.name)}</h1>",
        _table(
            ["what", "value"],
            [
                ["target dataset", result["target_dataset"]],
                ["targets", ", ".join(r["target"] for r in result["targets"])],
                ["source datasets", ", ".join(Path(s).name for s in result["sources"])],
                ["graph", result["graph"]],
                ["network", _fmt((result.get("network") or {}).get("filters"))],
                [
                    "zoo / fine-tuning steps",
                    f"{result['config']['zoo']['train']['steps']} / {result['config']['finetune']['steps']}",
                ],
                ["unlabelled cases predicted", str(len(result["predictions"]["cases"]))],
                ["merge rule", result["predictions"]["merge"]],
                ["seqtransfer", result["versions"].get("seqtransfer", "n/a")],
            ],
        ),
    ]
    for record in result["targets"]:
        name = record["target"]
        parts.append(f"<h2>{html.escape(name)}</h2>")
        parts.append(
            f"<p>{len(record['labelled_cases'])} labelled case(s) trained the target step "
            f"({', '.join(map(html.escape, record['labelled_cases']))}); "
            f"{len(record['affinity_cases'])} stood for the target in the affinity. "
            f"O came from: {html.escape(record['performance_source'])}.</p>"
        )
        leep = record.get("score") == "leep"
        formula = (
            "Landmark score = w / (zeta &middot; rho &middot; T), T = exp(LEEP) of the source model on this target's "
            "labelled cases, lowest wins (the <code>leep</code> score: eq. 7 with O replaced by T; O only decides "
            "whether a source model learned)."
            if leep
            else "Landmark score = w / (zeta &middot; rho &middot; O), lowest wins (eq. 7)."
        )
        parts.append(f"<h3>Why this landmark</h3><p>{formula}</p>")
        shown = [r for r in record["landmark_scores"] if not r.get("excluded")][:10] + [
            r for r in record["landmark_scores"] if r.get("excluded")
        ]
        numbers = ("w", "zeta", "rho", "O", *(("T",) if leep else ()), "score")
        rows = [[r["source"], *(_fmt(r.get(k)) for k in numbers), r.get("excluded") or ""] for r in shown]
        parts.append(_table(["source", *numbers, "note"], rows))
        steps = list(zip(record["path"][:-1], record["path"][1:], record["step_weights"], strict=True))
        parts.append(
            f"<h3>Why this path</h3><p>Path: {html.escape(' → '.join(record['path']))} "
            f"({len(steps)} step(s), objective {record['objective_value']:.4f}); "
            f"direct landmark → target edge w = {record['direct_weight']:.4f}. "
            "Every intermediate step is lighter than the direct edge (eq. 8-9).</p>"
        )
        parts.append(_table(["from", "to", "w"], [[a, b, f"{w:.4f}"] for a, b, w in steps]))
        figure = plot_graph(
            graph, figures / f"graph_{name}.png", target=name, landmark=record["landmark"], transfer_path=record["path"]
        )
        parts.append(_img(figure, f"Source graph, landmark and path to {name}"))
        curve = _curves(record, figures / f"training_{name}.png")
        if curve is not None:
            parts.append(_img(curve, "Training curves"))
        held = record.get("labelsTs_dice")
        if held:
            parts.append(
                f"<h3>Against the dataset's labelsTs</h3><p>Mean Dice {_fmt(held['mean_dice'])} "
                f"over {held['n']} unlabelled case(s) whose labels "
                "the dataset holds back in labelsTs (never used for training or selection).</p>"
            )
        estimate = record.get("estimate")
        if estimate:
            parts.append(
                f"<h3>Leave-one-out estimate (small sample, n = {estimate['n']})</h3>"
                f"<p>Mean Dice {_fmt(estimate['mean_dice'])} "
                f"over {sum(v is not None for v in estimate['per_case'].values())} case(s): "
                f"a rough guide with {estimate['n']} labelled cases, not a test-set result.</p>"
            )
            parts.append(_table(["left-out case", "Dice"], [[c, _fmt(v)] for c, v in estimate["per_case"].items()]))
    overlay = _overlays(out, result, plan, figures / "predictions.png")
    if overlay is not None:
        parts.append("<h2>Predictions</h2>")
        parts.append(_img(overlay, "Predicted labels on unlabelled images"))
    parts.append("</body></html>")
    path = out / "report.html"
    write_text(path, "".join(parts))
    return path
