"""Selecting the landmark and the path for a target of a stored graph, and saving it.

Orchestration around the pure functions of :mod:`~seqtransfer.selection.landmark` and
:mod:`~seqtransfer.selection.path`: where O comes from, which sources a target may use, and
the file ``GRAPH_DIR/selections/TARGET.json``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import networkx as nx

from seqtransfer.core.atomic import write_json
from seqtransfer.core.errors import ConfigError
from seqtransfer.graph.sources import candidate_sources
from seqtransfer.graph.store import GraphStore
from seqtransfer.selection.errors import SelectionError
from seqtransfer.selection.landmark import MIN_LEARNED_DICE, default_w_c, select_landmark
from seqtransfer.selection.path import DEFAULT_C_SEARCH, DEFAULT_LAMBDA, DEFAULT_MAX_LENGTH, optimal_path

logger = logging.getLogger(__name__)


def load_performance(path: str | Path) -> dict[str, float]:
    """O per source from a CSV (``task,dice``) or JSON (``{"task": dice}``) file.

    Raises:
        ConfigError: missing or malformed file (the line is named for CSV).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{p}: file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: unreadable ({exc})") from exc
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
        if not isinstance(data, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in data.values()
        ):
            raise ConfigError(f"{p}: expected a JSON object mapping task names to Dice")
        values = {str(k): float(v) for k, v in data.items()}
    else:
        rows = list(csv.reader(text.splitlines()))
        if not rows or [c.strip().lower() for c in rows[0][:2]] != ["task", "dice"]:
            raise ConfigError(f"{p}: expected header 'task,dice'")
        values = {}
        for lineno, row in enumerate(rows[1:], start=2):
            if not row or all(not c.strip() for c in row):
                continue
            try:
                values[row[0].strip()] = float(row[1])
            except (IndexError, ValueError) as exc:
                raise ConfigError(f"{p}: line {lineno}: expected task,dice with a numeric dice") from exc
    bad = sorted(k for k, v in values.items() if not (math.isfinite(v) and 0.0 <= v <= 1.0))
    if bad:
        raise ConfigError(f"{p}: Dice must be in [0, 1] (task {bad[0]!r})")
    return values


@dataclass(frozen=True)
class Selection:
    """A target's landmark and transfer path, as saved in ``selections/TARGET.json``."""

    target: str
    landmark: str
    path: list[str]
    objective: float
    step_weights: list[float]
    direct_weight: float
    lam: float
    c_search: float
    max_length: int
    w_c: float | None
    performance_source: str
    landmark_scores: list[dict[str, Any]] = field(default_factory=list)
    min_source_dice: float = MIN_LEARNED_DICE
    target_affinity_cases: int | None = None
    target_labelled_cases: int | None = None
    score: str = "paper"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``selections/TARGET.json``); ``lam`` is saved as ``lambda``, infinite scores as null."""
        data = asdict(self)
        data["lambda"] = data.pop("lam")
        for row in data["landmark_scores"]:
            row.update({k: None for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)})
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Selection:
        """The selection of :meth:`to_dict`'s form (an infinite score stays null); a field added
        since a file was written takes its default.

        Raises:
            ConfigError: a field without a default is missing.
        """
        keys = {f.name: "lambda" if f.name == "lam" else f.name for f in fields(cls)}
        required = [keys[f.name] for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [key for key in required if key not in data]
        if missing:
            raise ConfigError(f"selection without {', '.join(missing)}")
        return cls(**{name: data[key] for name, key in keys.items() if key in data})


def stored_selection(graph_dir: str | Path, target: str) -> Selection | None:
    """The selection ``seqtransfer select`` saved for ``target`` (``selections/TARGET.json``),
    None when there is none.

    Raises:
        ConfigError: the file is unreadable or corrupt (it is named).
    """
    path = GraphStore(graph_dir).selection_path(target)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ConfigError("a selection must be a JSON object")
        selection = Selection.from_dict(data)
    except (OSError, json.JSONDecodeError, ConfigError, TypeError) as exc:
        raise ConfigError(f"{path}: corrupt selection ({exc})") from exc
    names = [selection.landmark, *selection.path] if isinstance(selection.path, list) else [None]
    if not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{path}: corrupt selection (landmark and path must be task names)")
    return selection


def zoo_recorded(graph: nx.Graph, target: str) -> bool:
    """Whether every source connected to ``target`` has its zoo model recorded on the graph
    (``zoo_key``, written by ``seqtransfer zoo train``); no model is loaded, and a target that
    is not in the graph gives False (the selection names it)."""
    if target not in graph:
        return False
    connected = [s for s in candidate_sources(graph, target) if graph.has_edge(s, target)]
    return bool(connected) and all(graph.nodes[s].get("zoo_key") for s in connected)


def resolve_score(graph_dir: str | Path, target: str, score: str, other_performance: bool = False) -> str:
    """The landmark score ``auto`` stands for: ``leep`` when every connected source has its zoo
    model and no other O was asked for (``other_performance``: a performance file or uniform
    O), else ``paper``; any other score is returned as it is."""
    if score != "auto":
        return score
    if other_performance:
        return "paper"
    graph, _, _, _ = GraphStore(graph_dir).load()
    return "leep" if zoo_recorded(graph, target) else "paper"


def select_for_target(
    graph_dir: str | Path,
    target: str,
    lam: float = DEFAULT_LAMBDA,
    max_length: int = DEFAULT_MAX_LENGTH,
    c_search: float = DEFAULT_C_SEARCH,
    w_c: float | None = None,
    performance: dict[str, float] | None = None,
    performance_label: str | None = None,
    uniform_performance: bool = False,
    save: bool = True,
    min_dice: float = MIN_LEARNED_DICE,
    transferability: dict[str, float] | None = None,
) -> Selection:
    """Landmark (eq. 6-7) and optimal path (eq. 8-9) for a target of a stored graph.

    ``transferability`` (T = exp(LEEP) per connected source) selects by the ``leep`` score.

    O (METHOD section 4) comes, in this order, from ``performance`` (a user file), else the
    graph's ``dice`` node attributes (written by the model zoo), else, only when
    ``uniform_performance`` is set, O = 1 for every source (landmark then ranks by w, zeta
    and rho alone). Which one was used is recorded in the result.

    Raises:
        SelectionError: the target is not a node or has no connected source.
        ConfigError: a source lacks O and no fallback was allowed; bad parameters.
    """
    store = GraphStore(graph_dir)
    graph, _, _, _ = store.load()
    selection = select_in_graph(
        graph,
        target,
        lam=lam,
        max_length=max_length,
        c_search=c_search,
        w_c=w_c,
        performance=performance,
        performance_label=performance_label,
        uniform_performance=uniform_performance,
        where=str(graph_dir),
        min_dice=min_dice,
        transferability=transferability,
    )
    if save:
        write_json(store.selection_path(target), selection.to_dict())
    return selection


def select_in_graph(
    graph: nx.Graph,
    target: str,
    lam: float = DEFAULT_LAMBDA,
    max_length: int = DEFAULT_MAX_LENGTH,
    c_search: float = DEFAULT_C_SEARCH,
    w_c: float | None = None,
    performance: dict[str, float] | None = None,
    performance_label: str | None = None,
    uniform_performance: bool = False,
    where: str = "the graph",
    min_dice: float = MIN_LEARNED_DICE,
    transferability: dict[str, float] | None = None,
) -> Selection:
    """:func:`select_for_target` on a graph in memory (nothing read or written).

    ``transferability`` (T = exp(LEEP) of each connected source's model on the target's
    labelled cases) selects by the ``leep`` score: O replaced by T in eq. 7.

    Raises:
        SelectionError: the target is not a node or has no connected source.
        ConfigError: a source lacks O and no fallback was allowed; bad parameters.
    """
    if target not in graph:
        targets = sorted(n for n, d in graph.nodes(data=True) if d.get("role") == "target")
        hint = (
            f" (targets of this graph: {', '.join(targets)})"
            if targets
            else " (add it with `seqtransfer graph build --target`)"
        )
        raise SelectionError(f"target {target!r} is not in the graph {where}{hint}")
    sources = candidate_sources(graph, target)
    connected = sorted(s for s in sources if graph.has_edge(s, target))
    if not connected:
        raise SelectionError(
            f"target {target!r} has no edge to any source: it shares neither modality nor objective group with them"
        )
    unusable: dict[str, str] = {}
    if performance is not None:
        source_label = performance_label or "user file"
        missing = [s for s in connected if s not in performance]
        if missing:
            raise ConfigError(f"{source_label}: no Dice for source(s) {', '.join(missing[:5])}")
        perf = performance
    elif all("dice" in graph.nodes[s] for s in connected):
        source_label = "model zoo (graph node attribute 'dice')"
        perf = {s: float(graph.nodes[s]["dice"]) for s in connected}
    elif uniform_performance:
        source_label = "uniform (O = 1 for every source; no source model measured yet)"
        perf = {s: 1.0 for s in connected}
        # with O unmeasured, a source whose label was absent from every sampled volume would
        # look as good a start as any
        unusable = {
            s: f"none of its {len(graph.nodes[s].get('affinity_cases', []))} sampled label volumes has foreground"
            for s in connected
            if graph.nodes[s].get("labelled_volumes") == 0
        }
        for s, why in unusable.items():
            logger.warning("%s: %s; not a landmark candidate", s, why)
    else:
        missing = [s for s in connected if "dice" not in graph.nodes[s]]
        raise ConfigError(
            f"no objective performance O for source(s) {', '.join(missing[:3])}"
            f"{' and more' if len(missing) > 3 else ''}: "
            "train the zoo, pass --performance FILE, or --uniform-performance"
        )
    logger.info("%s: O of %d connected source(s) from %s", target, len(connected), source_label)
    has_source_edges = any(graph.has_edge(a, b) for a in sources for b in graph.neighbors(a) if b in sources)
    w_c_used = w_c if w_c is not None else (default_w_c(graph, sources) if has_source_edges else None)
    landmark, scores = select_landmark(
        graph,
        target,
        sources,
        performance=perf,
        w_c=w_c_used,
        min_dice=min_dice,
        transferability=transferability,
        unusable=unusable,
    )
    result = optimal_path(graph, landmark, target, sources, lam=lam, c_search=c_search, max_length=max_length)
    ranked = sorted(scores.values(), key=lambda s: (s.excluded is not None, s.score, s.source))
    selection = Selection(
        target=target,
        landmark=landmark,
        path=list(result.path),
        objective=result.objective,
        step_weights=list(result.step_weights),
        direct_weight=float(graph.edges[landmark, target]["weight"]),
        lam=lam,
        c_search=c_search,
        max_length=max_length,
        w_c=w_c_used,
        performance_source=source_label,
        landmark_scores=[asdict(s) for s in ranked],
        min_source_dice=min_dice,
        target_affinity_cases=len(graph.nodes[target].get("affinity_cases", [])) or None,
        target_labelled_cases=graph.nodes[target].get("n_cases"),
        score="paper" if transferability is None else "leep",
    )
    return selection
