"""The report's figures (matplotlib, PNG, written atomically)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from seqtransfer.core.atomic import atomic_path  # noqa: E402
from seqtransfer.report.tables import LABELS, Cell  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def dice_chart(
    table: Mapping[tuple[str, str], Cell], targets: Sequence[str], methods: Sequence[str], path: Path
) -> Path:
    """Grouped bars: mean Dice (error bar: sd over draws and test sets) per target and method."""
    shown = [m for m in methods if any((t, m) in table for t in targets)]
    width = 0.8 / max(1, len(shown))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(targets) * max(1, len(shown)) * 0.35 + 2), 4.2))
    x = np.arange(len(targets))
    colours = plt.get_cmap("tab10")
    for i, method in enumerate(shown):
        means = [table[(t, method)].mean if (t, method) in table else np.nan for t in targets]
        sds = [table[(t, method)].sd if (t, method) in table else 0.0 for t in targets]
        ax.bar(
            x + (i - (len(shown) - 1) / 2) * width,
            means,
            width,
            yerr=sds,
            capsize=2,
            label=LABELS.get(method, method),
            color=colours(i % 10),
        )
    ax.set_xticks(x)
    ax.set_xticklabels(targets, rotation=20, ha="right")
    ax.set_ylabel("Dice (mean over draws and test sets)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    ax.set_title("Target Dice per method")
    return _save(fig, path)


def overlays(rows: Sequence[tuple[str, np.ndarray, np.ndarray, Mapping[str, np.ndarray]]], path: Path) -> Path:
    """Slice overlays (paper Fig. 4): per row a target's image, ground truth and each method's prediction.

    Args:
        rows: ``(title, image [X,Y,Z], ground truth [X,Y,Z], {method: prediction [X,Y,Z]})``.
        path: the PNG.
    """
    n_cols = 2 + max((len(p) for *_, p in rows), default=0)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(2.0 * n_cols, 2.1 * len(rows)), squeeze=False)
    for r, (title, image, truth, predictions) in enumerate(rows):
        z = int(np.argmax(truth.reshape(-1, truth.shape[2]).sum(0))) if truth.any() else truth.shape[2] // 2
        panels = [("image", None), ("ground truth", truth), *predictions.items()]
        for c in range(n_cols):
            ax = axes[r, c]
            ax.axis("off")
            if c >= len(panels):
                continue
            name, mask = panels[c]
            ax.imshow(np.rot90(image[:, :, z]), cmap="gray")
            if mask is not None:
                ax.imshow(
                    np.rot90(np.ma.masked_where(mask[:, :, z] == 0, mask[:, :, z])),
                    cmap="autumn",
                    alpha=0.6,
                    vmin=0,
                    vmax=1,
                )
            ax.set_title(LABELS.get(name, name) if c else f"{title}", fontsize=7)
    return _save(fig, path)


def sample_size_chart(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Dice against labelled target cases, one line per method (band: 95 % interval over targets)."""
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    colours = plt.get_cmap("tab10")
    methods = sorted({str(r["method"]) for r in rows})
    for i, method in enumerate(methods):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: int(r["n_train"]))
        x = [int(r["n_train"]) for r in mine]
        y = [float(r["mean"]) for r in mine]
        lo = [float(r["low"]) for r in mine]
        hi = [float(r["high"]) for r in mine]
        ax.plot(x, y, marker="o", label=LABELS.get(method, method), color=colours(i % 10))
        ax.fill_between(x, lo, hi, alpha=0.15, color=colours(i % 10))
    ax.set_xlabel("labelled target cases")
    ax.set_ylabel("Dice (first test set; mean over targets)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("Sample size")
    return _save(fig, path)
