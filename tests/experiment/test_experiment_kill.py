"""`seqtransfer run` killed with SIGKILL at several points, then run again, equals an uninterrupted run."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tomli_w

from seqtransfer.experiment.store import RunStore

TARGETS = ["C-T1-tumour", "Les-T1-lesion"]


def _toml(tum: Path, les: Path) -> dict:
    return {
        "data": {"datasets": [str(tum), str(les)]},
        "protocol": {
            "targets": TARGETS,
            "draws": 1,
            "methods": ["ours", "logme", "scratch"],
            "quality_draws": 0,
            "score_voxels": 20,
            "scratch_steps": 4,
        },
        "graph": {"size": 16, "volumes_per_task": 3, "max_pairs": 4, "n_components": 3, "max_slices": 100},
        "network": {"patch_size": [16, 16, 16], "filters": [4, 8, 16]},
        "zoo": {"steps": 6, "max_train": 4},
        "finetune": {"steps": 6, "augment": True},
    }


def _command(config: Path, out: Path) -> list[str]:
    code = "import sys; from seqtransfer.cli import main; sys.argv[0] = 'seqtransfer'; main()"
    return [sys.executable, "-c", code, "run", str(config), "--out", str(out), "--workers", "1"]


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


def _kill_when(config: Path, out: Path, kind: str, count: int) -> None:
    proc = subprocess.Popen(_command(config, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    deadline = time.time() + 240
    while _done(out, kind) < count:
        assert proc.poll() is None, f"the run ended before {count} {kind} record(s): {proc.stderr.read().decode()[-500:] if proc.stderr else ''}"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _run(config: Path, out: Path) -> None:
    done = subprocess.run(_command(config, out), capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def _results(out: Path) -> dict:
    store = RunStore(out / "runs.sqlite")
    methods = {(m["method"], m["target"], m["draw"], m["variant"]): (m["dice"], m["test_set_dice"]) for m in (r.result for r in store.records("method", "done"))}
    zoo = {r.result["task"]: r.result["dice"] for r in store.records("zoo", "done")}
    return {"methods": methods, "zoo": zoo}


@pytest.mark.kill
@pytest.mark.slow
def test_kill_nine_at_three_points_then_rerun_equals_uninterrupted(dataset_factory, tmp_path: Path) -> None:
    sites = {f"case_{i:03d}": "ABCD"[i % 4] for i in range(76)}
    tum = dataset_factory("Dataset001_Tum", n_cases=76, channels=("T1",), labels=("tumour",), shape=(16, 16, 16), sites=sites, seed=1)
    les = dataset_factory("Dataset002_Les", n_cases=19, channels=("T1",), labels=("lesion",), shape=(16, 16, 16), seed=2)
    config = tmp_path / "exp.toml"
    config.write_text(tomli_w.dumps(_toml(tum, les)))

    _run(config, tmp_path / "reference")
    killed = tmp_path / "killed"
    _kill_when(config, killed, "zoo", 1)  # inside the zoo stage
    _kill_when(config, killed, "method", 1)  # inside the first target's methods
    _kill_when(config, killed, "method", 4)  # inside the second target's methods
    _run(config, killed)

    reference, resumed = _results(tmp_path / "reference"), _results(killed)
    assert resumed == reference and len(reference["methods"]) == 2 * 3
    attempts = [r.attempts for r in RunStore(killed / "runs.sqlite").records("method")]
    assert all(a <= 2 for a in attempts)  # nothing finished was done again
    assert (killed / "report" / "summary.md").exists()


def _kill_when_files(config: Path, out: Path, folder: str, pattern: str, count: int) -> None:
    """SIGKILL the run once ``out/folder`` holds ``count`` files matching ``pattern``."""
    proc = subprocess.Popen(_command(config, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    deadline = time.time() + 240
    while len(list((out / folder).rglob(pattern))) < count if (out / folder).exists() else True:
        assert proc.poll() is None, f"the run ended before {count} {pattern} in {folder}: {proc.stderr.read().decode()[-500:] if proc.stderr else ''}"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.kill
@pytest.mark.slow
def test_kill_nine_in_the_benchmark_and_graph_stages_of_a_demo_like_run(tmp_path: Path) -> None:
    """The demo's own stages: the embedded benchmark written into the run folder, the graph."""
    config = tmp_path / "exp.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "data": {"benchmark": True, "benchmark_size": 16, "benchmark_cases": 19, "benchmark_tumour_sites": 2},
                "protocol": {"targets": ["inst2-T1-ET"], "draws": 1, "methods": ["ours"], "quality_draws": 0, "max_sources": 3},
                "graph": {"size": 16, "volumes_per_task": 3, "max_pairs": 4, "n_components": 3, "max_slices": 100},
                "network": {"patch_size": [16, 16, 16], "filters": [4, 8, 16]},
                "zoo": {"steps": 3, "max_train": 4},
                "finetune": {"steps": 3, "augment": False},
            }
        )
    )
    _run(config, tmp_path / "reference")
    killed = tmp_path / "killed"
    _kill_when_files(config, killed, "benchmark", "*.nii.gz", 40)  # while the benchmark is written
    _kill_when_files(config, killed, "graphs", "*.np[yz]", 20)  # while the graph's features are written
    _run(config, killed)  # (kills in the zoo and methods stages: the test above)
    reference, resumed = _results(tmp_path / "reference"), _results(killed)
    assert resumed == reference and len(reference["methods"]) == 1
    def edges(run: Path) -> list:
        return json.loads((run / "graphs" / "draw0" / "graph.json").read_text())["links"]

    assert edges(killed) == edges(tmp_path / "reference")  # H, R and w of every edge, bit for bit
