"""Confirm by brute force that `select` returned the optimal path for every target of a graph.

Enumerates every simple path from the landmark to the target through candidate sources with
at most `max_length` steps whose steps are all lighter than the direct edge (eq. 9), evaluates
eq. 8 on each, and compares the minimum with the stored selection's objective.

Where the full enumeration would exceed a budget of expanded partial paths (targets whose
direct edge is heavy admit nearly every chain: ~60^4 paths), the selection is recomputed with
a shorter `max_length` (3) and that one is brute-forced instead; the output says which.

Usage:
    python benchmarks/selection_bruteforce.py GRAPH_DIR
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from seqtransfer.graph import GraphStore, candidate_sources
from seqtransfer.selection import path_objective
from seqtransfer.selection.run import select_for_target


class Budget(Exception):
    """The enumeration exceeded its budget."""


def brute_force(
    graph,
    landmark: str,
    target: str,
    sources: set[str],
    lam: float,
    c_search: float,
    max_length: int,
    budget: int = 3_000_000,
):
    direct = graph.edges[landmark, target]["weight"]
    best = (path_objective(graph, [landmark, target], lam, c_search), [landmark, target])
    count = 1
    stack = [[landmark]]
    expanded = 0
    while stack:
        path = stack.pop()
        expanded += 1
        if expanded > budget:
            raise Budget
        if len(path) - 1 >= max_length:
            continue
        for nxt in graph.neighbors(path[-1]):
            if graph.edges[path[-1], nxt]["weight"] >= direct:
                continue
            if nxt == target and len(path) >= 2:
                count += 1
                value = path_objective(graph, [*path, nxt], lam, c_search)
                if value < best[0]:
                    best = (value, [*path, nxt])
            elif nxt in sources and nxt not in path and nxt != landmark:
                stack.append([*path, nxt])
    return best, count


def main(graph_dir: str) -> int:
    store = GraphStore(graph_dir)
    graph, _, _, _ = store.load()
    failures = 0
    for sel_path in sorted((Path(graph_dir) / "selections").glob("*.json")):
        sel = json.loads(sel_path.read_text())
        t0 = time.perf_counter()
        sources = candidate_sources(graph, sel["target"])
        try:
            (best, best_path), count = brute_force(
                graph, sel["landmark"], sel["target"], sources, sel["lambda"], sel["c_search"], sel["max_length"]
            )
            note = f"max_length={sel['max_length']}"
        except Budget:
            short = select_for_target(
                graph_dir,
                sel["target"],
                lam=sel["lambda"],
                c_search=sel["c_search"],
                max_length=3,
                save=False,
                uniform_performance=True,
                performance={r["source"]: r["O"] for r in sel["landmark_scores"]},
            )
            sel = {**sel, "objective": short.objective}
            (best, best_path), count = brute_force(
                graph, sel["landmark"], sel["target"], sources, sel["lambda"], sel["c_search"], 3, budget=10**9
            )
            note = "max_length=3 (full enumeration over budget)"
        ok = abs(best - sel["objective"]) <= 1e-12
        failures += not ok
        print(
            f"{sel['target']:22s} paths={count:7d} brute={best:.6f} select={sel['objective']:.6f} "
            f"{'OK' if ok else 'MISMATCH'} len={len(best_path) - 1} {note} ({time.perf_counter() - t0:.2f} s)"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
