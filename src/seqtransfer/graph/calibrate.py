"""Choosing alpha and beta of eq. 5 from measured transfers (METHOD section 2, "Calibration").

Only the ratio of alpha to beta changes a ranking, so the search is over ``a`` in [0, 1] with
``alpha = a`` and ``beta = 1 - a``: w keeps the scale that ``c_search`` and ``w_c`` are
expressed in. Optuna's TPE sampler (Bayesian optimisation, seeded) maximises the agreement
between -w(s, t) and the measured transfer Dice A(s -> t): by default the mean over targets
of the Kendall tau *within* each target (how the sources rank for one target, which is what
the landmark needs), over the targets with at least 3 measured transfers. A tau pooled over
all pairs (``objective="pooled"``) mostly learns which targets are easy.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import numpy as np
from scipy import stats

from seqtransfer.affinity import affinity
from seqtransfer.core.errors import ConfigError


@dataclass(frozen=True)
class Transfer:
    """A measured transfer: source model fine-tuned on the target, its Dice there."""

    source: str
    target: str
    dice: float


@dataclass(frozen=True)
class CalibrationResult:
    """What calibration chose and how the rank agreement moved.

    Attributes:
        alpha: chosen weight of H / H_scale.
        beta: chosen weight of 1 - R.
        tau_before: Kendall tau of -w and Dice with the previous alpha, beta.
        tau_after: the same with the chosen ones.
        pearson_before: Pearson r of -w and Dice before.
        pearson_after: Pearson r after.
        n_pairs: transfers used (those whose pair is an edge of the graph).
        skipped: transfers whose pair is not an edge of the graph.
    """

    alpha: float
    beta: float
    tau_before: float
    tau_after: float
    pearson_before: float
    pearson_after: float
    n_pairs: int
    skipped: int


def read_transfers(path: str | Path) -> list[Transfer]:
    """Read a CSV with header ``source,target,dice``.

    Raises:
        ConfigError: missing file, wrong header, or a malformed row (the line is named).
    """
    p = Path(path)
    try:
        with open(p, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except FileNotFoundError as exc:
        raise ConfigError(f"{p}: file not found") from exc
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{p}: unreadable ({exc})") from exc
    if not rows or [c.strip().lower() for c in rows[0][:3]] != ["source", "target", "dice"]:
        raise ConfigError(f"{p}: expected header 'source,target,dice'")
    transfers = []
    for lineno, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        try:
            dice = float(row[2])
        except (IndexError, ValueError) as exc:
            raise ConfigError(f"{p}: line {lineno}: expected source,target,dice with a numeric dice") from exc
        if not np.isfinite(dice):
            raise ConfigError(f"{p}: line {lineno}: dice must be finite")
        transfers.append(Transfer(row[0].strip(), row[1].strip(), dice))
    if not transfers:
        raise ConfigError(f"{p}: no transfers listed")
    return transfers


def _weights(h: np.ndarray, r: np.ndarray, alpha: float, beta: float, h_scale: float) -> np.ndarray:
    return np.asarray(affinity(h, r, alpha, beta, h_scale), dtype=float)


def rank_agreement(weights: np.ndarray, dice: np.ndarray) -> tuple[float, float]:
    """Kendall tau and Pearson r between -w and Dice (0 where undefined, e.g. constant input)."""
    if len(weights) < 2 or np.ptp(weights) == 0 or np.ptp(dice) == 0:
        return 0.0, 0.0
    tau = stats.kendalltau(-weights, dice).statistic
    pearson = stats.pearsonr(-weights, dice).statistic
    return float(np.nan_to_num(tau)), float(np.nan_to_num(pearson))


def within_target_tau(weights: np.ndarray, dice: np.ndarray, targets: Sequence[str]) -> float:
    """Mean over targets (with 3+ transfers) of the Kendall tau between -w and Dice within each."""
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(targets):
        groups.setdefault(t, []).append(i)
    taus = [rank_agreement(weights[idx], dice[idx])[0] for idx in groups.values() if len(idx) >= 3]
    return float(np.mean(taus)) if taus else 0.0


def calibrate(
    graph: nx.Graph,
    transfers: Sequence[Transfer],
    h_scale: float,
    alpha: float,
    beta: float,
    n_trials: int = 50,
    seed: int = 0,
    objective: str = "within",
) -> CalibrationResult:
    """Choose alpha, beta maximising the agreement of -w with measured Dice (module docstring).

    Args:
        graph: a graph whose edges carry ``H`` and ``R``.
        transfers: measured transfers; pairs that are not edges are skipped.
        h_scale: the graph's H scale.
        alpha: current alpha (for the "before" numbers).
        beta: current beta.
        n_trials: Optuna trials.
        seed: sampler seed.
        objective: ``within`` (mean within-target Kendall tau; the before/after taus of the
            result are this mean) or ``pooled`` (one tau over every pair).

    Raises:
        ConfigError: fewer than 3 usable transfers (for ``within``: no target with 3), an
            unknown task or objective.
    """
    import optuna

    unknown = sorted({n for t in transfers for n in (t.source, t.target)} - set(graph.nodes))
    if unknown:
        raise ConfigError(f"transfers name task(s) not in the graph: {', '.join(unknown[:5])}")
    used = [t for t in transfers if graph.has_edge(t.source, t.target)]
    if len(used) < 3:
        raise ConfigError(f"calibration needs at least 3 transfers along graph edges, got {len(used)}")
    h = np.array([graph.edges[t.source, t.target]["H"] for t in used], dtype=float)
    r = np.array([graph.edges[t.source, t.target]["R"] for t in used], dtype=float)
    dice = np.array([t.dice for t in used], dtype=float)
    names = [t.target for t in used]
    if objective not in ("within", "pooled"):
        raise ConfigError(f"calibration objective must be 'within' or 'pooled', got {objective!r}")
    if objective == "within" and not any(names.count(t) >= 3 for t in set(names)):
        raise ConfigError("within-target calibration needs a target with at least 3 transfers along graph edges")

    def agreement(a: float, b: float) -> tuple[float, float]:
        weights = _weights(h, r, a, b, h_scale)
        tau, pearson = rank_agreement(weights, dice)
        return (within_target_tau(weights, dice, names) if objective == "within" else tau), pearson

    tau_before, pearson_before = agreement(alpha, beta)

    def score(trial: optuna.Trial) -> float:
        a = trial.suggest_float("alpha", 0.0, 1.0)
        return agreement(a, 1.0 - a)[0]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    # the current weights and the two pure terms are evaluated first, so calibration never
    # returns something worse than what it started from
    a0 = alpha / (alpha + beta)
    for start in sorted({a0, 0.0, 1.0}):
        study.enqueue_trial({"alpha": start})
    study.optimize(score, n_trials=max(n_trials, 3))
    best = float(study.best_params["alpha"])
    tau_after, pearson_after = agreement(best, 1.0 - best)
    return CalibrationResult(
        alpha=best,
        beta=1.0 - best,
        tau_before=tau_before,
        tau_after=tau_after,
        pearson_before=pearson_before,
        pearson_after=pearson_after,
        n_pairs=len(used),
        skipped=len(transfers) - len(used),
    )
