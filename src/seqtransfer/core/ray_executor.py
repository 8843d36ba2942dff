"""The Ray executor: independent runs as Ray tasks on an existing cluster (or a local one).

Each call of ``fn`` becomes a Ray task asking for one CPU, and for trainings (``gpu=True``)
one GPU too where the cluster has GPUs; affinity shards never ask for a GPU; results are
written by the task through the run store, which must be on a filesystem every node sees
(the run folder).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from seqtransfer.core.errors import ConfigError, SeqTransferError
from seqtransfer.core.progress import Progress, report

T = TypeVar("T")
R = TypeVar("R")


class RayExecutor:
    """Ray tasks; ``address=None`` starts or joins the local cluster (``ray.init()``).

    Raises:
        ConfigError: Ray is not installed, or the cluster cannot be reached.
    """

    def __init__(self, address: str | None = None) -> None:
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

    def resources(self, gpu: bool) -> dict[str, int]:
        """The resource request of one task."""
        has_gpus = self._ray.cluster_resources().get("GPU", 0) > 0
        return {"num_cpus": 1, "num_gpus": 1 if gpu and has_gpus else 0}

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        progress: Progress | None = None,
        gpu: bool = False,
    ) -> list[R]:
        ray = self._ray
        if not items:
            return []
        remote = ray.remote(**self.resources(gpu))(fn)
        refs = [remote.remote(item) for item in items]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(refs)
        pending = list(refs)
        done = 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                try:
                    results[index[ref]] = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    # the task's own error (one line for bad input), not Ray's wrapper with
                    # the remote traceback
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, SeqTransferError):
                        raise cause from None
                    raise
                done += 1
                report(progress, "", done, len(refs))
        return results
