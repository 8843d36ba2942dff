"""Choose the fine-tuning recipe (lr, steps) on validation transfers between source tasks.

The first version of this benchmark chose the recipe on the test sets of protocol targets,
the same test sets the selection study reports: a leak. This version measures only
*validation* transfers: direct 2-node paths ``[landmark, validation target]`` where both
tasks are sources of the study's graph at different tumour sites (``inst1-* -> inst2-*`` and
``inst2-* -> inst1-*``). A validation target is never a protocol target (nothing of the
held-out site inst3, of the tissue collection, the lesion collection or a new clinic). In
the protocol mode (no ``target_cases``) :func:`run_transfer` fine-tunes on draw ``d`` of the
validation target's :func:`target_split` (3 cases) and scores its 3 sets of 10 cases: these
are validation sets of a source task. The landmark was trained on its own site only, so no
validation case was ever seen by it.

The pairs come from a fixed rule (:func:`validation_pairs`), not from results: pair ``i``'s
landmark has channel ``CHANNELS[i % 4]``, label ``LABELS[i % 3]`` and site inst1 for even
``i``, inst2 for odd ``i``; the validation target is at the other site, and the kind of shift
cycles with ``i % 4`` through same channel + same label, same channel + next label, next
channel + same label, next channel + next label ("next" in the lists' cyclic order). The
first 12 pairs have every channel x label combination as a landmark exactly once, alternate
the direction between the sites, and cover each kind of shift 3 times.

It reuses a finished study's material read-only: the graph of draw 0 (copied to ``WORK``),
the preprocessing cache (every needed entry must exist; the script stops otherwise, so it
never writes there) and the landmark zoo models of ``runs.sqlite`` (copied to
``WORK/models/zoo``, since a transfer caches its Fisher and scores in the landmark's folder).
Nothing is written under ``STUDY``.

Usage (resumable: runs already in ``--out`` are skipped; niced, behind other work)::

    PYTHONPATH=src nice -n 19 .venv/bin/python benchmarks/finetune_recipe.py \
        --study /tmp/study --work /tmp/recipe2 \
        --out benchmarks/results/finetune_recipe_validation.json --pairs 12 --draws 0,1,2

    # the tables only (no training), from the results file:
    PYTHONPATH=src .venv/bin/python benchmarks/finetune_recipe.py --study /tmp/study \
        --work /tmp/recipe2 --out benchmarks/results/finetune_recipe_validation.json --summary
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np

from seqtransfer.core.threads import single_threaded
from seqtransfer.experiment.config import config_from_dict
from seqtransfer.experiment.runner import zoo_config_of
from seqtransfer.pipeline.config import FinetuneConfig
from seqtransfer.pipeline.transfer import run_transfer
from seqtransfer.pipeline.workspace import Workspace, open_workspace
from seqtransfer.pipeline.zoo import ZooModel
from seqtransfer.report.tables import bootstrap_interval

#: (lr, steps); the study's and demo's recipe first, the package default is the reference
RECIPES = [
    {"lr": 1e-2, "steps": 20},
    {"lr": 1e-2, "steps": 50},
    {"lr": 1e-2, "steps": 150},
    {"lr": 1e-3, "steps": 150},
    {"lr": 1e-3, "steps": 300},
]
DEFAULT = {"lr": 1e-2, "steps": 150}
LAMBDA_EWC = 0.25
SEED = 0
CHANNELS = ["T1", "T1ce", "T2", "FLAIR"]
LABELS = ["NCR", "ED", "ET"]
SITES = ["inst1", "inst2"]
KINDS = [
    "same channel, same label",
    "same channel, other label",
    "other channel, same label",
    "other channel, other label",
]


def validation_pairs(n: int) -> list[dict[str, Any]]:
    """The first ``n`` validation pairs of the fixed rule (see the module docstring)."""
    pairs = []
    for i in range(n):
        c, lab, kind = i % len(CHANNELS), i % len(LABELS), i % len(KINDS)
        site, other = (SITES[0], SITES[1]) if i % 2 == 0 else (SITES[1], SITES[0])
        tc = (c + 1) % len(CHANNELS) if kind in (2, 3) else c
        tl = (lab + 1) % len(LABELS) if kind in (1, 3) else lab
        pairs.append(
            {
                "pair": i,
                "kind": KINDS[kind],
                "landmark": f"{site}-{CHANNELS[c]}-{LABELS[lab]}",
                "target": f"{other}-{CHANNELS[tc]}-{LABELS[tl]}",
            }
        )
    return pairs


def _check_pairs(workspace: Workspace, study: Path, pairs: list[dict[str, Any]]) -> None:
    """Both ends source tasks of different sites, neither a protocol target."""
    params = json.loads((study / "graphs" / "draw0" / "params.json").read_text())
    protocol_targets = set(params.get("targets", {}))
    for p in pairs:
        for name in (p["landmark"], p["target"]):
            node = workspace.graph.nodes[name]
            if node.get("role") != "source" or name in protocol_targets:
                raise SystemExit(f"{name} is not a source task of the study's graph (or is a protocol target)")
        if workspace.graph.nodes[p["landmark"]]["site"] == workspace.graph.nodes[p["target"]]["site"]:
            raise SystemExit(f"pair {p['pair']}: landmark and target at the same site")


def _check_cache(workspace: Workspace, names: set[str]) -> None:
    """Every case of these tasks is in the (read-only) preprocessing cache."""
    missing = [
        c.case_id
        for n in sorted(names)
        for c in workspace.task(n).cases
        if not (workspace.cache.root / "preprocessed" / workspace.cache.key(c)[:2] / workspace.cache.key(c)).is_dir()
    ]
    if missing:
        raise SystemExit(
            f"{len(missing)} case(s) missing from the study's cache (e.g. {missing[0]}): refusing to write there"
        )


def _zoo_models(study: Path, work: Path, names: set[str]) -> dict[str, ZooModel]:
    """The study's zoo models of these tasks, copied under ``work/models/zoo``."""
    db = sqlite3.connect(f"file:{study / 'runs.sqlite'}?mode=ro", uri=True)
    try:
        records = [json.loads(r[0]) for r in db.execute("select result from runs where kind='zoo' and status='done'")]
    finally:
        db.close()
    out = {}
    for r in records:
        if r["task"] not in names:
            continue
        copy = work / "models" / "zoo" / r["task"] / r["key"]
        if not (copy / "checkpoint_final.pth").exists():
            shutil.copytree(r["folder"], copy, dirs_exist_ok=True)
        out[r["task"]] = ZooModel.from_dict({**r, "folder": str(copy)})
    missing = names - set(out)
    if missing:
        raise SystemExit(f"no finished zoo model in {study} for {', '.join(sorted(missing))}")
    return out


def _label(recipe: dict[str, Any]) -> str:
    return f"lr {recipe['lr']:g} x {recipe['steps']}"


def summarize(results: list[dict[str, Any]]) -> str:
    """Markdown tables: per pair x draw x recipe, and per recipe over the complete pairs."""

    def same(r: dict[str, Any], recipe: dict[str, Any]) -> bool:
        return r["lr"] == recipe["lr"] and r["steps"] == recipe["steps"]

    units = sorted({(r["pair"], r["draw"]) for r in results})
    complete = [
        u for u in units if all(any((r["pair"], r["draw"]) == u and same(r, rec) for r in results) for rec in RECIPES)
    ]
    value = {(r["pair"], r["draw"], r["lr"], r["steps"]): r for r in results}
    lines = [
        "| pair | kind | landmark -> validation target | draw | zero-shot | "
        + " | ".join(_label(x) for x in RECIPES)
        + " |"
    ]
    lines.append("|---" * (5 + len(RECIPES)) + "|")
    for pair, draw in units:
        any_r = next(r for r in results if (r["pair"], r["draw"]) == (pair, draw))
        cells = [
            f"{value[(pair, draw, x['lr'], x['steps'])]['final']:.3f}"
            if (pair, draw, x["lr"], x["steps"]) in value
            else ""
            for x in RECIPES
        ]
        lines.append(
            f"| {pair} | {any_r['kind']} | {any_r['landmark']} -> {any_r['target']} | {draw} | "
            f"{any_r['zero_shot']:.3f} | " + " | ".join(cells) + " |"
        )
    pairs = sorted({p for p, _ in complete})
    lines += [
        "",
        f"Over the {len(complete)} (pair, draw) runs where every recipe ran ({len(pairs)} pairs); interval: 95 % "
        f"percentile bootstrap of the mean over the {len(pairs)} per-pair means (each over its draws):",
        "",
    ]
    lines.append(
        "| recipe | mean Dice (n runs) | sd over runs | mean of pair means [95 % interval] | paired wins vs lr 0.01 "
        "x 150 (ties) | pairs whose mean beats lr 0.01 x 150 "
        "| mean difference vs lr 0.01 x 150 [95 % interval over pairs] | median seconds |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for recipe in RECIPES:
        finals = np.array([value[(p, d, recipe["lr"], recipe["steps"])]["final"] for p, d in complete])
        ref = np.array([value[(p, d, DEFAULT["lr"], DEFAULT["steps"])]["final"] for p, d in complete])
        per_pair = [
            float(np.mean([value[(p, d, recipe["lr"], recipe["steps"])]["final"] for q, d in complete if q == p]))
            for p in pairs
        ]
        diff_pair = [
            float(
                np.mean(
                    [
                        value[(p, d, recipe["lr"], recipe["steps"])]["final"]
                        - value[(p, d, DEFAULT["lr"], DEFAULT["steps"])]["final"]
                        for q, d in complete
                        if q == p
                    ]
                )
            )
            for p in pairs
        ]
        lo, hi = bootstrap_interval(per_pair)
        dlo, dhi = bootstrap_interval(diff_pair)
        secs = np.median([value[(p, d, recipe["lr"], recipe["steps"])]["seconds"] for p, d in complete])
        sd = float(finals.std(ddof=1)) if len(finals) > 1 else float("nan")
        is_default = recipe == DEFAULT
        wins = "" if is_default else f"{int((finals > ref).sum())} of {len(finals)} ({int((finals == ref).sum())})"
        dcell = "" if is_default else f"{np.mean(diff_pair):+.3f} [{dlo:+.3f}, {dhi:+.3f}]"
        pair_wins = "" if is_default else f"{sum(d > 0 for d in diff_pair)} of {len(diff_pair)}"
        lines.append(
            f"| {_label(recipe)} | {finals.mean():.3f} ({len(finals)}) | {sd:.3f} | {np.mean(per_pair):.3f} "
            f"[{lo:.3f}, {hi:.3f}] | {wins} | {pair_wins} | {dcell} | {secs:.0f} |"
        )
    kinds = [k for k in KINDS if any(r["kind"] == k for r in results)]
    lines += ["", "Mean Dice per kind of shift (over its pairs and draws, complete runs only):", ""]
    lines.append("| kind | runs | " + " | ".join(_label(x) for x in RECIPES) + " |")
    lines.append("|---" * (2 + len(RECIPES)) + "|")
    for kind in kinds:
        units_k = [(p, d) for p, d in complete if next(r["kind"] for r in results if r["pair"] == p) == kind]
        cells = [f"{np.mean([value[(p, d, x['lr'], x['steps'])]['final'] for p, d in units_k]):.3f}" for x in RECIPES]
        lines.append(f"| {kind} | {len(units_k)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--study", type=Path, default=Path("/tmp/study"), help="a finished (or running) study's run folder, read only"
    )
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/recipe2"), help="this benchmark's own folder (graph copy, models)"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/finetune_recipe_validation.json"))
    parser.add_argument(
        "--draws", default="0,1,2", help="comma-separated draws of the validation targets' 3 training cases"
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=12,
        help="how many pairs of the fixed rule (12: every channel x label landmark once)",
    )
    parser.add_argument("--summary", action="store_true", help="print the tables of --out and stop")
    args = parser.parse_args()
    results: list[dict[str, Any]] = json.loads(args.out.read_text()) if args.out.exists() else []
    if args.summary:
        print(summarize(results))
        return
    draws = [int(d) for d in args.draws.split(",")]
    pairs = validation_pairs(args.pairs)
    graph = args.work / "graph"
    if not (graph / "graph.json").exists():
        shutil.copytree(args.study / "graphs" / "draw0", graph, symlinks=False)
    # only the sections a transfer needs: a study run by a newer version may list methods this one does not know
    resolved = json.loads((args.study / "config.resolved.json").read_text())["config"]
    config = config_from_dict(
        {k: resolved[k] for k in ("seed", "network", "zoo", "graph") if k in resolved},
        "the study's resolved configuration",
    )
    zoo_config = zoo_config_of(config)
    workspace = open_workspace(
        graph, size=config.graph.size, cache_dir=args.study / "cache", models_root=args.work / "models"
    )
    _check_pairs(workspace, args.study, pairs)
    _check_cache(workspace, {p["landmark"] for p in pairs} | {p["target"] for p in pairs})
    zoo = _zoo_models(args.study, args.work, {p["landmark"] for p in pairs})
    done = {(r["pair"], r["draw"], r["lr"], r["steps"]) for r in results}
    for draw in draws:  # draw-major: every pair is covered before the later draws
        for p in pairs:
            for recipe in RECIPES:
                if (p["pair"], draw, recipe["lr"], recipe["steps"]) in done:
                    continue
                finetune = FinetuneConfig(
                    steps=int(recipe["steps"]),
                    lr=float(recipe["lr"]),
                    lambda_ewc=LAMBDA_EWC,
                    draw=draw,
                    seed=SEED,
                    augment=False,
                )
                start = time.perf_counter()
                with single_threaded():
                    m = run_transfer(
                        workspace,
                        p["target"],
                        [p["landmark"], p["target"]],
                        zoo_config,
                        finetune,
                        landmark=zoo[p["landmark"]],
                    )
                seconds = time.perf_counter() - start
                results.append(
                    {
                        **p,
                        "draw": draw,
                        **recipe,
                        "lambda_ewc": LAMBDA_EWC,
                        "zero_shot": m.zero_shot_dice,
                        "final": m.final_dice,
                        "validation_set_dice": m.final_test_set_dice,
                        "train_cases": m.target_train_cases,
                        "landmark_source_dice": m.landmark_source_dice,
                        "cached": m.steps[-1].cached,
                        "seconds": seconds,
                        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                    }
                )
                args.out.parent.mkdir(parents=True, exist_ok=True)
                tmp = args.out.with_suffix(".tmp")
                tmp.write_text(json.dumps(results, indent=1))
                tmp.replace(args.out)
                print(
                    f"pair {p['pair']} {p['landmark']} -> {p['target']} draw {draw} {_label(recipe)}: "
                    f"{m.final_dice:.3f} (zero-shot {m.zero_shot_dice:.3f}, {seconds:.0f} s)",
                    flush=True,
                )
    print()
    print(summarize(results))


if __name__ == "__main__":
    main()
