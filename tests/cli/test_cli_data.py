"""CLI exit codes and one-line errors for the data commands (run in-process)."""

import json
from pathlib import Path

import pytest

from seqtransfer.cli import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
        raise SystemExit(0)
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out, captured.err


def test_verify_clean_dataset_exits_zero(dataset_factory, capsys) -> None:
    root = dataset_factory()
    code, out, err = run(["verify", str(root)], capsys)
    assert code == 0, err
    assert "ok: 1 dataset(s) verified" in out


def test_verify_broken_dataset_exits_two_with_one_line_per_problem(dataset_factory, capsys) -> None:
    root = dataset_factory()
    (root / "labelsTr" / "case_001.nii.gz").unlink()
    (root / "imagesTr" / "case_002_0001.nii.gz").unlink()
    code, out, err = run(["verify", str(root)], capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert any("case_001_0000.nii.gz" in line for line in lines)
    assert any("case_002_0001.nii.gz" in line for line in lines)
    assert "Traceback" not in err


def test_tasks_json(dataset_factory, capsys) -> None:
    root = dataset_factory(sites={f"case_{i:03d}": "s1" if i % 2 else "s2" for i in range(4)})
    code, out, err = run(["tasks", str(root), "--json"], capsys)
    assert code == 0, err
    rows = json.loads(out)
    assert {r["task"] for r in rows} == {
        f"{s}-{m}-{o}" for s in ("s1", "s2") for m in ("T1", "T2") for o in ("tumour", "edema")
    }
    assert all(r["cases"] == 2 for r in rows)


def test_tasks_table(dataset_factory, capsys) -> None:
    root = dataset_factory()
    code, out, _ = run(["tasks", str(root)], capsys)
    assert code == 0
    assert "Toy-T1-tumour" in out and "4 tasks" in out


def test_tasks_refuses_bad_dataset_before_anything(dataset_factory, capsys) -> None:
    root = dataset_factory()
    (root / "dataset.json").write_text("{")
    code, out, err = run(["tasks", str(root)], capsys)
    assert code == 2
    assert err.strip().splitlines() == [
        f"error: {root / 'dataset.json'}: invalid JSON at line 1 column 2: Expecting property name enclosed in "
        "double quotes"
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "/definitely/not/here"],
        ["tasks", "/definitely/not/here"],
        ["tasks"],
        ["verify", "--bogus"],
        ["no-such-command"],
        ["benchmark", "make", "--out", "x", "--size", "notanint"],
    ],
)
def test_bad_arguments_exit_two_with_one_line(argv, capsys) -> None:
    code, out, err = run(argv, capsys)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err


def test_groups_file_errors_are_one_line(dataset_factory, tmp_path: Path, capsys) -> None:
    root = dataset_factory()
    code, _, err = run(["tasks", str(root), "--groups", str(tmp_path / "missing.json")], capsys)
    assert code == 2 and "missing.json" in err and len(err.strip().splitlines()) == 1


def test_benchmark_make_then_verify(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench"
    code, stdout, err = run(
        ["benchmark", "make", "--out", str(out), "--size", "16", "--cases", "4", "--sites", "2"], capsys
    )
    assert code == 0, err
    roots = [Path(line) for line in stdout.split() if "Dataset" in line]
    assert len(roots) == 4  # the three sources and the new hospital (Dataset504_NewClinicLike)
    code, stdout, err = run(["verify", *map(str, roots)], capsys)
    assert code == 0, err
    assert "ok: 4 dataset(s) verified, 0 warning(s)" in stdout


def test_benchmark_make_bad_config(tmp_path: Path, capsys) -> None:
    code, _, err = run(["benchmark", "make", "--out", str(tmp_path / "b"), "--size", "4"], capsys)
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1


def _command_paths() -> list[list[str]]:
    import typer

    from seqtransfer.cli import app

    paths = []

    def walk(command, prefix: list[str]) -> None:
        if hasattr(command, "commands"):  # a group (typer vendors its own click)
            for name, sub in command.commands.items():
                walk(sub, [*prefix, name])
        else:
            paths.append(prefix)

    walk(typer.main.get_command(app), [])
    return paths


def test_every_command_refuses_an_unknown_option_in_one_line(capsys) -> None:
    paths = _command_paths()
    assert len(paths) >= 13 and ["graph", "build"] in paths and ["run"] in paths
    for path in paths:
        code, _, err = run([*path, "--no-such-option"], capsys)
        lines = [line for line in err.strip().splitlines() if line]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), (path, err)
