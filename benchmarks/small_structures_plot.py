"""Figure of benchmarks/small_structures.md: held-out Dice against structure size, per configuration.

.venv/bin/python benchmarks/small_structures_plot.py   # -> benchmarks/results/small_structures.png
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    rows = []
    for name in ("small_structures.json", "small_structures_hard.json", "small_structures_deep_grey.json"):
        path = RESULTS / name
        if path.exists():
            rows += json.loads(path.read_text())["rows"]
    by_config: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    fraction: dict[str, float] = {}
    for r in rows:
        by_config[r["config"]][r["task"]].append(r["mean_dice"] if r["mean_dice"] is not None else np.nan)
        fraction[r["task"]] = 100.0 * r["fraction_of_grid"]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for i, (config, tasks) in enumerate(by_config.items()):
        names = sorted(tasks, key=lambda t: fraction[t])
        x = [fraction[t] for t in names]
        y = [float(np.nanmean(tasks[t])) for t in names]
        offset = 1.0 + 0.04 * (i - 2.5)  # configurations side by side at each structure
        ax.plot([v * offset for v in x], y, marker="o", ms=5, ls="", label=config, color=plt.get_cmap("tab10")(i))
    ax.axhline(0.05, color="grey", ls=":", lw=1)
    ax.text(0.09, 0.07, "learned nothing below 0.05", fontsize=7, color="grey")
    ax.set_xscale("log")
    ax.set_xlabel("structure, % of the 32^3 training grid (log)")
    ax.set_ylabel("held-out Dice (mean over seeds)")
    ax.set_ylim(0, 1)
    ax.set_title("Source models: held-out Dice against structure size")
    ax.legend(fontsize=7, frameon=False, loc="lower right", title="one point per source task", title_fontsize=7)
    out = RESULTS / "small_structures.png"
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print(out)


if __name__ == "__main__":
    main()
