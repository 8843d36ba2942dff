"""The layer contract in pyproject.toml holds, and it fails when an upward import is added."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parents[1]


def _lint(src: Path, config: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filenames=(sys.argv[2],), no_cache=True))"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(src), str(config)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _copy(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "seqtransfer", src / "seqtransfer", ignore=shutil.ignore_patterns("__pycache__"))
    config = tmp_path / "pyproject.toml"
    shutil.copy(ROOT / "pyproject.toml", config)
    return src, config


def test_layers_are_kept(tmp_path: Path) -> None:
    src, config = _copy(tmp_path)
    result = _lint(src, config, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "seqtransfer layers KEPT" in result.stdout


@pytest.mark.parametrize(
    ("module", "upward"),
    [
        ("core/atomic.py", "seqtransfer.data.io"),
        ("training/loop.py", "seqtransfer.pipeline.zoo"),
        ("evaluation/dice.py", "seqtransfer.training.network"),  # allowed: evaluation is above training
        ("graph/store.py", "seqtransfer.experiment.store"),
        ("data/io.py", "seqtransfer.benchmark.writer"),  # the benchmark is built on data, not under it
        ("benchmark/collection.py", "seqtransfer.training.network"),  # siblings: independent
    ],
)
def test_an_upward_import_breaks_the_contract(tmp_path: Path, module: str, upward: str) -> None:
    src, config = _copy(tmp_path)
    path = src / "seqtransfer" / module
    path.write_text(path.read_text() + f"\nimport {upward}  # added by the test\n")
    result = _lint(src, config, tmp_path)
    allowed = module.startswith("evaluation/")
    assert (result.returncode == 0) == allowed, result.stdout + result.stderr
    if not allowed:
        assert "BROKEN" in result.stdout
        assert upward in result.stdout
