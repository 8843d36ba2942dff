"""Source models that learned nothing are never landmarks (METHOD section 4)."""

from __future__ import annotations

import json
import math

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seqtransfer.selection import select_landmark
from seqtransfer.selection.errors import SelectionError
from seqtransfer.selection.landmark import MIN_LEARNED_DICE


def _graph(
    weights: list[float], o: list[float], n_train: list[int], links: list[tuple[int, int, float]]
) -> tuple[nx.Graph, list[str]]:
    g = nx.Graph()
    names = [f"s{i}" for i in range(len(weights))]
    for name, n in zip(names, n_train, strict=True):
        g.add_node(name, role="source", site=name, n_train=n)
    g.add_node("t", role="target", site="t")
    for name, w in zip(names, weights, strict=True):
        g.add_edge(name, "t", weight=w)
    for a, b, w in links:
        if a != b:
            g.add_edge(names[a], names[b], weight=w)
    return g, names


@settings(max_examples=150, deadline=None)
@given(
    st.integers(2, 7).flatmap(
        lambda n: st.tuples(
            st.lists(st.floats(0.01, 2.0), min_size=n, max_size=n),
            st.lists(st.sampled_from([0.0, 0.0, 1e-4, 0.0005, 0.03, 0.2, 0.5, 0.9]), min_size=n, max_size=n),
            st.lists(st.integers(0, 60), min_size=n, max_size=n),
            st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1), st.floats(0.01, 2.0)), max_size=3 * n),
        )
    )
)
def test_a_source_that_learned_nothing_is_never_the_landmark_while_one_that_learned_is_reachable(case) -> None:
    weights, o, n_train, links = case
    graph, names = _graph(weights, o, n_train, links)
    performance = dict(zip(names, o, strict=True))
    learned = [s for s in names if performance[s] >= MIN_LEARNED_DICE]
    if not learned:
        with pytest.raises(SelectionError, match="learned its task") as info:
            select_landmark(graph, "t", names, performance=performance)
        assert "\n" not in str(info.value)
        return
    landmark, scores = select_landmark(graph, "t", names, performance=performance)
    assert performance[landmark] >= MIN_LEARNED_DICE
    for s in names:
        assert (scores[s].excluded is None) == (performance[s] >= MIN_LEARNED_DICE)
    # independent check: the landmark is the argmin of w / (zeta * rho * O) over the learners
    finite = {s: scores[s].score for s in learned}
    best = min(finite.values())
    assert scores[landmark].score == best or (math.isinf(best) and landmark == min(learned))


def test_the_issue_case_a_nearly_zero_o_no_longer_wins() -> None:
    """11 of 12 models at O = 0 and one at 0.0005: before, the 0.0005 model was the landmark."""
    graph, names = _graph(
        [0.5] * 4, [0.0, 0.0, 0.0005, 0.3], [20] * 4, [(0, 1, 0.4), (1, 2, 0.4), (2, 3, 0.4), (3, 0, 0.4)]
    )
    landmark, scores = select_landmark(graph, "t", names, performance={"s0": 0.0, "s1": 0.0, "s2": 0.0005, "s3": 0.3})
    assert landmark == "s3" and scores["s2"].excluded and "0.0005" in scores["s2"].excluded
    with pytest.raises(SelectionError, match="none of its 3 connected source models learned"):
        select_landmark(
            graph.subgraph(["s0", "s1", "s2", "t"]).copy(),
            "t",
            names[:3],
            performance={"s0": 0.0, "s1": 0.0, "s2": 0.0005},
        )
    # the threshold is an option: at 0 every model is a candidate again
    landmark, _ = select_landmark(
        graph, "t", names, performance={"s0": 0.0, "s1": 0.0, "s2": 0.0005, "s3": 0.0}, min_dice=0.0
    )
    assert landmark == "s2"


def test_select_cli_shows_the_models_that_learned_nothing(tmp_path, run_cli) -> None:
    from seqtransfer.graph.config import GraphConfig
    from seqtransfer.graph.store import GraphStore

    graph, names = _graph([0.5, 0.6, 0.7], [0, 0, 0], [20] * 3, [(0, 1, 0.4), (1, 2, 0.4)])
    store = GraphStore(tmp_path / "g")
    store.save(graph, GraphConfig(mode="official"), h_scale=1.0, pca=None)
    perf = tmp_path / "o.json"
    perf.write_text(json.dumps({"s0": 0.0, "s1": 0.4, "s2": 0.01}))
    run = run_cli
    code, out, err = run("select", "--graph", str(tmp_path / "g"), "--target", "t", "--performance", str(perf))
    assert code == 0, err
    assert "landmark: s1" in out and out.count("did not learn") == 2 and "left out: 2 source model(s)" in out
    saved = json.loads((tmp_path / "g" / "selections" / "t.json").read_text())
    assert sorted(r["source"] for r in saved["landmark_scores"] if r["excluded"]) == ["s0", "s2"]
    perf.write_text(json.dumps({"s0": 0.0, "s1": 0.02, "s2": 0.01}))
    code, out, err = run("select", "--graph", str(tmp_path / "g"), "--target", "t", "--performance", str(perf))
    assert code == 2 and "none of its 3 connected source models learned" in err and len(err.strip().splitlines()) == 1


def test_zoo_train_warns_about_a_model_that_learned_nothing(dataset_factory, tmp_path, run_cli) -> None:
    """A 1-voxel structure and one training step: the model learns nothing, and says so."""
    from seqtransfer.data.io import write_image

    sites = {f"case_{i:03d}": ("A" if i < 4 else "B") for i in range(8)}
    root = dataset_factory(
        "Dataset001_Tiny", n_cases=8, channels=("T1",), labels=("dot",), shape=(16, 16, 16), sites=sites, seed=3
    )
    for label_file in (root / "labelsTr").iterdir():  # one foreground voxel per case
        label = np.zeros((16, 16, 16), np.uint8)
        label[8, 8, 8] = 1
        write_image(label_file, label, np.eye(4))
    for image_file in (root / "imagesTr").iterdir():
        write_image(image_file, np.random.default_rng(0).normal(100, 5, (16, 16, 16)).astype(np.float32), np.eye(4))
    run = run_cli

    code, _, err = run(
        "graph", "build", root, "--out", tmp_path / "g", "--target", "B-T1-dot", "--size", 16, "--volumes", 2
    )
    assert code == 0, err
    code, out, err = run("zoo", "train", "--graph", tmp_path / "g", "--steps", 1)
    assert code == 0, err
    metrics = json.loads(next((tmp_path / "g" / "zoo" / "A-T1-dot").glob("*/metrics.json")).read_text())
    assert metrics["dice"] < MIN_LEARNED_DICE and metrics["learned"] is False
    assert "did not learn" in out and "A-T1-dot: the source model learned nothing" in err
    code, _, err = run("select", "--graph", tmp_path / "g", "--target", "B-T1-dot")
    assert code == 2 and "learned its task" in err


def test_a_declared_label_never_drawn_is_no_landmark_when_o_is_not_measured(dataset_factory, tmp_path, caplog) -> None:
    """A source whose label is declared in dataset.json but absent from every case: the graph
    records that none of its sampled label volumes has foreground, and with O unmeasured
    (``--uniform-performance``) it is no landmark candidate, with the reason in its row."""
    import logging

    import nibabel as nib

    from seqtransfer.data.dataset import parse_dataset
    from seqtransfer.data.preprocess import PreprocessCache
    from seqtransfer.data.tasks import split_tasks
    from seqtransfer.graph import GraphConfig, build_graph
    from seqtransfer.selection.run import select_in_graph

    sites = {f"case_{i:03d}": ("A" if i < 5 else "B") for i in range(10)}
    src = dataset_factory("Dataset001_Src", n_cases=10, channels=("T1",), labels=("tumour", "edema"), sites=sites)
    for path in (src / "labelsTr").glob("*.nii.gz"):  # edema (2) declared, never drawn
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
        nib.save(nib.Nifti1Image(np.where(data == 2, 0, data).astype(np.uint8), img.affine), str(path))
    tgt = dataset_factory("Dataset002_Tgt", n_cases=8, channels=("T1",), labels=("edema",), seed=3)
    tasks = split_tasks([parse_dataset(src)[0], parse_dataset(tgt)[0]])
    target = next(t.name for t in tasks if t.dataset.root == tgt)
    config = GraphConfig(size=16, volumes_per_task=3, max_pairs=4, n_components=3, max_slices=100)
    graph = build_graph(tasks, tmp_path / "g", config, targets=[target], cache=PreprocessCache(tmp_path / "c"))
    counts = {n: d.get("labelled_volumes") for n, d in graph.nodes(data=True)}
    assert {n: c for n, c in counts.items() if "edema" in n and n != target} == {"A-T1-edema": 0, "B-T1-edema": 0}
    assert counts["A-T1-tumour"] > 0 and counts["B-T1-tumour"] > 0 and counts[target] > 0
    with caplog.at_level(logging.WARNING):
        chosen = select_in_graph(graph, target, uniform_performance=True)
    assert "edema" not in chosen.landmark
    rows = {r["source"]: r for r in chosen.landmark_scores}
    assert all("sampled label volumes has foreground" in rows[s]["excluded"] for s in ("A-T1-edema", "B-T1-edema"))
    assert "A-T1-edema: none of its 3 sampled label volumes has foreground" in caplog.text
    # measured O decides as before: the row is not overruled
    measured = select_in_graph(graph, target, performance={s: 0.5 for s in rows})
    assert all(r["excluded"] is None for r in measured.landmark_scores)
    # an export along a path through it says so
    from seqtransfer.nnunet.export import plan_export

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        plan_export(tmp_path / "g", target, path=["A-T1-edema", target], used_ids=set())
    assert "A-T1-edema: none of its sampled label volumes has foreground" in caplog.text
