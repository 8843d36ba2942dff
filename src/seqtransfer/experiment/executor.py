"""Executors: where the independent runs of an experiment are done.

Every executor has one method, ``map(fn, items, progress)``: ``fn`` is a module-level function
(picklable) called once per item; results come back in item order. Runs write their results
through the run store (SQLite, safe across processes), so whichever executor did a run, a
later invocation finds it done.

* :class:`SequentialExecutor`: in this process, one after the other.
* :class:`ProcessExecutor`: a pool of worker processes (``spawn``: no forked torch state),
  each limited to one torch thread so ``workers`` processes share the cores without contention;
  the default size is the number of cores.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from typing import Any, Protocol, TypeVar

from seqtransfer.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")
Progress = Callable[[int, int], None]


class Executor(Protocol):
    """Runs ``fn`` over ``items``."""

    def map(self, fn: Callable[[T], R], items: Sequence[T], progress: Progress | None = None) -> list[R]: ...


class SequentialExecutor:
    """Everything in the calling process."""

    def map(self, fn: Callable[[T], R], items: Sequence[T], progress: Progress | None = None) -> list[R]:
        out = []
        for i, item in enumerate(items, start=1):
            out.append(fn(item))
            if progress is not None:
                progress(i, len(items))
        return out


def _init_worker() -> None:
    # torch's intra-op threads; setting OMP_NUM_THREADS here would be too late (the libraries
    # are loaded already), so it is not done
    import torch

    torch.set_num_threads(1)


class ProcessExecutor:
    """A pool of ``workers`` single-threaded processes.

    Raises:
        ConfigError: ``workers`` below 1.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")

    def map(self, fn: Callable[[T], R], items: Sequence[T], progress: Progress | None = None) -> list[R]:
        if not items:
            return []
        results: list[Any] = [None] * len(items)
        with ProcessPoolExecutor(max_workers=min(self.workers, len(items)), mp_context=get_context("spawn"), initializer=_init_worker) as pool:
            futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
            for done, future in enumerate(as_completed(futures), start=1):
                results[futures[future]] = future.result()  # a worker's exception is raised here
                if progress is not None:
                    progress(done, len(items))
        return results


def make_executor(name: str = "local", workers: int | None = None, address: str | None = None) -> Executor:
    """An executor by name: ``local`` (a process pool; ``workers=1``: sequential) or ``ray``.

    Raises:
        ConfigError: an unknown name, or Ray requested but not installed.
    """
    if name == "local":
        return SequentialExecutor() if workers == 1 else ProcessExecutor(workers)
    if name == "ray":
        from seqtransfer.experiment.ray_executor import RayExecutor

        return RayExecutor(address=address)
    raise ConfigError(f"unknown executor {name!r}; expected local or ray")
