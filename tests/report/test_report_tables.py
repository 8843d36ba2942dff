"""The report's numbers on empty or undefined data: NaN / "n/a", never a numpy warning."""

from __future__ import annotations

import math
import warnings

from seqtransfer.report.tables import (
    QUALITY_METRICS,
    cells,
    finite_mean,
    method_table,
    selection_quality,
    selection_quality_means,
    win_rates,
)

NAN = float("nan")


def quality_row(ranking: str, *values: float) -> dict:
    return {"target": "t", "draw": 0, "ranking": ranking, **dict(zip(QUALITY_METRICS, values, strict=True)), "n": 2.0}


def test_finite_mean() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(finite_mean([])) and math.isnan(finite_mean([NAN, None, float("inf")]))
        assert finite_mean([1.0, NAN, None, 3.0]) == 2.0


def test_selection_quality_means_of_an_empty_group_warn_nothing() -> None:
    quality = [
        quality_row("-w (affinity)", 0.5, 0.4, NAN, 0.1),
        quality_row("-w (affinity)", 0.3, 0.2, 0.8, 0.0),
        quality_row("source held-out Dice (O)", NAN, NAN, NAN, NAN),  # every measure undefined
        quality_row("source held-out Dice (O)", NAN, NAN, NAN, NAN),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        means = selection_quality_means(quality)
    assert [m["ranking"] for m in means] == ["-w (affinity)", "source held-out Dice (O)"]
    w, o = means
    assert (
        w["n"] == 2
        and w["kendall_tau"] == 0.4
        and w["pearson"] == 0.8
        and w["pearson_n"] == 1
        and w["kendall_tau_n"] == 2
    )
    assert o["n"] == 2 and all(math.isnan(o[m]) and o[f"{m}_n"] == 0 for m in QUALITY_METRICS)


def test_selection_quality_with_an_undefined_ranking_warns_nothing() -> None:
    selections = [
        {
            "target": "t",
            "draw": 0,
            "weights": {"a": 0.2, "b": 0.4, "c": 0.3},
            "landmark_scores": {"a": None, "b": None, "c": None},
            "zoo_dice": {},
        }
    ]
    direct = {("a", "t", 0): 0.5, ("b", "t", 0): 0.4, ("c", "t", 0): 0.45}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quality = selection_quality(selections, [], direct)
        means = {m["ranking"]: m for m in selection_quality_means(quality)}
    assert means["-w (affinity)"]["kendall_tau"] == 1.0
    for ranking in ("landmark score (-score)", "source held-out Dice (O)"):  # no score at all: empty
        assert all(math.isnan(means[ranking][m]) for m in QUALITY_METRICS)


def test_method_cells_with_unscorable_test_sets_warn_nothing() -> None:
    methods = [  # two random landmarks of one draw; the second test set has no finite Dice in either
        {"target": "t", "method": "random_landmark", "variant": "0", "draw": 0, "test_set_dice": [0.5, None, 0.7]},
        {"target": "t", "method": "random_landmark", "variant": "1", "draw": 0, "test_set_dice": [0.3, None, None]},
        {"target": "t", "method": "ours", "variant": "", "draw": 0, "test_set_dice": [None, None, None]},
        {"target": "t", "method": "scratch", "variant": "", "draw": 0, "test_set_dice": []},
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = cells(methods)
        header, rows, _ = method_table(methods, ["ours", "random_landmark", "scratch"], ["t"], {"t": "c"})
        wins = win_rates(methods)
    lsi = table[("t", "random_landmark")]
    assert lsi.n == 2 and lsi.mean == (0.4 + 0.7) / 2 and lsi.per_draw[0] == lsi.mean
    assert math.isnan(table[("t", "ours")].mean) and table[("t", "ours")].n == 0
    assert math.isnan(table[("t", "scratch")].mean)
    assert rows[0][1] == "n/a" and rows[0][3] == "n/a" and wins == {}


def test_bootstrap_interval_and_paired_differences() -> None:
    import numpy as np

    from seqtransfer.report.tables import bootstrap_interval, paired_differences

    assert all(math.isnan(v) for v in bootstrap_interval([0.3]))
    assert all(abs(v - 0.4) < 1e-12 for v in bootstrap_interval([0.4, 0.4, 0.4]))
    values = list(np.random.default_rng(1).normal(0.2, 0.1, 40))
    lo, hi = bootstrap_interval(values)
    assert lo < float(np.mean(values)) < hi and bootstrap_interval(values) == (lo, hi)  # seeded
    # normal theory for comparison: the percentile interval is close to mean +- 1.96 sd / sqrt(n)
    half = 1.96 * float(np.std(values, ddof=1)) / math.sqrt(len(values))
    assert abs((hi - lo) / 2 - half) < 0.25 * half

    def rec(target: str, method: str, draw: int, dice: float) -> dict:
        return {"target": target, "method": method, "variant": "", "draw": draw, "test_set_dice": [dice, dice, dice]}

    methods = []
    for target, gains in (("a", (0.1, 0.3)), ("b", (0.0, 0.2)), ("c", (-0.1, 0.1))):
        for draw, gain in enumerate(gains):
            methods += [rec(target, "ours", draw, 0.5 + gain), rec(target, "scratch", draw, 0.5)]
    d = paired_differences(methods)["scratch"]
    # per target: a 0.2, b 0.1, c 0.0 -> mean 0.1 over 3 targets and 6 pairs
    assert abs(d["mean"] - 0.1) < 1e-12
    assert d["targets"] == 3 and d["pairs"] == 6 and d["low"] <= 0.1 <= d["high"]


#: the measured direct-transfer Dice of the three sources a, b, c of target t (a best)
DIRECT = {("a", "t", 0): 0.9, ("b", "t", 0): 0.5, ("c", "t", 0): 0.1}


def _selection(weights: tuple[float, float, float], terms: dict[str, dict[str, float]]) -> dict:
    """A stored selection record of target t, draw 0, with sources a, b, c."""
    return {
        "target": "t",
        "draw": 0,
        "weights": dict(zip("abc", weights, strict=True)),
        "landmark_scores": {"a": 1.0, "b": 2.0, "c": 3.0},
        "zoo_dice": {"a": 0.5, "b": 0.4, "c": 0.3},
        "terms": terms,
    }


def test_each_term_of_the_landmark_score_is_ranked_alone() -> None:
    selection = _selection(
        (0.2, 0.5, 0.9),
        {
            "a": {"H": 0.1, "R": 0.2, "zeta": 10, "rho": 1.0},
            "b": {"H": 0.2, "R": 0.5, "zeta": 20, "rho": 2.0},
            "c": {"H": 0.3, "R": 0.9, "zeta": 30, "rho": 3.0},
        },
    )
    rows = {r["ranking"]: r for r in selection_quality([selection], [], DIRECT)}
    assert rows["-H (image distance)"]["kendall_tau"] == 1.0  # small H, high Dice
    assert rows["R (label similarity)"]["kendall_tau"] == -1.0 and rows["zeta (training cases)"]["kendall_tau"] == -1.0
    assert rows["rho (density)"]["kendall_tau"] == -1.0 and rows["-w (affinity)"]["kendall_tau"] == 1.0


def test_the_calibrated_affinity_is_ranked_from_the_recorded_terms() -> None:
    # H favours a, then b, then c; R favours c, then b, then a. alpha >> beta ranks by H,
    # beta >> alpha by R: the calibrated -w must follow whichever term its weights favour.
    selection = _selection(
        (0.5, 0.5, 0.5),
        {
            "a": {"H": 1.0, "R": 0.1, "zeta": 1, "rho": 1.0},
            "b": {"H": 2.0, "R": 0.5, "zeta": 1, "rho": 1.0},
            "c": {"H": 3.0, "R": 0.9, "zeta": 1, "rho": 1.0},
        },
    )
    direct = DIRECT
    name = "calibrated -w (leave-one-site-out)"
    by_h = {r["ranking"]: r for r in selection_quality([selection], [], direct, {"t": (1.0, 0.01)}, h_scale=2.0)}
    by_r = {r["ranking"]: r for r in selection_quality([selection], [], direct, {"t": (0.01, 1.0)}, h_scale=2.0)}
    assert by_h[name]["kendall_tau"] == 1.0 and by_r[name]["kendall_tau"] == -1.0
    assert name not in {r["ranking"] for r in selection_quality([selection], [], direct)}  # no calibration, no row


def test_every_quality_measure_has_an_interval_over_targets() -> None:
    import numpy as np

    from seqtransfer.report.tables import bootstrap_interval

    rows = []
    rng = np.random.default_rng(0)
    for t in range(6):
        for draw in range(2):
            rows.append(
                {
                    "target": f"t{t}",
                    "draw": draw,
                    "ranking": "x",
                    **{m: float(rng.uniform(-1, 1)) for m in QUALITY_METRICS},
                }
            )
    (entry,) = selection_quality_means(rows)
    for m in QUALITY_METRICS:
        per_target = [np.mean([r[m] for r in rows if r["target"] == f"t{t}"]) for t in range(6)]
        assert entry[f"{m}_interval"] == bootstrap_interval(per_target) and entry[f"{m}_targets"] == 6
        assert abs(entry[m] - np.mean([r[m] for r in rows])) < 1e-12


def test_sample_size_curve_takes_three_from_the_protocol_first_test_set() -> None:
    from seqtransfer.report.tables import sample_size_curve

    protocol = [
        {"method": "ours", "target": t, "draw": d, "variant": "", "test_set_dice": [0.1 * (i + 1) + 0.01 * d, 0.9, 0.9]}
        for i, t in enumerate(("a", "b"))
        for d in (0, 1)
    ]
    protocol.append(
        {"method": "lambda", "target": "a", "draw": 0, "variant": "0.4", "test_set_dice": [0.9, 0.9, 0.9]}
    )  # not studied
    sample = [
        {"method": "ours", "target": t, "draw": d, "n_train": 5, "dice": 0.5 + 0.1 * i}
        for i, t in enumerate(("a", "b"))
        for d in (0, 1)
    ]
    rows = {(r["method"], r["n_train"]): r for r in sample_size_curve(protocol, sample)}
    assert set(rows) == {("ours", 3), ("ours", 5)}
    # n = 3: a (0.10, 0.11) -> 0.105, b (0.20, 0.21) -> 0.205; mean 0.155 over 2 targets and 4 runs
    assert (
        abs(rows[("ours", 3)]["mean"] - 0.155) < 1e-12
        and rows[("ours", 3)]["targets"] == 2
        and rows[("ours", 3)]["runs"] == 4
    )
    assert abs(rows[("ours", 5)]["mean"] - 0.55) < 1e-12
    assert rows[("ours", 5)]["low"] <= 0.55 <= rows[("ours", 5)]["high"]


def test_mean_rows_show_the_interval_over_targets() -> None:
    from seqtransfer.report.tables import bootstrap_interval

    methods = [
        {"target": t, "method": "ours", "variant": "", "draw": d, "test_set_dice": [v + 0.01 * d] * 3}
        for t, v in (("a", 0.2), ("b", 0.5), ("c", 0.6), ("z", 0.9))
        for d in (0, 1)
    ]
    collections = {"a": "A", "b": "A", "c": "A", "z": "Z"}
    header, rows, _ = method_table(methods, ["ours"], ["a", "b", "c", "z"], collections)
    by_name = {r[0]: r[1] for r in rows}
    lo, hi = bootstrap_interval([0.205, 0.505, 0.605])
    assert by_name["mean, A (3 targets)"] == f"**{(0.205 + 0.505 + 0.605) / 3:.3f} [{lo:.3f}, {hi:.3f}]**"
    lo, hi = bootstrap_interval([0.205, 0.505, 0.605, 0.905])
    assert (
        by_name["mean, all targets (4 targets)"]
        == f"**{(0.205 + 0.505 + 0.605 + 0.905) / 4:.3f} [{lo:.3f}, {hi:.3f}]**"
    )
    assert by_name["mean, Z (1 target)"] == "**0.905**"  # one target: no interval, no spread
    assert by_name["a"] == "**0.205 ± 0.005**"  # a target: mean ± sd over draws and test sets
