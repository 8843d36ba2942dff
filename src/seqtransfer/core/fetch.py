"""Files that may be elsewhere until they are needed.

A Ray task with no shared filesystem works in its own copy of the run
(:mod:`seqtransfer.experiment.mirror`), which holds the run's models only once a task asks for
them: every model of a paper-scale run on every node would be tens of GB. The code that reads
a model folder (or a file in one) first calls :func:`need` with it; in such a task that fetches
whatever of it the copy lacks, everywhere else it does nothing. :func:`exists` asks whether a
file is there or could be fetched, without fetching it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

Fetcher = Callable[[Path], object]
Knows = Callable[[Path], bool]

#: what :func:`need` calls in this process (None: every file is where it is)
_FETCHER: Fetcher | None = None
#: whether a file not here could be fetched
_KNOWS: Knows | None = None


def need(path: str | os.PathLike[str]) -> None:
    """Make sure ``path`` (a file, or a folder and everything under it) is here, if it exists anywhere."""
    if _FETCHER is not None:
        _FETCHER(Path(path))


def exists(path: str | os.PathLike[str]) -> bool:
    """Whether a file is here or could be fetched by :func:`need`."""
    return Path(path).exists() or (_KNOWS is not None and _KNOWS(Path(path)))


def install(fetcher: Fetcher | None, knows: Knows | None = None) -> None:
    """Set (or, with None, remove) this process's fetcher and what it can fetch."""
    global _FETCHER, _KNOWS
    _FETCHER, _KNOWS = fetcher, knows
