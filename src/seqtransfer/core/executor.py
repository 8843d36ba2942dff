"""Executors: where the independent runs of an experiment are done.

Every executor has one method, ``map(fn, items, progress, gpu, on_message)``: ``fn`` is a
module-level function (picklable) called once per item; results come back in item order;
``progress`` gets a :class:`~seqtransfer.core.progress.ProgressEvent` with an empty stage name
(the caller names it, :func:`~seqtransfer.core.progress.relabel`) after every item. ``gpu``
says the items are trainings, which take one GPU each where the executor has GPUs (Ray);
affinity shards and other numpy work ask for one CPU.

One writer: a running ``fn`` hands what the caller must keep (the run store's records) to
:func:`send`, which delivers it to ``on_message`` in the calling process (the *driver*), in
the order sent and as it is sent: directly in this process, through a pipe from a pool
worker, through a Ray queue from a Ray task. Every message of an item reaches ``on_message``
before that item counts as done. Workers never open the run store themselves
(:func:`in_worker` tells the store where it is).

* :class:`SequentialExecutor`: in this process, one after the other.
* :class:`ProcessExecutor`: a pool of worker processes (``spawn``: no forked torch state),
  each limited to one torch thread so ``workers`` processes share the cores without contention;
  the default size is the number of cores. The pool lives from the first ``map`` to
  ``close``.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any, Protocol, TypeVar

from seqtransfer.core.errors import ConfigError, WorkerLost
from seqtransfer.core.progress import Progress, report

T = TypeVar("T")
R = TypeVar("R")
OnMessage = Callable[[Any], None]

#: where :func:`send` delivers in this process (None: outside any map)
_CHANNEL: OnMessage | None = None
#: whether this process is a worker of a pool or a Ray task (not the driver)
_IN_WORKER = False
#: how often the driver looks for messages while it waits for results (seconds)
POLL_SECONDS = 0.1


def send(message: Any) -> None:
    """Hand ``message`` to the ``on_message`` of the :meth:`map` that runs this function.

    Raises:
        RuntimeError: called outside a mapped function (a programming error).
    """
    if _CHANNEL is None:
        raise RuntimeError("send() is only for functions run by an executor's map")
    _CHANNEL(message)


def in_worker() -> bool:
    """Whether this process is a pool worker or a Ray task's worker, not the driver."""
    return _IN_WORKER


def _drop(message: Any) -> None:  # noqa: ARG001 - a map without on_message keeps nothing
    """A message nobody asked for."""


@contextlib.contextmanager
def _channel(deliver: OnMessage) -> Iterator[None]:
    """:func:`send` delivers to ``deliver`` inside the block."""
    global _CHANNEL
    previous, _CHANNEL = _CHANNEL, deliver
    try:
        yield
    finally:
        _CHANNEL = previous


def run_in_worker(deliver: OnMessage, fn: Callable[[T], R], item: T) -> R:
    """``fn(item)`` in a worker process, its messages going to ``deliver`` (Ray tasks)."""
    global _IN_WORKER
    _IN_WORKER = True
    with _channel(deliver):
        return fn(item)


class Executor(Protocol):
    """Runs ``fn`` over ``items``; ``close`` releases its workers."""

    def close(self) -> None: ...

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        progress: Progress | None = None,
        gpu: bool = False,
        on_message: OnMessage | None = None,
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
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        progress: Progress | None = None,
        gpu: bool = False,
        on_message: OnMessage | None = None,
    ) -> list[R]:
        out = []
        with _channel(on_message or _drop):
            for i, item in enumerate(items, start=1):
                out.append(fn(item))
                report(progress, "", i, len(items))
        return out


def _exit_with_parent(parent: int, every: float = 1.0) -> None:
    """End this process once ``parent`` is gone (a worker must not outlive a killed driver).

    A pool worker waits for work on a queue whose write end it also holds, so the death of
    the driver (``kill -9``) never wakes it: without this, it would sleep on, holding its
    memory, or finish its unit and write into a run a new invocation is resuming.
    """
    while True:
        time.sleep(every)
        if os.getppid() != parent:
            os._exit(1)


def _init_worker(messages: Any) -> None:
    """A pool worker: one torch thread, :func:`send` writing into the pool's message pipe, and
    an end of its own when the driver dies."""
    global _CHANNEL, _IN_WORKER
    _IN_WORKER = True
    _CHANNEL = messages.put
    watch = threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="seqtransfer-parent", daemon=True)
    watch.start()
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
        self._messages: Any = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            context = get_context("spawn")
            # a SimpleQueue writes into its pipe before put() returns (no feeder thread): a
            # message sent before fn returned is readable before its result arrives
            self._messages = context.SimpleQueue()
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=context,
                initializer=_init_worker,
                initargs=(self._messages,),
            )
        return self._pool

    def _deliver(self, on_message: OnMessage, messages: Any = None) -> None:
        queue = messages if messages is not None else self._messages
        while not queue.empty():
            on_message(queue.get())

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        progress: Progress | None = None,
        gpu: bool = False,
        on_message: OnMessage | None = None,
    ) -> list[R]:
        if not items:
            return []
        results: list[Any] = [None] * len(items)
        pool = self._get_pool()
        deliver = on_message or _drop
        futures: dict[Future[R], int] = {pool.submit(fn, item): i for i, item in enumerate(items)}
        pending = set(futures)
        done = 0
        try:
            while pending:
                finished, pending = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                self._deliver(deliver)  # every message of a finished item first
                for future in finished:
                    results[futures[future]] = future.result()  # a worker's exception is raised here
                    done += 1
                    report(progress, "", done, len(items))
        except BaseException as exc:
            for future in futures:
                future.cancel()
            if isinstance(exc, BrokenProcessPool):  # every worker is gone; one may have left half a message
                self.close()
            else:  # the running items finish: what they send is kept, and their pipe never fills up
                self._close_delivering(deliver)
            if isinstance(exc, BrokenProcessPool):
                raise WorkerLost(
                    "a worker process died (killed or out of memory); finished work is kept: run the same "
                    "command again to resume"
                ) from exc
            raise
        return results

    def _close_delivering(self, deliver: OnMessage) -> None:
        """:meth:`close`, reading the workers' messages meanwhile (a worker whose pipe is full
        would wait for a reader, and the pool for that worker)."""
        stop = threading.Event()
        messages = self._messages

        def drain() -> None:
            while True:
                with contextlib.suppress(Exception):  # the caller has an error to raise already
                    self._deliver(deliver, messages)
                if stop.wait(POLL_SECONDS):
                    break

        reader = threading.Thread(target=drain, name="seqtransfer-messages", daemon=True)
        reader.start()
        try:
            self.close()
        finally:
            stop.set()
            reader.join()
        with contextlib.suppress(Exception):  # what the last items sent before they ended
            self._deliver(deliver, messages)

    def close(self) -> None:
        """Stop the workers (after the running items finish)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            self._messages = None

    def __enter__(self) -> ProcessExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_executor(
    name: str = "local",
    workers: int | None = None,
    address: str | None = None,
    gpus_per_training: float = 1.0,
    storage: str | None = None,
) -> Executor:
    """An executor by name: ``local`` (a process pool; ``workers=1``: sequential) or ``ray``
    (``gpus_per_training``: the GPUs a training asks Ray for, fractions shared; ``storage``: a
    folder every node mounts for the tasks' copy of the run, default each node's own).

    Raises:
        ConfigError: an unknown name, Ray requested but not installed, or ``storage`` without Ray.
    """
    if storage is not None and name != "ray":
        raise ConfigError(f"--storage {storage}: only for --executor ray (local workers share this machine's files)")
    if name == "local":
        return SequentialExecutor() if workers == 1 else ProcessExecutor(workers)
    if name == "ray":
        from seqtransfer.core.ray_executor import RayExecutor

        return RayExecutor(address=address, gpus_per_training=gpus_per_training, storage=storage)
    raise ConfigError(f"unknown executor {name!r}; expected local or ray")
