"""Shared fixtures: tiny synthetic nnU-Net raw datasets written to tmp."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
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


class WarmChild:
    """A child forked by the zygote (tests/zygote.py): a process of its own, like a :class:`subprocess.Popen`."""

    def __init__(self, zygote: WarmPython, pid: int, stdout: Path, stderr: Path) -> None:
        self._zygote = zygote
        self.pid = pid
        self.stdout_path = stdout
        self.stderr_path = stderr
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit status once the child has ended (``-SIGNUM`` if a signal ended it), else None."""
        if self.returncode is None:
            self.returncode = self._zygote.request({"op": "poll", "pid": self.pid})["returncode"]
        return self.returncode

    def wait(self, timeout: float) -> int:
        """Wait for the end of the child; its exit status.

        Raises:
            subprocess.TimeoutExpired: still running after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while (code := self.poll()) is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"warm child {self.pid}", timeout)
            time.sleep(0.02)
        return code

    def kill(self) -> None:
        """SIGKILL the child (if it still runs)."""
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)

    @property
    def stdout(self) -> str:
        """What the child wrote to stdout so far."""
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        """What the child wrote to stderr so far."""
        return self.stderr_path.read_text(errors="replace")


class WarmPython:
    """Starts children as ``python ARGS...`` would, forked from one warm zygote that has imported
    torch, MONAI and seqtransfer (no threads yet); the pytest process itself, whose torch has run
    with threads, is never forked."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._count = 0
        self._children: list[WarmChild] = []
        src = str(Path(__file__).resolve().parents[1] / "src")
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "PYTHONHASHSEED": "0",
            "PYTHONPATH": os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])]),
        }
        self._log = open(folder / "zygote.log", "wb")
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("zygote.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
        self._ready = False

    def request(self, message: dict) -> dict:
        """Send one request to the zygote; its reply."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        if not self._ready:
            hello = self._proc.stdout.readline()
            assert hello, f"the zygote did not start: {(self._folder / 'zygote.log').read_text()[-2000:]}"
            threads = json.loads(hello)["threads"]
            assert threads == 1, f"the zygote runs {threads} threads after its imports: forking it is unsafe"
            self._ready = True
        self._proc.stdin.write(json.dumps(message).encode() + b"\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        assert line, f"the zygote died: {(self._folder / 'zygote.log').read_text()[-2000:]}"
        answer = json.loads(line)
        assert "error" not in answer, answer["error"]
        return answer

    def start(self, *args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> WarmChild:
        """A child running ``python ARGS...`` (``"-c", CODE, *argv`` or ``SCRIPT, *argv``).

        ``env`` (default: this process's environment) becomes the child's ``os.environ``; settings
        read when Python starts (PYTHONPATH, PYTHONHASHSEED, OMP_NUM_THREADS) are the zygote's.
        """
        self._count += 1
        stdout, stderr = self._folder / f"child{self._count}.out", self._folder / f"child{self._count}.err"
        stdout.touch()  # readable at once, before the child opens them
        stderr.touch()
        reply = self.request(
            {
                "op": "start",
                "args": [str(a) for a in args],
                "env": dict(os.environ if env is None else env),
                "cwd": str(cwd or Path.cwd()),
                "stdout": str(stdout),
                "stderr": str(stderr),
            }
        )
        child = WarmChild(self, reply["pid"], stdout, stderr)
        self._children.append(child)
        return child

    def run(
        self, *args: str | Path, timeout: float, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> WarmChild:
        """:meth:`start`, then wait for the child's end (killed after ``timeout`` seconds)."""
        child = self.start(*args, env=env, cwd=cwd)
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            raise
        return child

    def close(self) -> None:
        """Kill the children still running, end the zygote."""
        for child in self._children:
            child.kill()
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        self._proc.wait(timeout=30)
        self._log.close()


@pytest.fixture(scope="session")
def warm_python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WarmPython]:
    """Start ``python`` children (SIGKILL tests) without re-importing torch each time (:class:`WarmPython`)."""
    zygote = WarmPython(tmp_path_factory.mktemp("zygote"))
    yield zygote
    zygote.close()


def _root_skip_reason() -> str | None:
    """Why the ``root`` tests cannot run here (None: they can)."""
    # SEQTRANSFER_TESTS_NOT_ROOT=1 makes a root run behave as a contributor's (tests/test_markers.py)
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or os.environ.get("SEQTRANSFER_TESTS_NOT_ROOT") == "1":
        return "needs root (private mount namespaces, dropped capabilities); run as root, as CI does"
    if not (shutil.which("unshare") and shutil.which("setpriv")):
        return "needs util-linux's unshare and setpriv"
    return None


def pytest_collection_modifyitems(config, items) -> None:
    """Tests are skipped, with the reason, by their marker where they cannot run: ``root``
    without root, ``nnunet`` without nnunetv2, and ``cluster`` (a multi-node Ray cluster,
    minutes) unless ``-m`` names it. The marker itself is read: "nnunet" in ``item.keywords``
    would also hold for every test of tests/nnunet/."""
    reasons = {
        "root": _root_skip_reason(),
        "nnunet": None
        if importlib.util.find_spec("nnunetv2") is not None
        else "needs nnunetv2 (the nnunet extra): run `make check-nnunet`",
        "cluster": None
        if "cluster" in (config.getoption("-m") or "")
        else "a multi-node Ray cluster (~3 min): run `make check-cluster`",
    }
    for item in items:
        for marker, reason in reasons.items():
            if reason is not None and item.get_closest_marker(marker) is not None:
                item.add_marker(pytest.mark.skip(reason=reason))


def cube_cases(n: int, size: int = 16, seed: int = 0, contrast: float = 2.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Learnable toy task: a bright cube (foreground) in Gaussian noise."""
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(n):
        label = np.zeros((size, size, size), dtype=np.uint8)
        edge = int(rng.integers(size // 4, size // 2))
        o = rng.integers(1, size - edge - 1, size=3)
        label[o[0] : o[0] + edge, o[1] : o[1] + edge, o[2] : o[2] + edge] = 1
        image = (rng.normal(0.0, 1.0, size=(1, size, size, size)) + contrast * label).astype(np.float32)
        cases.append((image, label))
    return cases


@pytest.fixture
def cubes():
    """``cubes(n, size=16, seed=0)``: toy cases."""
    return cube_cases
