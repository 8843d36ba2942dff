"""Executors: where the independent runs of an experiment are done.

Every executor has one method, ``map(fn, items, progress, gpu)``: ``fn`` is a module-level
function (picklable) called once per item; results come back in item order; ``progress``
gets a :class:`~seqtransfer.core.progress.ProgressEvent` with an empty stage name (the caller
names it, :func:`~seqtransfer.core.progress.relabel`) after every item. ``gpu`` says the
items are trainings, which take one GPU each where the executor has GPUs (Ray); affinity
shards and other numpy work ask for one CPU. Runs write their results
through the run store (SQLite, safe across processes), so whichever executor did a run, a
later invocation finds it done.

* :class:`SequentialExecutor`: in this process, one after the other.
* :class:`ProcessExecutor`: a pool of worker processes (``spawn``: no forked torch state),
  each limited to one torch thread so ``workers`` processes share the cores without contention;
  the default size is the number of cores. The pool lives from the first ``map`` to
  ``close``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any, Protocol, TypeVar

from seqtransfer.core.errors import ConfigError
from seqtransfer.core.progress import Progress, report

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs ``fn`` over ``items``; ``close`` releases its workers."""

    def close(self) -> None: ...

    def map(
        self, fn: Callable[[T], R], items: Sequence[T], progress: Progress | None = None, gpu: bool = False
    ) -> list[R]: ...


class SequentialExecutor:
    """Everything in the calling process."""

    def close(self) -> None:
        """Nothing to stop."""

    def __enter__(self) -> SequentialExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def map(
        self, fn: Callable[[T], R], items: Sequence[T], progress: Progress | None = None, gpu: bool = False
    ) -> list[R]:
        out = []
        for i, item in enumerate(items, start=1):
            out.append(fn(item))
            report(progress, "", i, len(items))
        return out


def _init_worker() -> None:
    # torch's intra-op threads; setting OMP_NUM_THREADS here would be too late (the libraries
    # are loaded already), so it is not done
    import torch

    torch.set_num_threads(1)


class ProcessExecutor:
    """A pool of ``workers`` single-threaded processes, started on the first ``map`` and kept
    for the next ones (every stage of a run reuses the same workers: the imports and the
    opened experiment context are paid once per worker, not once per stage). :meth:`close`
    ends it; so does leaving a ``with`` block or the interpreter exiting.

    Raises:
        ConfigError: ``workers`` below 1.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=get_context("spawn"), initializer=_init_worker
            )
        return self._pool

    def map(
        self, fn: Callable[[T], R], items: Sequence[T], progress: Progress | None = None, gpu: bool = False
    ) -> list[R]:
        if not items:
            return []
        results: list[Any] = [None] * len(items)
        pool = self._get_pool()
        futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
        try:
            for done, future in enumerate(as_completed(futures), start=1):
                results[futures[future]] = future.result()  # a worker's exception is raised here
                report(progress, "", done, len(items))
        except BaseException:
            for future in futures:
                future.cancel()
            self.close()
            raise
        return results

    def close(self) -> None:
        """Stop the workers (after the running items finish)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> ProcessExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_executor(name: str = "local", workers: int | None = None, address: str | None = None) -> Executor:
    """An executor by name: ``local`` (a process pool; ``workers=1``: sequential) or ``ray``.

    Raises:
        ConfigError: an unknown name, or Ray requested but not installed.
    """
    if name == "local":
        return SequentialExecutor() if workers == 1 else ProcessExecutor(workers)
    if name == "ray":
        from seqtransfer.core.ray_executor import RayExecutor

        return RayExecutor(address=address)
    raise ConfigError(f"unknown executor {name!r}; expected local or ray")
