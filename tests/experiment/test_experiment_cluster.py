"""The protocol on a Ray cluster of several nodes (``ray.cluster_utils.Cluster`` on this machine).

A head without CPUs and two worker nodes of one CPU each: every task runs on a worker node,
none in the driver. The run equals a local one-process run: the same store rows and the same
model bytes. No task opens the run folder or the datasets: each node's workers work in their
own scratch folder, and a hook in every task worker refuses any access to the driver's paths
(only the driver's file server, an actor, may). The driver alone writes ``runs.sqlite``. A node
removed in the middle of the zoo stage takes its running tasks with it; Ray runs them again on
the other node and the result is unchanged. Also: the driver of a local pool killed mid-run, and one Ray
worker process killed mid-task, each resume to the same results. ``make check-cluster`` (~3 min;
not in ``make test``).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from seqtransfer.experiment.config import config_from_dict
from seqtransfer.experiment.runner import run_experiment

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.cluster]


def _raw_config(tum: Path, les: Path) -> dict:
    return {
        "data": {"datasets": [str(tum), str(les)]},
        "protocol": {
            "targets": ["C-T1-tumour", "Les-T1-lesion"],
            "draws": 1,
            "methods": ["ours", "landmark_direct", "scratch"],
            "quality_draws": 0,
            "scratch_steps": 3,
        },
        "graph": {"size": 16, "volumes_per_task": 3, "max_pairs": 4, "n_components": 3, "max_slices": 100},
        "network": {"patch_size": [16, 16, 16], "filters": [4, 8, 16]},
        # enough steps that the zoo stage is still running when the node is removed
        "zoo": {"steps": 40, "max_train": 4},
        "finetune": {"steps": 3, "augment": False},
    }


def _rows(run: Path) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(run / "runs.sqlite") as db:
        rows = db.execute("SELECT key, status, result FROM runs").fetchall()
    return {key: (status, result) for key, status, result in rows}


def _models(run: Path) -> dict[str, str]:
    """Every checkpoint of the run folder (zoo, fine-tuning steps, scratch): its bytes' hash by its path."""
    return {
        str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((run / "models").rglob("checkpoint_final.pth"))
    }


def _zoo_running(run: Path) -> int:
    try:
        with sqlite3.connect(run / "runs.sqlite", timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM runs WHERE kind = 'zoo'").fetchone()[0]
    except sqlite3.DatabaseError:
        return 0


def _refuse_paths(prefixes: list[str]) -> Callable[[], None]:
    """A Ray worker setup hook: any file access under ``prefixes`` by a task (not an actor)
    raises PermissionError and is noted in the ``VIOLATIONS`` file."""

    def setup() -> None:
        import os
        import sys

        import ray

        watched = {"open", "os.listdir", "os.scandir", "os.mkdir", "os.rename", "os.remove", "shutil.copyfile"}

        def hook(event: str, args: tuple) -> None:
            if event not in watched or not args:
                return
            try:
                path = os.fsdecode(args[0]) if isinstance(args[0], (str, bytes, os.PathLike)) else ""
            except TypeError:
                return
            if path and any(path == p or path.startswith(p + "/") for p in prefixes[1:]):
                if ray.get_runtime_context().get_actor_id() is None:  # a task, not the file server
                    with open(prefixes[0], "a") as out:
                        out.write(f"{event} {path}\n")
                    raise PermissionError(f"a task touched {path}")

        sys.addaudithook(hook)

    return setup


def test_a_multi_node_cluster_losing_a_node_gives_the_local_results(
    datasets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pickle

    import ray
    from ray.cluster_utils import Cluster

    from seqtransfer.core.ray_executor import RayExecutor
    from seqtransfer.experiment.mirror import SCRATCH_ENV

    tum, les = datasets
    config = config_from_dict(_raw_config(tum, les))
    local = tmp_path / "local"
    run_experiment(config, local)

    scratch = tmp_path / "scratch"  # each node's workers: scratch/NODE
    monkeypatch.setenv(SCRATCH_ENV, str(scratch))
    remote = tmp_path / "cluster"
    violations = tmp_path / "violations.txt"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    doomed = cluster.add_node(num_cpus=1)
    cluster.add_node(num_cpus=1)
    removed: list[float] = []
    handed: list[bytes] = []
    original_map = RayExecutor.map

    def recording_map(self, fn, items, *args, **kwargs):  # what every task is handed
        handed.extend(pickle.dumps(item) for item in items)
        return original_map(self, fn, items, *args, **kwargs)

    monkeypatch.setattr(RayExecutor, "map", recording_map)

    def remove_a_node_during_the_zoo() -> None:
        deadline = time.time() + 300
        while _zoo_running(remote) < 1 and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # inside the zoo trainings
        cluster.remove_node(doomed, allow_graceful=False)
        removed.append(time.time())

    try:
        guarded = [str(violations), str(remote.resolve()), str(tum.resolve()), str(les.resolve())]
        hook = _refuse_paths(guarded)
        ray.init(address=cluster.address, log_to_driver=False, runtime_env={"worker_process_setup_hook": hook})
        cluster.wait_for_nodes()
        executor = RayExecutor()
        assert {n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]} == {0.0, 1.0}
        killer = threading.Thread(target=remove_a_node_during_the_zoo, daemon=True)
        killer.start()
        run_experiment(config, remote, executor=executor)
        killer.join(timeout=60)
        assert removed, "the node was never removed"
        # the head and the node left (the GCS marks a removed node dead once its heartbeats stop)
        deadline = time.time() + 120
        while len([n for n in ray.nodes() if n["Alive"]]) != 2 and time.time() < deadline:
            time.sleep(0.5)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        touched = violations.read_text() if violations.exists() else ""

        @ray.remote(num_cpus=1)
        def peek() -> bytes:  # the hook can fail: a task that reads the store is refused
            return (remote / "runs.sqlite").read_bytes()

        with pytest.raises(ray.exceptions.RayTaskError, match="PermissionError"):
            ray.get(peek.remote())
    finally:
        ray.shutdown()
        cluster.shutdown()

    local_rows, remote_rows = _rows(local), _rows(remote)
    assert set(remote_rows) == set(local_rows)  # the same runs (keys hash their specs)
    assert {v[0] for v in remote_rows.values()} == {"done"}

    def numbers(rows: dict) -> dict:
        """What a run measured (paths and timings differ between run folders)."""
        out = {}
        for key, (_, text) in rows.items():
            result = json.loads(text)
            out[key] = {k: result.get(k) for k in ("dice", "test_set_dice", "final_dice", "per_case", "path")}
        return out

    assert numbers(remote_rows) == numbers(local_rows)
    assert sum(1 for v in remote_rows.values() if '"method"' in v[1]) == 2 * 3  # 2 targets x 3 methods
    assert _models(remote) == _models(local) and len(_models(local)) >= 4
    # no task touched the driver's paths, none was handed one, and each node kept its own copy
    assert not touched, touched
    assert handed and not any(str(p).encode() in item for item in handed for p in (remote, tum, les, tmp_path))
    nodes = [d for d in scratch.iterdir() if (d / "objects").is_dir()]
    assert len(nodes) == 2, nodes  # the removed node had its own copy of the datasets too
    assert all(any((d / "runs").rglob("dataset.json")) for d in nodes)
    assert any(any((d / "runs").rglob("checkpoint_final.pth")) for d in nodes)
    # the JSON files the tasks wrote (a transfer's metrics.json names its models) name the run folder
    written = [p for p in (remote / "models").rglob("*.json")]
    assert written and not any(str(scratch) in p.read_text() for p in written)
    assert any(str(remote.resolve() / "models") in p.read_text() for p in written)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _count(run: Path, kind: str) -> int:
    try:
        with sqlite3.connect(run / "runs.sqlite", timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM runs WHERE kind = ? AND status = 'done'", (kind,)).fetchone()[0]
    except sqlite3.DatabaseError:
        return 0


def test_the_driver_killed_while_pool_workers_run_resumes_to_the_same_results(datasets, tmp_path: Path) -> None:
    """``seqtransfer run --workers 2`` killed (SIGKILL) once the workers' first method records
    have reached the store, while other units still run, then run again: the store and every
    checkpoint equal an uninterrupted one-process run's."""
    import os
    import signal
    import subprocess
    import sys

    import tomli_w

    tum, les = datasets
    raw = _raw_config(tum, les)
    reference = tmp_path / "reference"
    run_experiment(config_from_dict(raw), reference)
    toml = tmp_path / "exp.toml"
    toml.write_text(tomli_w.dumps(raw))
    killed = tmp_path / "killed"
    code = "import sys; from seqtransfer.cli import main; sys.argv[0] = 'seqtransfer'; main()"
    command = [sys.executable, "-c", code, "run", str(toml), "--out", str(killed), "--workers", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    while _count(killed, "method") < 1:
        assert proc.poll() is None, f"the run ended before its first method record: {proc.stderr.read()[-800:]}"
        assert time.time() < deadline
        time.sleep(0.05)
    workers = _children(proc.pid)
    assert workers, "the pool had no worker process"
    proc.kill()
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert _count(killed, "method") < 2 * 3  # killed in the middle of the methods
    deadline = time.time() + 30  # the orphaned workers end themselves (they check every second)
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers), "a pool worker outlived its driver"
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-2000:]

    killed_rows, reference_rows = _rows(killed), _rows(reference)
    assert set(killed_rows) == set(reference_rows)

    def numbers(rows: dict) -> dict:
        return {
            key: {k: json.loads(text).get(k) for k in ("dice", "test_set_dice", "final_dice", "per_case", "path")}
            for key, (_, text) in rows.items()
        }

    assert numbers(killed_rows) == numbers(reference_rows)
    assert _models(killed) == _models(reference)


def test_a_ray_worker_killed_mid_task_is_retried_to_the_same_results(
    datasets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL of the Ray worker process running a methods unit, once its first records have
    reached the store: Ray runs the task again and the run equals a one-process run."""
    import os
    import signal

    import ray

    from seqtransfer.core.ray_executor import RayExecutor
    from seqtransfer.experiment.mirror import SCRATCH_ENV

    tum, les = datasets
    config = config_from_dict(_raw_config(tum, les))
    reference = tmp_path / "reference"
    run_experiment(config, reference)
    remote = tmp_path / "ray"
    killed: list[int] = []

    def kill_a_worker_in_the_methods() -> None:
        deadline = time.time() + 300
        while _count(remote, "method") < 1 and time.time() < deadline:
            time.sleep(0.05)
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):  # Ray titles a busy worker ray::FUNCTION
            try:
                title = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            pid = int(cmdline.parent.name)
            if title.startswith("ray::run_in_worker") and pid != os.getpid():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return

    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "scratch"))  # the tasks' copies, not in /tmp
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        killer = threading.Thread(target=kill_a_worker_in_the_methods, daemon=True)
        killer.start()
        run_experiment(config, remote, executor=RayExecutor())
        killer.join(timeout=60)
    finally:
        ray.shutdown()
    assert killed, "no Ray worker was running a unit when the first method record arrived"
    remote_rows, reference_rows = _rows(remote), _rows(reference)
    assert set(remote_rows) == set(reference_rows)
    assert {v[0] for v in remote_rows.values()} == {"done"}
    keys = ("dice", "test_set_dice", "final_dice", "per_case", "path")
    assert {k: {f: json.loads(v[1]).get(f) for f in keys} for k, v in remote_rows.items()} == {
        k: {f: json.loads(v[1]).get(f) for f in keys} for k, v in reference_rows.items()
    }
    assert _models(remote) == _models(reference)
    with sqlite3.connect(remote / "runs.sqlite") as db:  # the killed unit's runs were started again
        attempts, runs = db.execute("SELECT SUM(attempts), COUNT(*) FROM runs").fetchone()
    assert attempts > runs
