"""The whole protocol end to end on tiny data: every method runs, the store makes reruns free."""

import html
import importlib.metadata
import json
import logging
from pathlib import Path

import pytest

from seqtransfer.experiment.config import config_from_dict
from seqtransfer.experiment.runner import run_experiment

TARGETS = ["C-T1-tumour", "Les-T1-lesion"]


def tiny_config(tum: Path, les: Path, **protocol) -> dict:
    return {
        "seed": 0,
        "data": {"datasets": [str(tum), str(les)]},
        "protocol": {
            "targets": TARGETS,
            "draws": 2,
            "lambdas": [0.0, 0.4, 1.0],
            "random_landmarks": 2,
            "top_k": 2,
            "quality_draws": 1,
            "score_voxels": 20,
            "scratch_steps": 2,
            "calibration_trials": 3,
            **protocol,
        },
        "graph": {"size": 16, "volumes_per_task": 3, "max_pairs": 4, "n_components": 3, "max_slices": 100},
        "network": {"patch_size": [16, 16, 16], "filters": [4, 8, 16]},
        "zoo": {"steps": 2, "max_train": 4},
        "finetune": {"steps": 2, "augment": False},
    }


def test_every_method_runs_a_rerun_does_nothing_and_the_report_renders(datasets, tmp_path: Path) -> None:
    config = config_from_dict(tiny_config(*datasets))
    ctx = run_experiment(config, tmp_path / "run")
    methods = [r.result for r in ctx.store.records("method", "done")]
    names = {m["method"] for m in methods}
    assert names == set(config.protocol.methods)
    for target in TARGETS:
        for draw in (0, 1):
            rows = [m for m in methods if m["target"] == target and m["draw"] == draw]
            assert len([m for m in rows if m["method"] == "lambda"]) == 3
            assert len([m for m in rows if m["method"] == "random_landmark"]) == 2
            assert all(m["dice"] is None or 0.0 <= m["dice"] <= 1.0 for m in rows)
            assert all(len(m["test_set_dice"]) == 3 for m in rows)
    # lambda = 0 is the landmark's direct transfer, the same stored run
    for target in TARGETS:
        lam0 = next(
            m
            for m in methods
            if m["method"] == "lambda" and m["variant"] == "0" and m["target"] == target and m["draw"] == 0
        )
        direct = next(
            m for m in methods if m["method"] == "landmark_direct" and m["target"] == target and m["draw"] == 0
        )
        assert lam0["path"] == direct["path"] and lam0["dice"] == direct["dice"]
    # LogME / LEEP + STPS start at the baseline's own landmark; MST's sources are LogME's top-k
    for target in TARGETS:
        for name in ("logme", "leep"):
            direct_run = next(m for m in methods if m["method"] == name and m["target"] == target and m["draw"] == 0)
            stps = next(
                m for m in methods if m["method"] == f"{name}_stps" and m["target"] == target and m["draw"] == 0
            )
            assert stps["path"][0] == direct_run["path"][0] and stps["path"][-1] == target
        logme = {
            r.spec["source"]: r.result["logme"]
            for r in ctx.store.records("scores", "done")
            if r.spec["target"] == target and r.spec["draw"] == 0
        }
        mst = next(
            r
            for r in ctx.store.records("method", "done")
            if r.spec["method"] == "mst" and r.spec["target"] == target and r.spec["draw"] == 0
        )
        expected = sorted(logme, key=lambda s: (logme[s] if logme[s] is not None else float("-inf"), s), reverse=True)[
            : config.protocol.top_k
        ]
        assert mst.spec["sources"] == expected
    # ours_leep: the landmark score with O -> exp(LEEP), by hand from the stored terms and LEEP
    import math

    for target in TARGETS:
        sel = next(
            r.result
            for r in ctx.store.records("selection", "done")
            if r.result["target"] == target and r.result["draw"] == 0
        )
        leep = {
            r.spec["source"]: r.result["leep"]
            for r in ctx.store.records("scores", "done")
            if r.spec["target"] == target and r.spec["draw"] == 0 and "n_train" not in r.spec
        }
        learned = [s for s in sel["weights"] if (sel["zoo_dice"][s] or 0.0) >= 0.05]

        def by_hand(s: str, sel: dict = sel, leep: dict = leep) -> float:
            d = sel["terms"][s]["zeta"] * sel["terms"][s]["rho"] * (math.exp(leep[s]) if leep[s] is not None else 0.0)
            return sel["weights"][s] / d if d > 0 else math.inf

        expected = min(learned, key=lambda s: (by_hand(s), s))
        run = next(m for m in methods if m["method"] == "ours_leep" and m["target"] == target and m["draw"] == 0)
        assert run["path"][0] == expected and run["path"][-1] == target
    # selection quality: every connected source's direct transfer in draw 0, and its scores
    transfers = [
        r.result for r in ctx.store.records("transfer", "done") if r.spec["draw"] == 0 and len(r.spec["path"]) == 2
    ]
    for target in TARGETS:
        assert {t["path"][0] for t in transfers if t["target"] == target} == set(ctx.connected(target))
    assert len(ctx.store.records("scores", "done")) >= sum(len(ctx.connected(t)) for t in TARGETS)
    before = {r.key: r.attempts for r in ctx.store.records()}
    again = run_experiment(config, tmp_path / "run")
    assert {r.key: r.attempts for r in again.store.records()} == before  # nothing redone
    resolved = json.loads((tmp_path / "run" / "config.resolved.json").read_text())
    assert resolved["versions"]["seqtransfer"] == importlib.metadata.version("seqtransfer")

    # the report renders every section from the store alone
    from seqtransfer.report import write_report

    written = write_report(tmp_path / "run")
    summary = written["summary"].read_text()
    assert f"seqtransfer {importlib.metadata.version('seqtransfer')}" in summary  # the header's package versions
    for section in (
        "Table I",
        "Table II",
        "Table III",
        "Win rate",
        "Selection quality",
        "Dice per method",
        "Slice overlays",
        "Affinity heatmap",
        "Graph, landmark and path",
    ):
        assert section in summary, section
    page = written["report"].read_text()
    assert page.count("data:image/png;base64,") >= 4 and "<table>" in page  # self-contained
    # report.html shows summary.md's header: configuration, versions, scale, targets and draws
    net = resolved["config"]["network"]
    header_items = [
        f"Configuration: <code>{tmp_path / 'run' / 'config.resolved.json'}</code>",
        *[f"{name} {version}" for name, version in resolved["versions"].items()],
        f"Scale: {net['architecture']} {net['filters']} at patch {net['patch_size']}",
        "fine-tuning 2 steps per path step",
        "scratch and MTL 2 steps; source pool: every connected source; w/o LSI over 2 random landmarks",
        "Targets: 2; draws of the 3 target training cases: 2;",
    ]
    for item in header_items:
        assert item.replace("<code>", "`").replace("</code>", "`") in summary, item
        assert (
            html.escape(item, quote=False).replace("&lt;code&gt;", "<code>").replace("&lt;/code&gt;", "</code>") in page
        ), item
    # and every table cell of summary.md, the means' counts included ("mean, X (2 targets)", "targets x draws")
    for line in summary.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            for cell in line.strip().strip("|").split(" | "):
                assert html.escape(cell.strip().strip("*")) in page, (cell, line)
    for name in ("table1", "table2", "table3", "selection_quality"):
        rows = written[name].read_text().splitlines()
        assert len(rows) >= 3, name
    assert "**" in summary  # the best of a row is bold


def test_a_process_pool_gives_the_same_results_as_one_process(datasets, tmp_path: Path) -> None:
    from seqtransfer.core.executor import ProcessExecutor

    raw = tiny_config(
        *datasets, draws=1, methods=["ours", "landmark_direct", "scratch", "mst"], quality_draws=0, max_sources=2
    )
    config = config_from_dict(raw)
    seq = run_experiment(config, tmp_path / "seq")
    with ProcessExecutor(2) as pool:
        par = run_experiment(config, tmp_path / "par", executor=pool)
        assert pool._pool is not None  # one pool served the graph, zoo and methods stages
    assert pool._pool is None

    def results(ctx) -> dict:
        return {
            (m["method"], m["target"], m["draw"], m["variant"]): (m["dice"], m["test_set_dice"])
            for m in (r.result for r in ctx.store.records("method", "done"))
        }

    assert results(seq) == results(par) and len(results(seq)) == 2 * 4
    assert {n: m.dice for n, m in seq.zoo.items()} == {n: m.dice for n, m in par.zoo.items()}
    assert all(len(seq.connected(t)) == 2 for t in TARGETS) and len(seq.zoo) <= 4  # max_sources keeps the 2 nearest


def test_run_and_report_raise_no_runtime_warning_even_with_an_empty_selection_quality_group(
    datasets, tmp_path: Path
) -> None:
    """`-W error::RuntimeWarning` semantics for a tiny protocol and its report, then the report of
    the same run where no source has a held-out Dice (zoo models whose held-out masks are all
    empty): that ranking's selection-quality group has no finite value at all."""
    import warnings

    from seqtransfer.experiment.store import RunStore
    from seqtransfer.report import write_report

    config = config_from_dict(
        tiny_config(
            *datasets, targets=["Les-T1-lesion"], draws=1, methods=["ours", "logme"], quality_draws=1, max_sources=3
        )
    )
    run_dir = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        run_experiment(config, run_dir)
        write_report(run_dir)
    store = RunStore(run_dir / "runs.sqlite")
    for record in store.records("selection", "done"):
        store.finish(record.key, {**record.result, "zoo_dice": {s: None for s in record.result["zoo_dice"]}}, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        written = write_report(run_dir)
    summary = written["summary"].read_text()
    o_row = next(line for line in summary.splitlines() if line.startswith("| source held-out Dice (O) |"))
    assert o_row.count("n/a") == 4 and "[" not in o_row, o_row  # the four measures, no interval
    rows = written["selection_quality"].read_text().splitlines()
    assert "Les-T1-lesion,0,source held-out Dice (O),nan,nan,nan,nan,0" in rows, rows


def test_a_target_whose_pool_learned_nothing_runs_what_needs_no_landmark(
    datasets, tmp_path: Path, monkeypatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No landmark can be chosen (every pool model learned nothing): the run goes on, logs the
    skipped methods (ours and its ablations), and runs every baseline for that target: scratch,
    random landmarks, LogME and LEEP with and without STPS, MST (top-k by LogME)."""
    from seqtransfer.experiment import runner
    from seqtransfer.selection.errors import SelectionError

    real = runner.selection

    def selection(ctx, target, draw, **kwargs):  # noqa: ANN001, ANN003, ANN202
        if target == "Les-T1-lesion":
            raise SelectionError(f"target {target!r}: none of its connected source models learned its task")
        return real(ctx, target, draw, **kwargs)

    monkeypatch.setattr(runner, "selection", selection)
    config = config_from_dict(
        tiny_config(
            *datasets, draws=1, methods=["ours", "scratch", "random_landmark", "logme", "leep", "mst", "logme_stps"]
        )
    )
    with caplog.at_level(logging.INFO, logger="seqtransfer.experiment.runner"):
        ctx = run_experiment(config, tmp_path / "run")
    lines = [r.getMessage() for r in caplog.records if r.name == "seqtransfer.experiment.runner"]
    done = {(r.result["method"], r.result["target"]) for r in ctx.store.records("method", "done")}
    for method in ("scratch", "random_landmark", "logme", "leep", "mst", "logme_stps"):
        assert (method, "Les-T1-lesion") in done
    assert ("ours", "Les-T1-lesion") not in done and ("ours", "C-T1-tumour") in done
    assert any(
        line.endswith(
            "Les-T1-lesion draw 0: target 'Les-T1-lesion': none of its connected source models learned its task; "
            "skipped: ours"
        )
        for line in lines
    ), lines


def test_the_sample_size_study_trains_and_scores_each_number_of_labelled_cases(datasets, tmp_path: Path) -> None:
    """[protocol] n_train = [2, 3, 5]: each other size has its own graph (target edges from its
    cases), its scores and runs on its nested cases, scored on the first test set; n = 3 is
    the protocol's own runs; a rerun does nothing; the report has the table and the figure."""
    from seqtransfer.data.splits import sample_size_split, target_split
    from seqtransfer.report import write_report

    methods = ["ours", "logme", "scratch"]
    raw = tiny_config(
        *datasets,
        draws=1,
        methods=methods,
        quality_draws=0,
        max_sources=2,
        n_train=[2, 3, 5],
        sample_size_methods=methods,
    )
    config = config_from_dict(raw)
    ctx = run_experiment(config, tmp_path / "run")
    sample = [r for r in ctx.store.records("sample_size", "done")]
    assert {(r.result["method"], r.result["target"], r.result["draw"], r.result["n_train"]) for r in sample} == {
        (m, t, d, n) for m in methods for t in TARGETS for d in (0,) for n in (2, 5)
    }
    transfers = {
        tuple(r.result["path"]) + (r.spec["draw"], r.spec.get("n_train", 3)): r.result
        for r in ctx.store.records("transfer", "done")
    }
    for target in TARGETS:
        task = ctx.tasks[target]
        ids = [c.case_id for c in task.cases]
        first_test = target_split(task.split_key, ids, seed=0).test_sets[0]
        for n in (2, 5):
            split = sample_size_split(task.split_key, ids, n, seed=0)
            for draw in (0,):
                graph = ctx.sample_workspaces[(n, draw)].graph
                assert sorted(graph.nodes[target]["affinity_cases"]) == sorted(split.draws[draw])
                ours = next(
                    r.result
                    for r in sample
                    if r.result["method"] == "ours"
                    and r.result["target"] == target
                    and r.result["draw"] == draw
                    and r.result["n_train"] == n
                )
                run = transfers[tuple(ours["path"]) + (draw, n)]
                assert run["target_train_cases"] == list(split.draws[draw]) and run["test_sets"] == [list(first_test)]
                assert ours["dice"] == run["final_dice"] and len(ours["test_set_dice"]) == 1
                scratch = next(
                    r.result
                    for r in sample
                    if r.result["method"] == "scratch"
                    and r.result["target"] == target
                    and r.result["draw"] == draw
                    and r.result["n_train"] == n
                )
                assert scratch["train_cases"] == list(split.draws[draw]) and len(scratch["test_set_dice"]) == 1
                n_scores = [
                    r
                    for r in ctx.store.records("scores", "done")
                    if r.spec["target"] == target and r.spec["draw"] == draw and r.spec.get("n_train") == n
                ]
                assert {r.spec["source"] for r in n_scores} == set(ctx.connected(target))
    before = {r.key: r.attempts for r in ctx.store.records()}
    again = run_experiment(config, tmp_path / "run")
    assert {r.key: r.attempts for r in again.store.records()} == before
    written = write_report(tmp_path / "run")
    summary = written["summary"].read_text()
    assert (
        "## Sample size" in summary
        and "Sample size: Dice against labelled target cases" in written["report"].read_text()
    )
    assert (
        written["sample_size_table"].exists() and (tmp_path / "run" / "report" / "figures" / "sample_size.png").exists()
    )
    rows = written["sample_size_table"].read_text().splitlines()[1:]
    assert {(r.split(",")[0], int(r.split(",")[1])) for r in rows} == {(m, n) for m in methods for n in (2, 3, 5)}
    # the n = 3 point: the protocol's own runs on the first test set, mean over targets of the mean over draws
    ours3 = [r.result for r in ctx.store.records("method", "done") if r.result["method"] == "ours"]
    per_target = [sum(m["test_set_dice"][0] for m in ours3 if m["target"] == t) for t in TARGETS]
    row = next(r.split(",") for r in rows if r.startswith("ours,3,"))
    assert abs(float(row[2]) - sum(per_target) / 2) < 1e-5  # the CSV keeps 6 significant digits
