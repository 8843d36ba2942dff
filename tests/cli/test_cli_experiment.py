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
