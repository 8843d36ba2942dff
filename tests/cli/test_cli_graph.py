"""graph build / select / graph show / calibrate through the CLI."""

import csv
import json
from pathlib import Path

import pytest

from seqtransfer.cli import main

SHAPE = (16, 16, 16)


def run(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out, captured.err


@pytest.fixture(scope="module")
def _built_once(tmp_path_factory, dataset_writer):
    """The datasets and their graph, built once for the module (tests get a copy of the graph)."""
    import contextlib
    import io

    root = tmp_path_factory.mktemp("built")
    sites = {f"case_{i:03d}": ("A" if i < 6 else "B") for i in range(12)}
    tum = dataset_writer(
        root / "Dataset001_Tum",
        n_cases=12,
        channels=("T1", "T2"),
        labels=("tumour", "edema"),
        shape=SHAPE,
        sites=sites,
        seed=1,
    )
    les = dataset_writer(root / "Dataset002_Les", n_cases=20, channels=("T1",), labels=("lesion",), shape=SHAPE, seed=2)
    (root / "objective_groups.json").write_text(json.dumps({"tumour": "lesions", "lesion": "lesions"}))
    graph = root / "graph"
    argv = [
        "graph",
        "build",
        tum,
        les,
        "--out",
        graph,
        "--target",
        "Les-T1-lesion",
        "--size",
        16,
        "--volumes",
        4,
        "--max-pairs",
        6,
    ]
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout), pytest.raises(SystemExit) as info:
        mp.setenv("SEQTRANSFER_CACHE", str(root / "cache"))
        main([str(a) for a in argv])
        raise SystemExit(0)
    assert int(info.value.code or 0) == 0
    assert "targets" in stdout.getvalue()
    return tum, les, graph


@pytest.fixture
def built(_built_once, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The module's datasets and a fresh copy of their graph (tests write into it); the
    preprocessing cache is the build's (content-keyed, so sharing it changes no result)."""
    import shutil

    tum, les, graph = _built_once
    monkeypatch.setenv("SEQTRANSFER_CACHE", str(graph.parent / "cache"))
    copy = tmp_path / "graph"
    shutil.copytree(graph, copy, symlinks=True)
    return tum, les, copy


def test_build_select_show(built, capsys) -> None:
    _, _, graph = built
    code, out, err = run(["select", "--graph", graph, "--target", "Les-T1-lesion", "--uniform-performance"], capsys)
    assert code == 0, err
    assert "landmark:" in out and "path:" in out
    saved = json.loads((graph / "selections" / "Les-T1-lesion.json").read_text())
    assert saved["lambda"] == 0.4 and saved["max_length"] == 5 and saved["path"][-1] == "Les-T1-lesion"
    assert saved["performance_source"].startswith("uniform")
    code, out, err = run(["graph", "show", graph, "--target", "Les-T1-lesion"], capsys)
    assert code == 0, err
    for name in ("graph_Les-T1-lesion.png", "affinity_heatmap.png"):
        png = graph / "figures" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_select_with_performance_file_and_without_o(built, tmp_path: Path, capsys) -> None:
    _, _, graph = built
    code, _, err = run(["select", "--graph", graph, "--target", "Les-T1-lesion"], capsys)
    assert code == 2 and "no objective performance O" in err and len(err.strip().splitlines()) == 1
    perf = tmp_path / "perf.csv"
    nodes = json.loads((graph / "graph.json").read_text())["nodes"]
    rows = [(n["id"], 0.5 + 0.01 * i) for i, n in enumerate(nodes) if n["role"] == "source"]
    perf.write_text("task,dice\n" + "\n".join(f"{a},{b}" for a, b in rows) + "\n")
    code, out, err = run(["select", "--graph", graph, "--target", "Les-T1-lesion", "--performance", perf], capsys)
    assert code == 0, err
    assert json.loads((graph / "selections" / "Les-T1-lesion.json").read_text())["performance_source"] == str(perf)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--lambda", "1.5"], "lam"),
        (["--max-length", "0"], "max_length"),
        (["--c-search", "-1"], "c_search"),
    ],
)
def test_select_rejects_bad_parameters(built, capsys, extra, message) -> None:
    _, _, graph = built
    code, _, err = run(
        ["select", "--graph", graph, "--target", "Les-T1-lesion", "--uniform-performance", *extra], capsys
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error:")


def test_select_unknown_target_and_missing_graph(built, tmp_path: Path, capsys) -> None:
    _, _, graph = built
    code, _, err = run(["select", "--graph", graph, "--target", "Z-T1-x", "--uniform-performance"], capsys)
    assert code == 2 and "not in the graph" in err
    code, _, err = run(["select", "--graph", tmp_path / "nope", "--target", "x"], capsys)
    assert code == 2 and "graph.json: not found" in err


#: libraries `select` must not import (its start-up was ~9 s under load with them)
HEAVY = ("ot", "torch", "monai", "skimage", "sklearn", "optuna")
SELECT_DRIVER = r"""
import json, sys
from seqtransfer.cli import main
try:
    main(sys.argv[2:])
    code = 0
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "heavy": [name for name in json.loads(sys.argv[1]) if name in sys.modules]}))
"""


def test_select_imports_no_heavy_library(built) -> None:
    import os
    import subprocess
    import sys

    import seqtransfer

    _, _, graph = built
    src = str(Path(seqtransfer.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    argv = ["select", "--graph", str(graph), "--target", "Les-T1-lesion", "--uniform-performance"]
    proc = subprocess.run(
        [sys.executable, "-c", SELECT_DRIVER, json.dumps(HEAVY), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, proc.stderr
    assert (
        graph / "selections" / "Les-T1-lesion.json"
    ).exists()  # it really selected (on a paper-mode graph with its PCA)
    assert result["heavy"] == [], f"seqtransfer select imported {result['heavy']}"
    # the library path as well, and building a graph still finds everything it needs
    code = (
        "import sys, json; import seqtransfer.selection.run, seqtransfer.graph; print(json.dumps([n for n in "
        f"{list(HEAVY)!r} if n in sys.modules]))"
    )
    assert (
        json.loads(
            subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
        )
        == []
    )
    code = (
        "from seqtransfer.graph import build_graph, add_targets, edge_allowed, candidate_sources; from "
        "seqtransfer.graph.sources import candidate_sources as c; assert c is candidate_sources"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def test_params_record_the_package_version(built) -> None:
    import importlib.metadata

    _, _, graph = built
    versions = json.loads((graph / "params.json").read_text())["versions"]
    assert versions["seqtransfer"] == importlib.metadata.version("seqtransfer")
    assert versions["numpy"] == importlib.metadata.version("numpy")


def test_calibrate_writes_alpha_beta(built, tmp_path: Path, capsys) -> None:
    _, _, graph = built
    data = json.loads((graph / "graph.json").read_text())
    links = [link for link in data["links"] if "Les-T1-lesion" in (link["source"], link["target"])]
    transfers = tmp_path / "transfers.csv"
    with open(transfers, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "target", "dice"])
        for link in links:  # Dice that follows the label similarity alone: beta should win
            source = link["source"] if link["target"] == "Les-T1-lesion" else link["target"]
            writer.writerow([source, "Les-T1-lesion", link["R"]])
    code, out, err = run(
        ["calibrate", "--graph", graph, "--transfers", transfers, "--trials", 20, "--objective", "nonsense"], capsys
    )
    assert code == 2 and "objective" in err and len(err.strip().splitlines()) == 1, err
    code, out, err = run(["calibrate", "--graph", graph, "--transfers", transfers, "--trials", 20], capsys)
    assert code == 0, err
    params = json.loads((graph / "params.json").read_text())
    assert params["config"]["beta"] > 0.9 and params["calibration"]["tau_after"] >= params["calibration"]["tau_before"]
    assert params["calibration"]["tau_after"] == pytest.approx(1.0)
    new = json.loads((graph / "graph.json").read_text())["links"][0]
    assert new["weight"] == pytest.approx(
        params["config"]["alpha"] * new["H"] / params["h_scale"] + params["config"]["beta"] * (1 - new["R"])
    )


def test_calibrate_bad_csv(built, tmp_path: Path, capsys) -> None:
    _, _, graph = built
    bad = tmp_path / "t.csv"
    bad.write_text("source,target,dice\na,b,notanumber\n")
    code, _, err = run(["calibrate", "--graph", graph, "--transfers", bad], capsys)
    assert code == 2 and "line 2" in err


def test_graph_build_unknown_target(built, capsys) -> None:
    tum, les, graph = built
    code, _, err = run(
        ["graph", "build", tum, les, "--out", graph.parent / "g2", "--target", "Nope-T1-x", "--size", 16], capsys
    )
    assert code == 2 and "unknown target" in err
    assert not (graph.parent / "g2" / "graph.json").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["transfer", "--target", "Nope-T1-x"], "unknown task"),
        (["transfer", "--target", "Les-T1-lesion", "--path", "A-T1-tumour,Ghost-T1-x,Les-T1-lesion"], "unknown task"),
        (["transfer", "--target", "Les-T1-lesion", "--steps", "0"], "steps"),
        (["transfer", "--target", "Les-T1-lesion", "--path", "A-T1-tumour,Les-T1-lesion", "--draw", "7"], "draw"),
        (["transfer", "--target", "Les-T1-lesion"], "no stored selection"),
        (["zoo", "train", "--tasks", "Nope-T1-x"], "unknown task"),
        (["zoo", "train", "--tasks", "Les-T1-lesion"], "not a source"),
        (["zoo", "train", "--steps", "0"], "steps"),
        (["zoo", "train", "--preset", "huge"], "preset"),
    ],
)
def test_training_commands_refuse_bad_arguments(built, capsys, argv, message) -> None:
    _, _, graph = built
    before = sorted(p.relative_to(graph) for p in graph.rglob("*"))
    code, _, err = run(
        [*argv[:2], "--graph", graph, *argv[2:]] if argv[0] == "zoo" else [argv[0], "--graph", graph, *argv[1:]], capsys
    )
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.relative_to(graph) for p in graph.rglob("*")) == before  # nothing written


def test_commands_on_missing_paths_are_one_line(tmp_path: Path, capsys) -> None:
    for argv in (
        ["graph", "show", "--graph", tmp_path / "missing"],
        ["transfer", "--graph", tmp_path / "missing", "--target", "x"],
        ["zoo", "train", "--graph", tmp_path / "missing"],
        ["predict", "--model", tmp_path / "missing", "--input", tmp_path, "--out", tmp_path / "o"],
        ["demo", "--out", tmp_path / "d", "--workers", "0"],
    ):
        code, _, err = run(argv, capsys)
        assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1, (argv, err)


def test_calibration_maximises_the_mean_within_target_tau() -> None:
    """Checked against scipy's Kendall tau per target, averaged, at the chosen and the enqueued alphas."""
    import networkx as nx
    import numpy as np
    from scipy import stats

    from seqtransfer.affinity import affinity
    from seqtransfer.graph.calibrate import Transfer, calibrate, within_target_tau

    rng = np.random.default_rng(3)
    g = nx.Graph()
    transfers = []
    for t in ("A", "B", "C"):
        easy = {"A": 0.8, "B": 0.2, "C": 0.5}[t]
        for s in range(5):
            h, r = rng.uniform(0.5, 2.0), rng.uniform(0.1, 0.9)
            g.add_edge(f"s{s}", t, H=h, R=r)
            transfers.append(Transfer(f"s{s}", t, easy + 0.1 * r + 0.02 * rng.normal()))
    result = calibrate(g, transfers, h_scale=1.0, alpha=0.5, beta=0.5, n_trials=15, seed=0)

    def independent(a: float) -> float:
        taus = []
        for t in ("A", "B", "C"):
            rows = [x for x in transfers if x.target == t]
            w = [affinity(g.edges[x.source, t]["H"], g.edges[x.source, t]["R"], a, 1 - a, 1.0) for x in rows]
            taus.append(stats.kendalltau(-np.array(w), [x.dice for x in rows]).statistic)
        return float(np.mean(taus))

    assert result.tau_after == pytest.approx(independent(result.alpha))
    assert result.tau_after >= max(independent(0.0), independent(0.5), independent(1.0)) - 1e-12
    weights = np.array(
        [affinity(g.edges[x.source, x.target]["H"], g.edges[x.source, x.target]["R"], 0.3, 0.7, 1.0) for x in transfers]
    )
    assert within_target_tau(
        weights, np.array([x.dice for x in transfers]), [x.target for x in transfers]
    ) == pytest.approx(independent(0.3))


def test_leep_score_measures_every_zoo_model_and_transfer_after_zoo_train_trains_no_zoo_model(
    built, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--score leep: refused (one line, nothing written) without the zoo; with it, gamma = rho * T
    with T = exp(LEEP) of each connected source model, and the landmark is argmin w / (zeta rho T).
    On the way (sharing the zoo's training): transfer reuses the zoo models `zoo train` recorded
    (:func:`_transfer_reuses_the_recorded_zoo`)."""
    import math

    _, _, graph = built
    code, _, err = run(["select", "--graph", graph, "--target", "Les-T1-lesion", "--score", "best"], capsys)
    assert code == 2 and "--score must be one of auto, paper, leep" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(["select", "--graph", graph, "--target", "Les-T1-lesion", "--score", "leep"], capsys)
    assert (
        code == 2 and "needs the zoo model of every connected source" in err and len(err.strip().splitlines()) == 1
    ), err
    assert not (graph / "selections").exists()
    code, _, err = run(["zoo", "train", "--graph", graph, "--steps", 2, "--max-train", 3], capsys)
    assert code == 0, err
    _transfer_reuses_the_recorded_zoo(graph, capsys, monkeypatch)
    code, _, err = run(["select", "--graph", graph, "--target", "Les-T1-lesion", "--score", "paper"], capsys)
    assert code == 0 and json.loads((graph / "selections" / "Les-T1-lesion.json").read_text())["score"] == "paper"
    code, out, err = run(
        ["select", "--graph", graph, "--target", "Les-T1-lesion"], capsys
    )  # auto: the zoo is complete, so leep
    assert code == 0, err
    saved = json.loads((graph / "selections" / "Les-T1-lesion.json").read_text())
    assert saved["score"] == "leep" and "exp(LEEP)" in out
    rows = saved["landmark_scores"]
    assert rows and all(0.0 <= r["T"] <= 1.0 for r in rows)
    for r in rows:
        expected = r["w"] / (r["zeta"] * r["rho"] * r["T"]) if r["zeta"] * r["rho"] * r["T"] > 0 else None
        assert (r["score"] is None and expected is None) or math.isclose(r["score"], expected, rel_tol=1e-12)
    candidates = [r for r in rows if not r["excluded"] and r["score"] is not None]
    if candidates:
        assert saved["landmark"] == min(candidates, key=lambda r: (r["score"], r["source"]))["source"]


def _transfer_reuses_the_recorded_zoo(graph: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """After `zoo train --steps 2 --max-train 3`, `transfer` (whose own zoo options are other:
    --zoo-steps 5, max_train 60): the landmark is the recorded model, no zoo model is trained, and
    the transfer runs under the configuration the zoo models were trained with (an intermediate
    step draws its cases from its model's zoo split, and metrics.json records max_train 3)."""
    import seqtransfer.pipeline.transfer as transfer_module

    before = sorted(str(p.relative_to(graph)) for p in (graph / "zoo").glob("*/*"))
    nodes = {n["id"]: n for n in json.loads((graph / "graph.json").read_text())["nodes"]}
    assert nodes["A-T1-tumour"]["zoo_key"] and nodes["B-T1-tumour"]["zoo_key"]

    def no_training(*args, **kwargs):
        raise AssertionError("transfer trained a zoo model")

    monkeypatch.setattr(transfer_module, "train_source", no_training)
    path = "A-T1-tumour,B-T1-tumour,Les-T1-lesion"
    code, out, err = run(
        ["transfer", "--graph", graph, "--target", "Les-T1-lesion", "--path", path, "--steps", 1, "--zoo-steps", 5],
        capsys,
    )
    assert code == 0, err
    assert f"zoo model {nodes['A-T1-tumour']['zoo_key']}" in out
    assert sorted(str(p.relative_to(graph)) for p in (graph / "zoo").glob("*/*")) == before  # no new zoo model folder
    metrics = json.loads(Path(out.split("metrics: ")[-1].strip()).read_text())
    assert metrics["zoo"]["max_train"] == 3 and metrics["zoo"]["train"]["steps"] == 2
    intermediate = json.loads(
        (graph / "zoo" / "B-T1-tumour" / nodes["B-T1-tumour"]["zoo_key"] / "config.json").read_text()
    )
    assert (
        set(metrics["steps"][0]["train_cases"]) <= set(intermediate["train_cases"])
        and len(intermediate["train_cases"]) == 3
    )


def test_verbose_shows_the_library_info_and_quiet_hides_its_warnings(
    built, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    import seqtransfer.selection.run as selection_run

    _, _, graph = built
    select = selection_run.select_for_target

    def warn_then_select(*args, **kwargs):
        logging.getLogger("seqtransfer.selection.run").warning("a library warning")
        return select(*args, **kwargs)

    monkeypatch.setattr(selection_run, "select_for_target", warn_then_select)
    argv = ["select", "--graph", graph, "--target", "Les-T1-lesion", "--uniform-performance"]
    code, _, err = run(["--verbose", *argv], capsys)
    assert code == 0 and "O of" in err and "from uniform" in err and "a library warning" in err, err
    code, _, err = run(argv, capsys)
    assert code == 0 and "O of" not in err and "a library warning" in err, err
    code, out, err = run(["-q", *argv], capsys)
    assert code == 0 and err == "" and "landmark:" in out, err
    code, _, err = run(["-v", "-q", *argv], capsys)
    assert code == 2 and "exclude each other" in err
    assert logging.getLogger("seqtransfer").level == logging.NOTSET  # main gives the caller its logging back
