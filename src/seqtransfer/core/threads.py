"""Thread limits for many small array operations.

Affinity work is thousands of small matrix products (32^3 volumes). Multi-threaded BLAS
and torch intra-op threads only add synchronisation there: on this project's 2-core
machines a 32^3 Gaussian filter took 0.24 ms with one thread and 27 ms with two while the
other core was busy. Such loops run single-threaded and get their parallelism from
processes instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from threadpoolctl import threadpool_limits


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Limit torch and the BLAS libraries to one thread inside the block."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(previous)
