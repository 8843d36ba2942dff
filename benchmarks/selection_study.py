"""Read the selection study's run store and answer: which ranking predicts transfer, where, and why.

    .venv/bin/seqtransfer run examples/study.toml --out STUDY      # the study itself
    .venv/bin/python benchmarks/selection_study.py --run STUDY \\
        --out benchmarks/results/selection_study.json

Nothing is trained here: every number comes from the store (the direct transfer of every
connected source in draw 0, the terms of eq. 5-7 recorded with each selection, LogME / LEEP /
NCE of every source model on the draw's labelled cases, every method's Dice).

It writes and prints:

* per ranking (each term alone, -w, the paper's landmark score, the ``leep`` score, O, LogME,
  LEEP, NCE, calibrated -w): Kendall tau, weighted tau, Pearson r and top-1 regret, mean over
  targets with a 95 % bootstrap interval over targets; and the same per collection (which
  targets a ranking fails on);
* a leave-one-site-out fit of the landmark score's exponents,
  ``score = w / (zeta^a rho^b O^c T^d)`` with T = exp(LEEP), on a fixed grid: for each site,
  the exponents that maximise the mean within-target Kendall tau on the other sites' targets,
  scored on the held-out site's targets (the paper is a = b = c = 1, d = 0; ``leep`` is
  a = b = d = 1, c = 0);
* per method, the paired Dice difference ours minus the method (mean over targets of each
  target's mean over draws, 95 % bootstrap interval) and the win rate, for ``ours`` and for
  ``ours_leep``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from seqtransfer.experiment.store import RunStore, calibrations, protocol_direct_transfers, protocol_scores
from seqtransfer.graph.store import GraphStore
from seqtransfer.report.tables import (
    QUALITY_METRICS,
    bootstrap_interval,
    paired_differences,
    selection_quality,
    selection_quality_means,
    win_rates,
)

#: exponents tried for each of zeta, rho, O and T in the leave-one-site-out fit (fixed before the study ran)
GRID = (0.0, 0.5, 1.0, 2.0)


def _load(run: Path) -> dict[str, Any]:
    store = RunStore(run / "runs.sqlite")
    graph, _, h_scale, _ = GraphStore(run / "graphs" / "draw0").load()
    methods = [r.result for r in store.records("method", "done") if r.result]
    selections = [r.result for r in store.records("selection", "done") if r.result]
    scores = protocol_scores(store)
    direct = protocol_direct_transfers(store)
    calibrated = calibrations(store)
    sites = {n: str(d.get("site", "")) for n, d in graph.nodes(data=True)}
    collections = {n: str(d.get("collection", "")) for n, d in graph.nodes(data=True)}
    return {
        "methods": methods,
        "selections": selections,
        "scores": scores,
        "direct": direct,
        "calibrated": calibrated,
        "h_scale": h_scale,
        "sites": sites,
        "collections": collections,
    }


def exponent_fit(data: dict[str, Any]) -> dict[str, Any]:
    """Leave-one-site-out fit of (a, b, c, d) in w / (zeta^a rho^b O^c T^d) on the draw-0 transfers."""
    leep = {(s["target"], int(s["draw"]), s["source"]): s.get("leep") for s in data["scores"]}
    per_target: dict[str, dict[str, Any]] = {}
    for sel in data["selections"]:
        t, d = sel["target"], int(sel["draw"])
        sources = sorted(s for s in sel["weights"] if (s, t, d) in data["direct"])
        if d != 0 or len(sources) < 3 or len(sources) < len(sel["weights"]):
            continue
        terms = sel["terms"]
        x = {
            "w": np.array([sel["weights"][s] for s in sources], float),
            "zeta": np.array([terms[s]["zeta"] for s in sources], float),
            "rho": np.array([terms[s]["rho"] for s in sources], float),
            "O": np.array([sel["zoo_dice"][s] or 0.0 for s in sources], float),
            "T": np.array(
                [math.exp(leep[(t, d, s)]) if leep.get((t, d, s)) is not None else 0.0 for s in sources], float
            ),
        }
        per_target[t] = {"x": x, "y": np.array([data["direct"][(s, t, d)] for s in sources], float)}

    def tau(t: str, e: tuple[float, float, float, float]) -> tuple[float, float]:
        x, y = per_target[t]["x"], per_target[t]["y"]
        log_den = np.zeros_like(x["w"])
        with np.errstate(divide="ignore"):
            for exponent, name in zip(e, ("zeta", "rho", "O", "T"), strict=True):
                if exponent:  # a zero exponent leaves the term out (0 * log 0 would be NaN)
                    log_den = log_den + exponent * np.log(x[name])
        score = -(np.log(x["w"]) - log_den)  # higher = better source
        ok = np.isfinite(score)
        if ok.sum() < 3 or np.ptp(score[ok]) == 0:
            return float("nan"), float("nan")
        return float(stats.kendalltau(score[ok], y[ok]).statistic), float(stats.weightedtau(score[ok], y[ok]).statistic)

    grid = list(itertools.product(GRID, repeat=4))
    table = {e: {t: tau(t, e) for t in per_target} for e in grid}
    sites = sorted({data["sites"][t] for t in per_target})
    held: dict[str, tuple[float, float]] = {}
    chosen = {}
    for site in sites:
        train = [t for t in per_target if data["sites"][t] != site]
        best = max(
            grid,
            key=lambda e: (
                np.nanmean([table[e][t][0] for t in train]) if train else -1.0,
                -sum(abs(v - 1.0) for v in e),
            ),
        )
        chosen[site] = best
        for t in per_target:
            if data["sites"][t] == site:
                held[t] = table[best][t]
    out: dict[str, Any] = {
        "grid": list(GRID),
        "chosen_per_site": {s: list(e) for s, e in chosen.items()},
        "targets": len(per_target),
    }
    for name, values in (
        ("fitted (leave-one-site-out)", held),
        ("paper (1, 1, 1, 0)", {t: table[(1.0, 1.0, 1.0, 0.0)][t] for t in per_target}),
        ("leep (1, 1, 0, 1)", {t: table[(1.0, 1.0, 0.0, 1.0)][t] for t in per_target}),
        ("T alone (0, 0, 0, 1) with w", {t: table[(0.0, 0.0, 0.0, 1.0)][t] for t in per_target}),
    ):
        taus = [v[0] for v in values.values()]
        wtaus = [v[1] for v in values.values()]
        out[name] = {
            "kendall_tau": float(np.nanmean(taus)),
            "kendall_tau_interval": bootstrap_interval(taus),
            "weighted_tau": float(np.nanmean(wtaus)),
            "weighted_tau_interval": bootstrap_interval(wtaus),
            "targets": len([v for v in taus if math.isfinite(v)]),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="the study's run folder")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/selection_study.json"))
    args = parser.parse_args()
    data = _load(args.run)
    quality = selection_quality(data["selections"], data["scores"], data["direct"], data["calibrated"], data["h_scale"])
    result: dict[str, Any] = {"run": str(args.run), "quality": selection_quality_means(quality), "by_collection": {}}
    for collection in sorted({data["collections"][q["target"]] for q in quality}):
        rows = [q for q in quality if data["collections"][q["target"]] == collection]
        result["by_collection"][collection] = selection_quality_means(rows)
    result["exponent_fit"] = exponent_fit(data)
    for ours in ("ours", "ours_leep"):
        result[f"paired_{ours}"] = {
            "differences": paired_differences(data["methods"], ours),
            "win_rates": {k: list(v) for k, v in win_rates(data["methods"], ours).items()},
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")

    def fmt(entry: dict[str, Any], m: str) -> str:
        lo, hi = entry[f"{m}_interval"]
        return f"{entry[m]:+.3f} [{lo:+.2f}, {hi:+.2f}]" if math.isfinite(lo) else f"{entry[m]:+.3f}"

    print(f"{'ranking':42s} " + " ".join(f"{m:>24s}" for m in QUALITY_METRICS) + "  targets")
    for e in result["quality"]:
        print(f"{e['ranking']:42s} " + " ".join(f"{fmt(e, m):>24s}" for m in QUALITY_METRICS) + f"  {e['targets']}")
    for collection, entries in result["by_collection"].items():
        print(f"\n{collection}")
        for e in entries:
            print(
                f"  {e['ranking']:40s} tau {e['kendall_tau']:+.3f}  wtau {e['weighted_tau']:+.3f}  regret "
                f"{e['top1_regret']:.3f}  ({e['targets']} targets)"
            )
    print("\nexponent fit:", json.dumps(result["exponent_fit"], indent=1, default=float))
    for ours in ("ours", "ours_leep"):
        print(f"\n{ours} minus each method (mean over targets, 95 % interval, win rate over pairs):")
        paired = result[f"paired_{ours}"]
        for k, d in sorted(paired["differences"].items()):
            w = paired["win_rates"].get(k, [float("nan"), 0])
            print(
                f"  {k:18s} {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]  wins {w[0]:.2f} of {w[1]} pairs  "
                f"({int(d['targets'])} targets)"
            )


if __name__ == "__main__":
    main()
