"""Figure of benchmarks/adapt.md: where the time of `seqtransfer adapt` goes, cold and warm.

.venv/bin/python benchmarks/adapt_plot.py   # -> benchmarks/results/adapt.png
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    data = json.loads((RESULTS / "adapt.json").read_text())
    runs = ["cold", "warm"]
    fig, ax = plt.subplots(figsize=(7.0, 2.6))
    colours = {
        "graph": "tab:blue",
        "source models": "tab:orange",
        "fine-tuning": "tab:green",
        "predict": "tab:purple",
        "start, imports, verification": "lightgrey",
    }
    for row, run in enumerate(runs):
        stages = data[run]["stages"]
        parts = {
            "graph": stages["graph"],
            "source models": stages["zoo"],
            "fine-tuning": sum(v for k, v in stages.items() if k.startswith("fine-tune")),
            "predict": stages["predict"],
        }
        parts["start, imports, verification"] = max(0.0, data[run]["wall_s"] - sum(parts.values()))
        left = 0.0
        for name, seconds in parts.items():
            ax.barh(row, seconds, left=left, color=colours[name], label=name if row == 0 else None)
            left += seconds
        ax.text(left + 2, row, f"{data[run]['wall_s']:.0f} s", va="center", fontsize=8)
    ax.set_yticks(range(len(runs)))
    ax.set_yticklabels(["cold (graph and 5 source models built)", "warm (--graph with its zoo)"])
    ax.set_xlabel("seconds, 3 labelled cases, 10 unlabelled images, cpu preset, 2 cores")
    ax.legend(fontsize=7, frameon=False, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    out = RESULTS / "adapt.png"
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print(out)


if __name__ == "__main__":
    main()
