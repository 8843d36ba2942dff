"""The report's numbers, computed from the run store (pure functions of the records).

* :func:`method_table`: Dice per target and method, mean and standard deviation over draws
  and test sets (the paper's Table I, and with other method lists Tables II and III).
* :func:`lambda_columns`: Table III's columns; :func:`first_draw_paths`: each target's path in draw 0.
* :func:`win_rates`: how often ours beats each other method over paired (target, draw) runs.
* :func:`selection_quality`: how well each ranking of the sources (-w, the landmark score,
  LogME, LEEP, NCE) predicts the really trained direct-transfer Dice: Kendall tau, weighted
  tau (``scipy.stats.weightedtau``), Pearson r and the top-1 regret;
  :func:`selection_quality_means` their means over targets and draws.

Every mean here is over the finite values only and is NaN, without a warning, when there is
none (:func:`finite_mean`): a run where some score or Dice is undefined everywhere (all test
masks empty, a constant ranking) still gets its report, with "n/a" in that cell.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

#: row label of each method in the tables
LABELS = {
    "ours": "Ours (landmark + path)",
    "logme": "LogME + direct",
    "leep": "LEEP + direct",
    "mst": "MST (top-k by LogME)",
    "mtl": "MTL (top-k by LogME)",
    "scratch": "Scratch",
    "landmark_direct": "w/o STPS (landmark direct)",
    "random_landmark": "w/o LSI (random landmark + path)",
    "calibrated": "Ours, calibrated (leave-one-site-out)",
    "logme_stps": "LogME + STPS",
    "leep_stps": "LEEP + STPS",
    "unfrozen": "w/o frozen encoder (whole network, EWC)",
    "ours_leep": "Ours, LEEP term (eq. 7, O -> exp LEEP)",
}
TABLE_I = ("ours", "logme", "leep", "mst", "mtl", "scratch")
TABLE_II = (
    "ours",
    "landmark_direct",
    "random_landmark",
    "logme_stps",
    "leep_stps",
    "unfrozen",
    "calibrated",
    "ours_leep",
)


@dataclass(frozen=True)
class Cell:
    """Mean and standard deviation of the test-set Dice over draws (and variants)."""

    mean: float
    sd: float
    n: int
    per_draw: dict[int, float]
    #: a mean over targets: the 95 % bootstrap interval over them (NaN for a target's own cell)
    low: float = float("nan")
    high: float = float("nan")


def _finite(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _number(value: Any) -> float:
    """A stored number as a float; NaN for null (how the run store keeps NaN)."""
    return float("nan") if value is None else float(value)


def finite_mean(values: Iterable[Any]) -> float:
    """The mean of the finite values (None and NaN left out); NaN, without a warning, when none is."""
    finite = _finite(values)
    return float(np.mean(finite)) if finite else float("nan")


def method_key(result: Mapping[str, Any]) -> str:
    """The column a method record belongs to (the lambda sweep: one column per value)."""
    return f"lambda={result['variant']}" if result["method"] == "lambda" else str(result["method"])


def lambda_columns(methods: Sequence[Mapping[str, Any]]) -> list[str]:
    """The lambda sweep's columns (Table III), by increasing lambda."""
    return sorted({method_key(m) for m in methods if m["method"] == "lambda"}, key=lambda k: float(k.split("=")[1]))


def first_draw_paths(methods: Sequence[Mapping[str, Any]], method: str = "ours") -> dict[str, list[str]]:
    """Per target, the transfer path ``method`` took in draw 0 (landmark first)."""
    return {str(m["target"]): list(m["path"]) for m in methods if m["method"] == method and m["draw"] == 0}


def cells(methods: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], Cell]:
    """``(target, method key) -> Cell``.

    The spread is over every (draw, test set) score; variants of one draw (the random
    landmarks of "w/o LSI") are averaged per test set first, so each draw counts once.
    """
    grouped: dict[tuple[str, str, int], list[list[float]]] = {}
    for m in methods:
        key = (str(m["target"]), method_key(m), int(m["draw"]))
        sets = [float("nan") if v is None else float(v) for v in m.get("test_set_dice") or []]
        grouped.setdefault(key, []).append(sets)
    out: dict[tuple[str, str], dict[int, list[float]]] = {}
    for (target, column_key, draw), variants in grouped.items():
        # per test set over the variants; a set no variant could score stays NaN
        out.setdefault((target, column_key), {})[draw] = [finite_mean(column) for column in zip(*variants, strict=True)]
    result = {}
    for k, draws in out.items():
        values = _finite([v for sets in draws.values() for v in sets])
        per_draw = {d: finite_mean(s) for d, s in draws.items()}
        result[k] = Cell(
            mean=float(np.mean(values)) if values else float("nan"),
            sd=float(np.std(values)) if values else float("nan"),
            n=len(values),
            per_draw=per_draw,
        )
    return result


def method_table(
    methods: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    targets: Sequence[str],
    collections: Mapping[str, str],
) -> tuple[list[str], list[list[str]], list[list[Any]]]:
    """A table of targets (rows) x methods (columns), plus one average row per collection and
    one over every target: a target's cell is its mean ± sd over draws and test sets, an
    average row's the mean over targets with its 95 % bootstrap interval over targets.

    Returns:
        ``(header, markdown rows with the best of each row in bold, raw rows for CSV)``.
    """
    table = cells(methods)
    present = [c for c in columns if any((t, c) in table for t in targets)]
    header = ["target", *[LABELS.get(c, c) for c in present]]
    rows, raw = [], []

    def add(name: str, values: list[Cell | None], per_target_row: bool = False) -> None:
        means = [v.mean if v is not None and math.isfinite(v.mean) else -math.inf for v in values]
        best = max(means) if means else -math.inf
        text = []
        for v, m in zip(values, means, strict=True):
            if v is None or not math.isfinite(v.mean):
                text.append("n/a")
                continue
            if math.isfinite(v.low):
                s = f"{v.mean:.3f} [{v.low:.3f}, {v.high:.3f}]"
            else:
                s = f"{v.mean:.3f} ± {v.sd:.3f}" if v.n > 1 and not per_target_row else f"{v.mean:.3f}"
            text.append(f"**{s}**" if m == best and best > -math.inf else s)
        rows.append([name, *text])
        raw.append(
            [
                name,
                *[(v.mean if v is not None else None) for v in values],
                *[(v.sd if v is not None else None) for v in values],
            ]
        )

    for target in targets:
        add(target, [table.get((target, c)) for c in present])
    groups = [
        (collection, [t for t in targets if collections[t] == collection])
        for collection in sorted(set(collections[t] for t in targets))
    ]
    if len(groups) > 1:
        groups.append(("all targets", list(targets)))
    for collection, members in groups:
        avg: list[Cell | None] = []
        for c in present:
            means = _finite([table[(t, c)].mean for t in members if (t, c) in table])
            low, high = bootstrap_interval(means)
            avg.append(Cell(float(np.mean(means)), float(np.std(means)), len(means), {}, low, high) if means else None)
        add(f"mean, {collection} ({len(members)} target{'s' if len(members) > 1 else ''})", avg, per_target_row=True)
    return header, rows, raw


def _paired_with(
    methods: Sequence[Mapping[str, Any]], ours: str
) -> list[tuple[str, dict[tuple[str, int], float], dict[tuple[str, int], float]]]:
    """Per method other than ``ours``: its Dice per (target, draw) and ours' per (target, draw)."""
    by_key: dict[str, dict[tuple[str, int], float]] = {}
    for (target, key), cell in cells(methods).items():
        for draw, value in cell.per_draw.items():
            by_key.setdefault(key, {})[(target, draw)] = value
    mine = by_key.get(ours, {})
    return [(key, values, mine) for key, values in by_key.items() if key != ours]


def win_rates(methods: Sequence[Mapping[str, Any]], ours: str = "ours") -> dict[str, tuple[float, int]]:
    """Fraction of paired (target, draw) runs where ours scores higher (ties count half).

    Returns:
        ``method key -> (win rate, number of pairs)``.
    """
    out = {}
    for key, values, mine in _paired_with(methods, ours):
        pairs = [(mine[p], v) for p, v in values.items() if p in mine and math.isfinite(mine[p]) and math.isfinite(v)]
        if pairs:
            wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs)
            out[key] = (wins / len(pairs), len(pairs))
    return out


def bootstrap_interval(
    values: Sequence[float], n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (NaN, NaN with fewer than 2 finite values)."""
    x = np.asarray(_finite(values), dtype=float)
    if len(x) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    return float(np.quantile(means, tail)), float(np.quantile(means, 1.0 - tail))


def _per_target(pairs: Mapping[tuple[str, int], float]) -> list[float]:
    """Per target, the mean over its draws (the unit the intervals resample)."""
    by_target: dict[str, list[float]] = {}
    for (target, _draw), value in pairs.items():
        if math.isfinite(value):
            by_target.setdefault(target, []).append(value)
    return [float(np.mean(v)) for _, v in sorted(by_target.items())]


def paired_differences(methods: Sequence[Mapping[str, Any]], ours: str = "ours") -> dict[str, dict[str, float]]:
    """Per method, ours minus the method on paired (target, draw) runs: the mean over targets
    (each target's mean over its draws), its 95 % bootstrap interval over targets, and how many
    targets and pairs it rests on."""
    out = {}
    for key, values, mine in _paired_with(methods, ours):
        diffs = {p: mine[p] - v for p, v in values.items() if p in mine and math.isfinite(mine[p]) and math.isfinite(v)}
        per_target = _per_target(diffs)
        if per_target:
            lo, hi = bootstrap_interval(per_target)
            out[key] = {
                "mean": float(np.mean(per_target)),
                "low": lo,
                "high": hi,
                "targets": float(len(per_target)),
                "pairs": float(len(diffs)),
            }
    return out


#: fewest scored sources a ranking's agreement is computed for
MIN_RANKED = 3


def rank_scores(truth: Sequence[float], score: Sequence[float]) -> dict[str, float]:
    """Agreement of a score (higher = better source) with the measured Dice.

    Returns:
        Kendall tau, weighted tau (``scipy.stats.weightedtau``, which weighs the top of the
        ranking more), Pearson r, and the top-1 regret: best Dice minus the Dice of the
        source the score ranks first; all NaN (n/a) when fewer than :data:`MIN_RANKED`
        sources have both a score and a measured Dice (two sources always give tau = +-1).
    """
    y = np.asarray(truth, dtype=float)
    s = np.asarray(score, dtype=float)
    ok = np.isfinite(y) & np.isfinite(s)
    y, s = y[ok], s[ok]
    if len(y) < MIN_RANKED or np.ptp(s) == 0:  # a constant score ranks nothing, not even a top-1
        return {
            "kendall_tau": float("nan"),
            "weighted_tau": float("nan"),
            "pearson": float("nan"),
            "top1_regret": float("nan"),
            "n": float(len(y)),
        }
    tau = stats.kendalltau(s, y).statistic
    wtau = stats.weightedtau(s, y).statistic
    pearson = stats.pearsonr(s, y).statistic if np.std(s) > 0 and np.std(y) > 0 else float("nan")
    regret = float(y.max() - y[int(np.argmax(s))])
    return {
        "kendall_tau": float(tau),
        "weighted_tau": float(wtau),
        "pearson": float(pearson),
        "top1_regret": regret,
        "n": float(len(y)),
    }


def _leep_score(w: Any, terms: Mapping[str, Any], leep: Any) -> float:
    """The ``leep`` landmark score w / (zeta * rho * exp(LEEP)) from recorded terms (inf when the denominator is 0)."""
    t = math.exp(_number(leep)) if math.isfinite(_number(leep)) else 0.0
    denominator = _number(terms.get("zeta")) * _number(terms.get("rho")) * t
    return _number(w) / denominator if denominator > 0 else math.inf


def selection_quality(
    selections: Sequence[Mapping[str, Any]],
    scores: Sequence[Mapping[str, Any]],
    direct: Mapping[tuple[str, str, int], float],
    calibrated: Mapping[str, tuple[float, float]] | None = None,
    h_scale: float = 1.0,
) -> list[dict[str, Any]]:
    """Per (target, draw) with measured direct transfers, each ranking's agreement with them.

    Args:
        selections: the runner's ``selection`` records (weights w and landmark scores).
        scores: the runner's ``scores`` records with their target and draw added.
        direct: ``(source, target, draw) -> direct-transfer Dice``.
        calibrated: per target, the leave-one-site-out ``(alpha, beta)``: ranks the sources by
            the calibrated -w (eq. 5 from the recorded H and R) too.
        h_scale: the graph's H scale (eq. 5), for the calibrated -w.

    Returns:
        One row per (target, draw, ranking), ordered by target and draw (not by the order the
        records were stored in, which a resumed run changes).
    """
    rows = []
    for sel in sorted(selections, key=lambda r: (str(r["target"]), int(r["draw"]))):
        target, draw = sel["target"], int(sel["draw"])
        sources = sorted(s for s in sel["weights"] if (s, target, draw) in direct)
        if len(sources) < 2 or len(sources) < len(sel["weights"]):  # only draws where every source was measured
            continue
        truth = [direct[(s, target, draw)] for s in sources]
        by_source = {r["source"]: r for r in scores if r["target"] == target and int(r["draw"]) == draw}
        rankings = {  # the store keeps NaN as null: an undefined score ranks nothing
            "-w (affinity)": [-_number(sel["weights"][s]) for s in sources],
            "landmark score (-score)": [-_number(sel["landmark_scores"].get(s)) for s in sources],
            "source held-out Dice (O)": [_number(sel["zoo_dice"].get(s)) for s in sources],
        }
        terms = sel.get("terms") or {}
        if all(s in terms for s in sources):  # each term of eq. 5-7 alone (runs recorded since they are stored)
            rankings["-H (image distance)"] = [-_number(terms[s].get("H")) for s in sources]
            rankings["R (label similarity)"] = [_number(terms[s].get("R")) for s in sources]
            rankings["zeta (training cases)"] = [_number(terms[s].get("zeta")) for s in sources]
            rankings["rho (density)"] = [_number(terms[s].get("rho")) for s in sources]
            if calibrated and target in calibrated:
                alpha, beta = calibrated[target]
                rankings["calibrated -w (leave-one-site-out)"] = [
                    -(alpha * _number(terms[s].get("H")) / h_scale + beta * (1.0 - _number(terms[s].get("R"))))
                    for s in sources
                ]
        if all(s in terms for s in sources) and all(s in by_source for s in sources):
            rankings["landmark score, LEEP term (-score)"] = [
                -_leep_score(sel["weights"][s], terms[s], by_source[s].get("leep")) for s in sources
            ]
        for name in ("logme", "leep", "nce"):
            if all(s in by_source for s in sources):
                rankings[name.upper() if name != "logme" else "LogME"] = [
                    _number(by_source[s].get(name)) for s in sources
                ]
        for name, values in rankings.items():
            rows.append(
                {"target": target, "draw": draw, "ranking": name, **rank_scores(truth, values), "best_dice": max(truth)}
            )
    return rows


#: the agreement measures of :func:`rank_scores` averaged by :func:`selection_quality_means`
QUALITY_METRICS = ("kendall_tau", "weighted_tau", "pearson", "top1_regret")


def selection_quality_means(quality: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per ranking (in order of first appearance), each measure's mean over its (target, draw) rows.

    Returns:
        Rows ``{"ranking", "n": rows of that ranking, MEASURE: mean over the rows where it is
        finite (NaN when none is), MEASURE + "_n": how many rows that mean is over,
        MEASURE + "_interval": the 95 % bootstrap interval over targets (each target's mean
        over its draws), MEASURE + "_targets": how many targets, "targets": Kendall tau's}``.
    """
    by_ranking: dict[str, list[Mapping[str, Any]]] = {}
    for q in quality:
        by_ranking.setdefault(str(q["ranking"]), []).append(q)
    out = []
    for ranking, rows in by_ranking.items():
        entry: dict[str, Any] = {"ranking": ranking, "n": len(rows)}
        for measure in QUALITY_METRICS:
            entry[measure] = finite_mean(r[measure] for r in rows)
            entry[f"{measure}_n"] = len(_finite(r[measure] for r in rows))
            per_target = _per_target({(str(r["target"]), int(r["draw"])): float(r[measure]) for r in rows})
            entry[f"{measure}_interval"] = bootstrap_interval(per_target)
            entry[f"{measure}_targets"] = len(per_target)
        entry["targets"] = entry["kendall_tau_targets"]
        out.append(entry)
    return out


def sample_size_curve(
    methods: Sequence[Mapping[str, Any]], sample: Sequence[Mapping[str, Any]], protocol_cases: int = 3
) -> list[dict[str, Any]]:
    """The sample-size study: Dice against the number of labelled target cases, per method.

    Every point is scored on the target's first test set: the study's own runs (``sample``,
    records of kind ``sample_size``) and, for ``protocol_cases``, the protocol's runs of the
    same methods (their first test set's Dice).

    Returns:
        Rows ``{"method", "n_train", "mean": over targets (each target's mean over its draws),
        "low", "high": its 95 % bootstrap interval over targets, "targets", "runs"}``, by
        method and then number of cases.
    """
    studied = {str(r["method"]) for r in sample}
    values: dict[tuple[str, int], dict[tuple[str, int], float]] = {}
    for r in methods:
        if r["method"] in studied and not r.get("variant") and r.get("test_set_dice"):
            values.setdefault((str(r["method"]), protocol_cases), {})[(str(r["target"]), int(r["draw"]))] = _number(
                r["test_set_dice"][0]
            )
    for r in sample:
        values.setdefault((str(r["method"]), int(r["n_train"])), {})[(str(r["target"]), int(r["draw"]))] = _number(
            r.get("dice")
        )
    rows = []
    for (method, n), pairs in sorted(values.items()):
        per_target = _per_target(pairs)
        low, high = bootstrap_interval(per_target)
        rows.append(
            {
                "method": method,
                "n_train": n,
                "mean": finite_mean(per_target),
                "low": low,
                "high": high,
                "targets": len(per_target),
                "runs": len(_finite(pairs.values())),
            }
        )
    return rows
