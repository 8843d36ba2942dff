"""Shared fixtures: tiny synthetic nnU-Net raw datasets written to tmp."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from seqtransfer.core.threads import single_threaded
from seqtransfer.data.io import write_image


def write_dataset(
    root: Path,
    n_cases: int = 4,
    channels: tuple[str, ...] = ("T1", "T2"),
    labels: tuple[str, ...] = ("tumour", "edema"),
    shape: tuple[int, int, int] = (12, 14, 10),
    spacing: tuple[float, float, float] = (1.0, 1.2, 2.0),
    sites: dict[str, str] | None = None,
    seed: int = 0,
) -> Path:
    """Write a small, valid nnU-Net v2 raw dataset and return its folder.

    Each case has a nonzero "head" box with a random foreground blob per label value.
    """
    rng = np.random.default_rng(seed)
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-5.0, 3.0, 1.5]
    for i in range(n_cases):
        case = f"case_{i:03d}"
        label = np.zeros(shape, dtype=np.uint8)
        for value in range(1, len(labels) + 1):
            c = [rng.integers(3, s - 3) for s in shape]
            label[c[0] - 1 : c[0] + 2, c[1] - 1 : c[1] + 2, c[2] - 1 : c[2] + 2] = value
        write_image(root / "labelsTr" / f"{case}.nii.gz", label, affine)
        for ch in range(len(channels)):
            img = np.zeros(shape, dtype=np.float32)
            img[1:-1, 1:-1, 1:-1] = rng.normal(100 + 10 * ch, 5, size=tuple(s - 2 for s in shape))
            img[label > 0] += 50
            write_image(root / "imagesTr" / f"{case}_{ch:04d}.nii.gz", img, affine)
    meta = {
        "channel_names": {str(i): c for i, c in enumerate(channels)},
        "labels": {"background": 0, **{name: i + 1 for i, name in enumerate(labels)}},
        "numTraining": n_cases,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))
    if sites is not None:
        lines = ["case,site", *[f"{c},{s}" for c, s in sites.items()]]
        (root / "sites.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def dataset_writer():
    """:func:`write_dataset` itself, for module-scoped fixtures (``dataset_factory`` is per test)."""
    return write_dataset


@pytest.fixture
def dataset_factory(tmp_path: Path):
    """Build tiny datasets under tmp_path: ``dataset_factory("Dataset001_X", **kw)``."""

    def make(name: str = "Dataset001_Toy", **kwargs) -> Path:
        return write_dataset(tmp_path / name, **kwargs)

    return make


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's cache from tests."""
    monkeypatch.setenv("SEQTRANSFER_CACHE", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny arrays and networks run fastest, and least disturbed by other processes, on one thread."""
    with single_threaded():
        yield


def ball_labels(rng: np.random.Generator, n: int, shape: tuple[int, int, int]) -> list[np.ndarray]:
    """``n`` uint8 label volumes, each one ball of random centre and radius (may be empty)."""
    grid = np.indices(shape).astype(np.float64)
    out = []
    for _ in range(n):
        centre = rng.uniform(0.2, 0.8, 3) * np.asarray(shape)
        radius = rng.uniform(0.0, 0.3) * min(shape)
        distance_sq = ((grid - centre[:, None, None, None]) ** 2).sum(axis=0)
        out.append((distance_sq < radius**2).astype(np.uint8))
    return out


@pytest.fixture
def make_ball_labels():
    """:func:`ball_labels`."""
    return ball_labels


CLI_DRIVER_PRELUDE = r'''
import contextlib, io, json, os, sys
from pathlib import Path


def cli(*argv):
    """Run the console script's main in this process: (exit code, stderr)."""
    from seqtransfer.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main([str(a) for a in argv])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
    return {"code": code, "err": err.getvalue()}
'''


@pytest.fixture
def cli_driver_prelude() -> str:
    """Source of a ``cli(*argv)`` helper for driver scripts run in another process (a mount
    namespace, dropped capabilities): calls ``seqtransfer.cli.main`` and returns its exit code
    and stderr."""
    return CLI_DRIVER_PRELUDE


@pytest.fixture
def run_cli(capsys):
    """``run_cli(*argv)``: the console script's main in this process -> (exit code, stdout, stderr)."""
    from seqtransfer.cli import main

    def run(*argv: object) -> tuple[int, str, str]:
        try:
            main([str(a) for a in argv])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def pytest_collection_modifyitems(config, items) -> None:  # noqa: ARG001 - pytest's hook signature
    """Tests marked ``root`` are skipped, with the reason, where they cannot run."""
    reason = None
    # SEQTRANSFER_TESTS_NOT_ROOT=1 makes a root run behave as a contributor's (tests/test_markers.py)
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or os.environ.get("SEQTRANSFER_TESTS_NOT_ROOT") == "1":
        reason = "needs root (private mount namespaces, dropped capabilities); run as root, as CI does"
    elif not (shutil.which("unshare") and shutil.which("setpriv")):
        reason = "needs util-linux's unshare and setpriv"
    if reason is None:
        return
    for item in items:
        if "root" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))
