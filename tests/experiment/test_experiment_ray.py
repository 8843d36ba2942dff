"""The Ray executor on a real local Ray cluster (2 CPUs, started by the test) equals the local one."""

from pathlib import Path

import pytest
import ray  # a test dependency (pyproject [test]); the ray executor itself is the optional extra

from seqtransfer.experiment.config import config_from_dict
from seqtransfer.experiment.runner import run_experiment


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.cluster  # ~18 s: with the multi-node tests in `make check-cluster`, out of the suite's 5 minutes
def test_ray_executor_gives_the_results_of_the_local_one(datasets, tmp_path: Path, monkeypatch) -> None:
    from seqtransfer.core.ray_executor import RayExecutor
    from seqtransfer.experiment.mirror import SCRATCH_ENV

    tum, les = datasets
    config = config_from_dict(
        {
            "data": {"datasets": [str(tum), str(les)]},
            "protocol": {
                "targets": ["C-T1-tumour", "Les-T1-lesion"],
                "draws": 1,
                "methods": ["ours", "scratch"],
                "quality_draws": 0,
                "scratch_steps": 2,
            },
            "graph": {"size": 16, "volumes_per_task": 3, "max_pairs": 4, "n_components": 3, "max_slices": 100},
            "network": {"patch_size": [16, 16, 16], "filters": [4, 8, 16]},
            "zoo": {"steps": 2, "max_train": 4},
            "finetune": {"steps": 2, "augment": False},
        }
    )
    local = run_experiment(config, tmp_path / "local")
    monkeypatch.setenv(SCRATCH_ENV, str(tmp_path / "scratch"))  # the tasks' copies, not in /tmp
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        executor = RayExecutor()
        # on a CPU cluster nothing asks for a GPU; affinity shards never do
        assert executor.resources(gpu=True) == executor.resources(gpu=False) == {"num_cpus": 1, "num_gpus": 0}
        remote = run_experiment(config, tmp_path / "ray", executor=executor)
    finally:
        ray.shutdown()
    # the graphs (their shards ran in the driver's local pool: Ray tasks see no run folder) are the local run's
    for draw in ("draw0",):
        assert (tmp_path / "ray" / "graphs" / draw / "graph.json").read_text() == (
            tmp_path / "local" / "graphs" / draw / "graph.json"
        ).read_text()

    def results(ctx) -> dict:
        return {
            (m["method"], m["target"], m["draw"]): (m["dice"], m["test_set_dice"])
            for m in (r.result for r in ctx.store.records("method", "done"))
        }

    assert results(local) == results(remote) and len(results(local)) == 4
    # a second run finds everything done, whichever executor did it
    before = {r.key: r.attempts for r in remote.store.records()}
    again = run_experiment(config, tmp_path / "ray")
    assert {r.key: r.attempts for r in again.store.records()} == before


def test_ray_requests_a_gpu_for_trainings_only_where_the_cluster_has_gpus(monkeypatch) -> None:
    from seqtransfer.core.ray_executor import RayExecutor

    executor = RayExecutor.__new__(RayExecutor)  # no cluster: only the request logic
    executor.gpus_per_training = 1.0

    class FakeRay:
        def __init__(self, resources: dict) -> None:
            self.resources = resources

        def cluster_resources(self) -> dict:
            return self.resources

    executor._ray = FakeRay({"CPU": 16.0, "GPU": 2.0})
    assert executor.resources(gpu=True) == {"num_cpus": 1, "num_gpus": 1}
    assert executor.resources(gpu=False) == {"num_cpus": 1, "num_gpus": 0}
    executor.gpus_per_training = 0.5  # --gpus-per-training 0.5: two trainings share a GPU
    assert executor.resources(gpu=True) == {"num_cpus": 1, "num_gpus": 0.5}
    assert executor.resources(gpu=False) == {"num_cpus": 1, "num_gpus": 0}
    executor._ray = FakeRay({"CPU": 16.0})
    assert executor.resources(gpu=True) == {"num_cpus": 1, "num_gpus": 0}


@pytest.mark.parametrize("bad", [0.0, -1.0, 1.5])
def test_ray_refuses_a_gpu_share_it_cannot_request(bad: float) -> None:
    from seqtransfer.core.errors import ConfigError
    from seqtransfer.core.ray_executor import RayExecutor

    with pytest.raises(ConfigError, match="gpus per training"):
        RayExecutor(gpus_per_training=bad)
