"""`seqtransfer run` and `seqtransfer report`: bad input is one line and exit 2, nothing written."""

from pathlib import Path

import pytest

from seqtransfer.cli import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
        raise SystemExit(0)
    code = info.value.code if isinstance(info.value.code, int) else 0
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("seed = = 1\n", "invalid TOML"),
        ("[protocol]\ndraws = 7\n", "draws"),
        ("[protocol]\nlambdas = [0.4, 2.0]\n", "lambdas"),
        ("[protocol]\nmethods = ['ours', 'x']\n", "unknown method"),
        ("[finetune]\nsteps = 'many'\n", "integer"),
        ("[data]\ndatasets = ['missing_dataset']\n", "missing_dataset"),
        ("[nonsense]\na = 1\n", "unknown key"),
        ("[selection]\nlam = 1.5\n", "selection.lam must be in [0, 1]"),
        ("[selection]\nlam = -0.1\n", "selection.lam must be in [0, 1]"),
        ("[selection]\nmax_length = 0\n", "selection.max_length must be >= 1"),
        ("[selection]\nc_search = -1.0\n", "selection.c_search"),
        ("[selection]\nlam = 'high'\n", "must be a number"),
        ("[selection]\nmax_length = 2.5\n", "must be an integer"),
    ],
)
def test_run_refuses_bad_configs(toml: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "exp.toml").write_text(toml)
    code, err = run(["run", str(tmp_path / "exp.toml"), "--out", str(tmp_path / "out"), "--workers", "1"], capsys)
    assert code == 2 and message in err and err.startswith("error:") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing written for a refused run


def test_run_and_report_refuse_missing_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(["run", str(tmp_path / "nope.toml")], capsys)
    assert code == 2 and "nope.toml: file not found" in err
    code, err = run(["report", str(tmp_path / "nothing")], capsys)
    assert code == 2 and "not a run folder" in err
    code, err = run(["run", str(tmp_path / "nope.toml"), "--workers", "0"], capsys)
    assert code == 2 and "--workers" in err
    (tmp_path / "ok.toml").write_text("seed = 0\n")
    code, err = run(["run", str(tmp_path / "ok.toml"), "--executor", "cloud", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "unknown executor" in err and not (tmp_path / "o").exists()


def _datasets(dataset_factory, tumour_cases: int = 57, extra: str | None = None) -> list[str]:
    sites = {f"case_{i:03d}": "ABC"[i % 3] for i in range(tumour_cases)}
    if extra == "lonely_source":  # a fourth site with a single case: no zoo model possible
        sites = {**sites, f"case_{tumour_cases:03d}": "D"}
        tumour_cases += 1
    tum = dataset_factory(
        "Dataset001_Tum",
        n_cases=tumour_cases,
        channels=("T1",),
        labels=("tumour",),
        shape=(16, 16, 16),
        sites=sites,
        seed=1,
    )
    roots = [str(tum)]
    if extra == "pet":  # a modality and objective no source shares
        roots.append(
            str(
                dataset_factory(
                    "Dataset003_Pet", n_cases=19, channels=("PET",), labels=("uptake",), shape=(16, 16, 16), seed=3
                )
            )
        )
    return roots


@pytest.mark.parametrize(
    ("extra", "tumour_cases", "target", "message"),
    [
        ("pet", 57, "Pet-PET-uptake", "'Pet-PET-uptake' is unreachable"),
        (
            None,
            30,
            "C-T1-tumour",
            "evaluation protocol (3 draw(s) of 3 training case(s) and test sets of 10) needs at least 19",
        ),  # 10 cases at site C
        ("lonely_source", 57, "C-T1-tumour", "has 1 case(s)"),
    ],
)
def test_run_refuses_protocols_that_cannot_run_before_writing(
    dataset_factory, tmp_path: Path, capsys, extra, tumour_cases, target, message
) -> None:
    import tomli_w

    config = {
        "data": {"datasets": _datasets(dataset_factory, tumour_cases, extra)},
        "protocol": {"targets": [target], "draws": 1},
    }
    (tmp_path / "exp.toml").write_text(tomli_w.dumps(config))
    code, err = run(["run", str(tmp_path / "exp.toml"), "--out", str(tmp_path / "out"), "--workers", "1"], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_out_paths_that_are_files_are_refused(tmp_path: Path, capsys) -> None:
    (tmp_path / "file").write_text("keep me")
    (tmp_path / "exp.toml").write_text("seed = 0\n")
    for argv in (
        ["run", str(tmp_path / "exp.toml"), "--out", str(tmp_path / "file")],
        ["demo", "--out", str(tmp_path / "file")],
        ["graph", "build", str(tmp_path), "--out", str(tmp_path / "file")],
        ["benchmark", "make", "--out", str(tmp_path / "file")],
    ):
        code, err = run(argv, capsys)
        assert code == 2 and "is a file" in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert (tmp_path / "file").read_text() == "keep me"
