"""The package as a user gets it: the wheel and the sdist, and an offline install into a fresh venv.

The first tests build the sdist and, from it, the wheel (``python -m build --no-isolation``: no
network) out of a copy of the source tree, and check what they hold. The last one installs a
wheelhouse (``make wheelhouse``) into a fresh virtual environment inside a network namespace
without network, torch first as a user with their own torch build would, and runs the installed
console script there. It needs root (``unshare -n``) and a wheelhouse: ``make check-offline``
builds one and runs it; without ``SEQTRANSFER_WHEELHOUSE`` it is skipped with the reason.
"""

from __future__ import annotations

import email.parser
import email.policy
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
#: the extras the README and the issue promise
EXTRAS = {"ray", "nnunet", "docs", "test", "lint"}
#: set to a wheelhouse folder (``make check-offline`` does) to run the offline install
WHEELHOUSE_ENV = "SEQTRANSFER_WHEELHOUSE"


def _offline_build_missing() -> str | None:
    """Why the wheel cannot be built here without network, or None."""
    if importlib.util.find_spec("build") is None:
        return "building the wheel offline needs `build` and setuptools>=77 (the test extra)"
    try:
        import setuptools
    except ImportError as exc:
        return f"building the wheel offline needs setuptools>=77 (the test extra): {exc}"
    major = int(setuptools.__version__.split(".")[0])
    if major < 77:
        return f"building the wheel offline needs setuptools>=77 (the test extra), found {setuptools.__version__}"
    return None


def _source_files() -> set[str]:
    """The package's files in the source tree, relative to src/ (no caches, no egg-info)."""
    return {
        p.relative_to(SRC).as_posix()
        for p in SRC.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not any(part.endswith(".egg-info") for part in p.parts)
    }


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel built from it, from a copy of the tree (the tree itself stays clean)."""
    missing = _offline_build_missing()
    if missing is not None:
        pytest.skip(missing)
    base = tmp_path_factory.mktemp("build")
    tree = base / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(SRC, tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = base / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(tree)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, f"{pattern} in {folder}: {found}"
    return found[0]


def test_the_wheel_holds_every_file_and_subpackage_of_the_source_tree(dist: Path) -> None:
    wheel = zipfile.ZipFile(_one(dist, "seqtransfer-*.whl"))
    names = set(wheel.namelist())
    package = {n for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert package == _source_files()
    assert "seqtransfer/py.typed" in package
    subpackages = {p.parent.name for p in (SRC / "seqtransfer").glob("*/__init__.py")}
    assert {"core", "pipeline", "benchmark", "training"} <= subpackages
    assert all(f"seqtransfer/{s}/__init__.py" in package for s in subpackages)
    info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/entry_points.txt"))
    scripts = wheel.read(f"{info}/entry_points.txt").decode()
    assert "seqtransfer = seqtransfer.cli:main" in scripts


def test_the_wheel_metadata_leaves_torch_and_python_to_the_user(dist: Path) -> None:
    wheel = zipfile.ZipFile(_one(dist, "seqtransfer-*.whl"))
    metadata_name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    meta = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(wheel.read(metadata_name))
    assert meta["Requires-Python"] == ">=3.11"
    requires = meta.get_all("Requires-Dist") or []
    torch = [r for r in requires if r.replace(" ", "").startswith("torch") and "extra" not in r]
    assert len(torch) == 1 and ">=" in torch[0] and "==" not in torch[0] and "<" not in torch[0], torch
    assert EXTRAS <= set(meta.get_all("Provides-Extra") or [])
    assert any(r.startswith("nnunetv2") and 'extra == "nnunet"' in r for r in requires), requires


def test_the_sdist_holds_what_the_wheel_was_built_from(dist: Path) -> None:
    sdist = _one(dist, "seqtransfer-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {"pyproject.toml", "README.md", "LICENSE"} <= names
    in_src = {n.removeprefix("src/") for n in names if n.startswith("src/seqtransfer/")}
    assert {n for n in in_src if "." in Path(n).name} == _source_files()


def _offline(env: dict[str, str], cwd: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run(*argv)``: one command in a new network namespace without network (only a down lo)."""

    def run(*argv: object, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        command: Sequence[str] = ["unshare", "-n", *(str(a) for a in argv)]
        return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)

    return run


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"{proc.args}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.root
@pytest.mark.slow
def test_the_wheelhouse_installs_and_runs_without_network_beside_the_users_torch(
    tmp_path: Path, dataset_writer
) -> None:
    folder = os.environ.get(WHEELHOUSE_ENV)
    if not folder:
        pytest.skip(f"needs a wheelhouse: `make check-offline` builds one and sets {WHEELHOUSE_ENV}")
    wheelhouse = Path(folder).resolve()
    sdist = _one(wheelhouse, "seqtransfer-*.tar.gz")
    # nothing of the developer's set-up: no PYTHONPATH to src/, no pip configuration (find-links,
    # extra indexes, constraints), an empty pip cache
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "LC_ALL": "C.UTF-8",
    }
    run = _offline(env, tmp_path)
    interfaces = [line.split(":")[0].strip() for line in _ok(run("cat", "/proc/net/dev")).splitlines()[2:]]
    assert interfaces == ["lo"], f"the namespace has interfaces {interfaces}"

    venv = tmp_path / "venv"
    _ok(run(sys.executable, "-m", "venv", venv))
    pip = [venv / "bin" / "python", "-m", "pip", "install", "--no-index", "--find-links", wheelhouse]
    # the user's own torch first (here: the wheelhouse's), then seqtransfer, which must keep it
    _ok(run(*pip, "torch"))
    version = "import torch; print(torch.__version__, torch.__file__)"
    torch_before = _ok(run(venv / "bin" / "python", "-c", version))
    installed = _ok(run(*pip, "seqtransfer"))
    assert "Successfully installed" in installed and " torch-" not in installed, installed[-2000:]
    assert _ok(run(venv / "bin" / "python", "-c", version)) == torch_before

    where = _ok(run(venv / "bin" / "python", "-c", "import seqtransfer; print(seqtransfer.__file__)")).strip()
    assert Path(where).is_relative_to(venv), f"seqtransfer imported from {where}, not from the venv"
    assert "adapt" in _ok(run(venv / "bin" / "seqtransfer", "--help"))

    source = dataset_writer(
        tmp_path / "Dataset001_Src",
        n_cases=6,
        channels=("FLAIR",),
        labels=("lesion",),
        shape=(16, 16, 16),
        sites={f"case_{i:03d}": ("A" if i < 3 else "B") for i in range(6)},
        seed=1,
    )
    target = dataset_writer(
        tmp_path / "Dataset002_New", n_cases=2, channels=("flair",), labels=("lesion",), shape=(16, 16, 16), seed=3
    )
    (target / "imagesTs").mkdir()
    shutil.copy2(target / "imagesTr" / "case_001_0000.nii.gz", target / "imagesTs" / "ts_000_0000.nii.gz")
    out = tmp_path / "adapted"
    tiny = ["--zoo-steps", "1", "--steps", "1", "--size", "16", "--volumes", "3"]
    _ok(run(venv / "bin" / "seqtransfer", "adapt", source, target, "--target", "all", "--out", out, *tiny))
    assert (out / "predictions" / "ts_000.nii.gz").is_file()
    assert (out / "adapt.json").is_file()

    # the sdist too: built by pip without network (its build requirement, setuptools, is in the wheelhouse)
    _ok(run(*pip, "--no-deps", "--force-reinstall", sdist))
    assert "adapt" in _ok(run(venv / "bin" / "seqtransfer", "--help"))
