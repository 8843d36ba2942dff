"""`seqtransfer run` killed with SIGKILL at several points, then run again, equals an uninterrupted run."""

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import tomli_w

from seqtransfer.experiment.store import RunStore


def _command(config: Path, out: Path) -> list[str]:
    """``python -c`` arguments of ``seqtransfer run``, for the warm zygote (``warm_python``) to start."""
    code = "import sys; from seqtransfer.cli import main; sys.argv[0] = 'seqtransfer'; main()"
    return ["-c", code, "run", str(config), "--out", str(out), "--workers", "1"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _done(out: Path, kind: str) -> int:
    db = out / "runs.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM runs WHERE kind = ? AND status = 'done'", (kind,)).fetchone()[0]
    except sqlite3.DatabaseError:
        return 0


def _kill_when(warm_python, config: Path, out: Path, kind: str, count: int) -> None:
    proc = warm_python.start(*_command(config, out), env=_env())
    deadline = time.time() + 240
    while _done(out, kind) < count:
        assert proc.poll() is None, f"the run ended before {count} {kind} record(s): {proc.stderr[-500:]}"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.kill()
    assert proc.wait(timeout=30) == -signal.SIGKILL


def _run(warm_python, config: Path, out: Path) -> None:
    done = warm_python.run(*_command(config, out), env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def _results(out: Path) -> dict:
    store = RunStore(out / "runs.sqlite")
    methods = {
        (m["method"], m["target"], m["draw"], m["variant"]): (m["dice"], m["test_set_dice"])
        for m in (r.result for r in store.records("method", "done"))
    }
    zoo = {r.result["task"]: r.result["dice"] for r in store.records("zoo", "done")}
    return {"methods": methods, "zoo": zoo}


def _kill_when_files(warm_python, config: Path, out: Path, folder: str, pattern: str, count: int) -> None:
    """SIGKILL the run once ``out/folder`` holds ``count`` files matching ``pattern``."""
    proc = warm_python.start(*_command(config, out), env=_env())
    deadline = time.time() + 240
    while len(list((out / folder).rglob(pattern))) < count if (out / folder).exists() else True:
        assert proc.poll() is None, f"the run ended before {count} {pattern} in {folder}: {proc.stderr[-500:]}"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.kill()
    assert proc.wait(timeout=30) == -signal.SIGKILL


@pytest.mark.kill
@pytest.mark.slow
def test_kill_nine_in_every_stage_then_rerun_equals_uninterrupted(warm_python, tmp_path: Path) -> None:
    """A demo-like run killed while the benchmark, the graph, the zoo and the methods are written.

    One reference run and one killed-and-resumed run (four kills, then a run to the end), each
    forked from the warm zygote (no import of torch per run); every stage's results must equal
    the reference's.
    """
    config = tmp_path / "exp.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "data": {"benchmark": True, "benchmark_size": 16, "benchmark_cases": 19, "benchmark_tumour_sites": 2},
                "protocol": {
                    "targets": ["inst2-T1-ET"],
                    "draws": 1,
                    "methods": ["ours", "logme", "scratch"],
                    "quality_draws": 0,
                    "max_sources": 3,
                    "score_voxels": 20,
                    "scratch_steps": 4,
                },
                "graph": {"size": 16, "volumes_per_task": 3, "max_pairs": 4, "n_components": 3, "max_slices": 100},
                "network": {"patch_size": [16, 16, 16], "filters": [4, 8, 16]},
                "zoo": {"steps": 6, "max_train": 4},
                "finetune": {"steps": 6, "augment": True},
            }
        )
    )
    _run(warm_python, config, tmp_path / "reference")
    killed = tmp_path / "killed"
    _kill_when_files(warm_python, config, killed, "benchmark", "*.nii.gz", 40)  # while the benchmark is written
    _kill_when_files(warm_python, config, killed, "graphs", "*.np[yz]", 20)  # while the graph's features are written
    _kill_when(warm_python, config, killed, "zoo", 1)  # inside the zoo stage
    _kill_when(warm_python, config, killed, "method", 1)  # inside the methods
    _run(warm_python, config, killed)

    reference, resumed = _results(tmp_path / "reference"), _results(killed)
    assert resumed == reference and len(reference["methods"]) == 3
    attempts = [r.attempts for r in RunStore(killed / "runs.sqlite").records("method")]
    assert all(a <= 2 for a in attempts)  # nothing finished was done again
    assert (killed / "report" / "summary.md").exists()

    def edges(run: Path) -> list:
        return json.loads((run / "graphs" / "draw0" / "graph.json").read_text())["links"]

    assert edges(killed) == edges(tmp_path / "reference")  # H, R and w of every edge, bit for bit
