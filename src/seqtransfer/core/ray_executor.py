"""The Ray executor: independent runs as Ray tasks on an existing cluster (or a local one).

Each call of ``fn`` becomes a Ray task asking for one CPU, and for trainings (``gpu=True``)
``gpus_per_training`` GPUs too where the cluster has GPUs (Ray's fractional GPUs: 0.5 lets two
small trainings share one); affinity shards never ask for a GPU. What a task
:func:`~seqtransfer.core.executor.send` s (the run store's records) travels through a Ray
queue (an actor holding no CPU) to the driver, which alone writes the run store.

``ships_files``: the tasks of ``seqtransfer run`` see no shared filesystem. They are handed no
path of the driver's and work in a copy of the run on their node's scratch folder, the files
travelling through Ray's object store (:mod:`seqtransfer.experiment.mirror`); ``storage`` is a
folder every node mounts, where that copy is kept once for the whole cluster instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from seqtransfer.core.atomic import prepare_output_folder
from seqtransfer.core.errors import ConfigError, SeqTransferError
from seqtransfer.core.executor import POLL_SECONDS, OnMessage, run_in_worker
from seqtransfer.core.progress import Progress, report

T = TypeVar("T")
R = TypeVar("R")


class RayExecutor:
    """Ray tasks; ``address=None`` starts or joins the local cluster (``ray.init()``).

    Raises:
        ConfigError: Ray is not installed, or the cluster cannot be reached.
    """

    #: the run's files travel to and from the tasks (see the module)
    ships_files = True

    def __init__(self, address: str | None = None, gpus_per_training: float = 1.0, storage: str | None = None) -> None:
        if storage is not None:  # the driver's node mounts it too: refused here, before any work
            prepare_output_folder(storage)
        self.storage = storage
        if not 0 < gpus_per_training <= 1 and not (gpus_per_training >= 1 and float(gpus_per_training).is_integer()):
            raise ConfigError(f"gpus per training must be in (0, 1] or a whole number, got {gpus_per_training:g}")
        self.gpus_per_training = gpus_per_training
        try:
            import ray
        except ImportError as exc:
            raise ConfigError("the ray executor needs Ray: pip install 'seqtransfer[ray]'") from exc
        self._ray = ray
        try:
            if not ray.is_initialized():
                ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        except Exception as exc:  # Ray raises several types for an unreachable cluster
            raise ConfigError(
                f"cannot reach the Ray cluster at {address or 'local'} ({type(exc).__name__}: {exc})"
            ) from exc

    def close(self) -> None:
        """Nothing to stop: the cluster outlives the run (``ray.init`` of a local one is ended at exit)."""

    def resources(self, gpu: bool) -> dict[str, float]:
        """The resource request of one task."""
        has_gpus = self._ray.cluster_resources().get("GPU", 0) > 0
        return {"num_cpus": 1, "num_gpus": self.gpus_per_training if gpu and has_gpus else 0}

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        progress: Progress | None = None,
        gpu: bool = False,
        on_message: OnMessage | None = None,
    ) -> list[R]:
        ray = self._ray
        if not items:
            return []
        from ray.util.queue import Queue
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # the queue lives on the driver's node: a worker node that leaves takes only its tasks
        here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
        messages = Queue(actor_options={"num_cpus": 0, "scheduling_strategy": here})

        def deliver() -> None:
            while not messages.empty():
                for message in messages.get_nowait_batch(messages.qsize()):
                    if on_message is not None:
                        on_message(message)

        remote = ray.remote(**self.resources(gpu))(run_in_worker)
        refs = [remote.remote(messages.put, fn, item) for item in items]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(refs)
        pending = list(refs)
        done = 0
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=POLL_SECONDS)
                deliver()  # every message of a finished task first (put() returned before it ended)
                if ready:
                    done += self._collect(ready, index, results)
                    report(progress, "", done, len(refs))
        except BaseException:
            for ref in pending:  # the run stops: the cluster need not finish its other tasks
                with contextlib.suppress(Exception):
                    ray.cancel(ref)
            raise
        finally:
            with contextlib.suppress(Exception):
                deliver()
            with contextlib.suppress(Exception):
                messages.shutdown()
        return results

    def _collect(self, ready: list[Any], index: dict[Any, int], results: list[Any]) -> int:
        """Store the results of the finished tasks; a task's own error is raised as itself."""
        ray = self._ray
        for ref in ready:
            try:
                results[index[ref]] = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                # the task's own error (one line for bad input), not Ray's wrapper with the
                # remote traceback
                cause = getattr(exc, "cause", None)
                if isinstance(cause, SeqTransferError):
                    raise cause from None
                raise
        return len(ready)
