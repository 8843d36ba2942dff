"""Graph construction: edges, storage, shared features, targets added later."""

import itertools
import json
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

import seqtransfer.graph.engine as engine_module
from seqtransfer.affinity import affinity
from seqtransfer.core.errors import ConfigError, StoreError
from seqtransfer.data.preprocess import PreprocessCache, PreprocessConfig
from seqtransfer.graph import GraphConfig, GraphStore, add_targets, build_graph, candidate_sources
from seqtransfer.selection import path_objective
from seqtransfer.selection.run import select_for_target

SHAPE = (16, 16, 16)
CONFIG = GraphConfig(size=16, volumes_per_task=4, max_pairs=6, n_components=4, max_slices=200)


def test_edges_follow_the_filter_and_formula(tasks, tmp_path: Path) -> None:
    graph = build_graph(tasks, tmp_path / "g", CONFIG, cache=PreprocessCache(tmp_path / "c", PreprocessConfig(16)))
    assert graph.number_of_nodes() == len(tasks) == 9
    by_name = {t.name: t for t in tasks}
    for a, b in itertools.combinations(by_name, 2):
        ta, tb = by_name[a], by_name[b]
        expected = ta.modality == tb.modality or ta.group == tb.group
        assert graph.has_edge(a, b) == expected, (a, b)
    # FLAIR lesion shares only the group of the tumour tasks: edges to *-tumour, none to *-edema
    assert graph.has_edge("Les-FLAIR-lesion", "A-T1-tumour")
    assert not graph.has_edge("Les-FLAIR-lesion", "A-T2-edema")
    params = json.loads((tmp_path / "g" / "params.json").read_text())
    h_scale = params["h_scale"]
    hs = [d["H"] for _, _, d in graph.edges(data=True)]
    assert h_scale == pytest.approx(float(np.median([h for h in hs if h > 0])))
    for _, _, d in graph.edges(data=True):
        assert d["weight"] == pytest.approx(0.5 * d["H"] / h_scale + 0.5 * (1 - d["R"]))
        assert 0 <= d["R"] <= 1 and d["H"] >= 0
    # tasks of one site and modality share images: their H to a common third task is equal
    assert graph.edges["A-T1-tumour", "B-T1-tumour"]["H"] == graph.edges["A-T1-edema", "B-T1-edema"]["H"]
    # tasks of one site and objective share labels: their R is equal
    assert graph.edges["A-T1-tumour", "B-T1-tumour"]["R"] == graph.edges["A-T2-tumour", "B-T2-tumour"]["R"]
    # node-link JSON with the attributes
    data = json.loads((tmp_path / "g" / "graph.json").read_text())
    node = next(n for n in data["nodes"] if n["id"] == "A-T1-tumour")
    assert {"site", "modality", "objective", "n_train", "role"} <= set(node)
    assert node["site"] == "A" and node["role"] == "source"
    assert all({"weight", "H", "R"} <= set(link) for link in data["links"])


def test_target_added_later_gives_identical_weights(tasks, tmp_path: Path) -> None:
    cache = PreprocessCache(tmp_path / "c", PreprocessConfig(16))
    target = "Les-FLAIR-lesion"
    together = build_graph(tasks, tmp_path / "together", CONFIG, targets=[target], cache=cache)
    sources_only = build_graph(tasks, tmp_path / "later", CONFIG, targets=[], cache=cache)
    assert target in sources_only  # without --target it is a source
    source_tasks = [t for t in tasks if t.name != target]
    build_graph(source_tasks, tmp_path / "later", CONFIG, cache=cache)
    calls = {"embed": 0, "R": 0}
    original, original_pair = engine_module.embed_volume, engine_module._pair_value

    def counting(pca, volume):
        calls["embed"] += 1
        return original(pca, volume)

    def counting_pair(features, item):
        calls["R"] += item.kind == "R"
        return original_pair(features, item)

    engine_module.embed_volume = counting
    engine_module._pair_value = counting_pair
    try:
        later = add_targets(tmp_path / "later", tasks, [target], cache=cache)
    finally:
        engine_module.embed_volume = original
        engine_module._pair_value = original_pair
    # only the target's edges are computed, never the source-source ones again
    assert 0 < calls["R"] <= later.degree(target)
    # only the target's 3 few-shot volumes are embedded; the sources' come from the cache
    assert calls["embed"] == CONFIG.target_cases
    assert set(together.edges) == set(later.edges) or {frozenset(e) for e in together.edges} == {
        frozenset(e) for e in later.edges
    }
    for a, b, d in together.edges(data=True):
        for key in ("H", "R", "weight"):
            assert later.edges[a, b][key] == d[key], (a, b, key)
    assert together.nodes[target]["role"] == later.nodes[target]["role"] == "target"
    assert together.nodes[target]["n_train"] == 3


def test_selection_on_built_graph_is_brute_force_optimal(tasks, tmp_path: Path) -> None:
    cache = PreprocessCache(tmp_path / "c", PreprocessConfig(16))
    target = "Les-FLAIR-lesion"
    graph = build_graph(tasks, tmp_path / "g", CONFIG, targets=[target], cache=cache)
    sources = candidate_sources(graph, target)
    selection = select_for_target(tmp_path / "g", target, lam=0.6, c_search=0.01, uniform_performance=True)
    saved = json.loads((tmp_path / "g" / "selections" / f"{target}.json").read_text())
    assert saved["path"] == selection.path and saved["landmark"] == selection.landmark == selection.path[0]
    assert set(saved) >= {
        "target",
        "landmark",
        "path",
        "objective",
        "lambda",
        "c_search",
        "max_length",
        "landmark_scores",
    }
    # brute force over every feasible path from the landmark
    direct = graph.edges[selection.landmark, target]["weight"]
    best = path_objective(graph, [selection.landmark, target], 0.6, 0.01)
    sub = graph.subgraph(sources | {target})
    for p in nx.all_simple_paths(sub, selection.landmark, target, cutoff=5):
        if len(p) > 2 and all(sub.edges[u, v]["weight"] < direct for u, v in zip(p, p[1:], strict=False)):
            best = min(best, path_objective(graph, p, 0.6, 0.01))
    assert selection.objective == pytest.approx(best, abs=1e-12)
    # the landmark is the argmin of the recorded scores
    scores = {r["source"]: r["score"] for r in saved["landmark_scores"]}
    assert selection.landmark == min(scores, key=lambda s: (scores[s], s))


def test_unknown_target_and_broken_store(tasks, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown target"):
        build_graph(tasks, tmp_path / "g", CONFIG, targets=["nope-T1-x"])
    with pytest.raises(StoreError, match="not found"):
        GraphStore(tmp_path / "missing").load()
    build_graph(tasks, tmp_path / "g", CONFIG, cache=PreprocessCache(tmp_path / "c", PreprocessConfig(16)))
    (tmp_path / "g" / "graph.json").write_text("{broken")
    with pytest.raises(StoreError, match="corrupt"):
        GraphStore(tmp_path / "g").load()


def test_official_mode_runs(tasks, tmp_path: Path) -> None:
    config = GraphConfig(size=16, volumes_per_task=3, mode="official", official_resize=16)
    graph = build_graph(tasks[:4], tmp_path / "g", config, cache=PreprocessCache(tmp_path / "c", PreprocessConfig(16)))
    assert graph.number_of_edges() > 0
    assert all(np.isfinite(d["weight"]) for _, _, d in graph.edges(data=True))


def test_affinity_formula_agrees_with_graph_weight_after_reweighting(tasks, tmp_path: Path) -> None:
    from dataclasses import replace

    from seqtransfer.graph.build import set_weights

    graph = build_graph(tasks[:4], tmp_path / "g", CONFIG, cache=PreprocessCache(tmp_path / "c", PreprocessConfig(16)))
    set_weights(graph, replace(CONFIG, alpha=0.9, beta=0.1), 2.0)
    for _, _, d in graph.edges(data=True):
        assert d["weight"] == pytest.approx(float(affinity(d["H"], d["R"], 0.9, 0.1, 2.0)))
