"""Atomic writes: a result is either absent or complete, never half-written.

Every writer goes through a temporary file in the destination's folder followed by
``os.replace``, which is atomic on POSIX file systems. A failure (disk full, kill) leaves
the previous version of the file untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from seqtransfer.errors import StoreError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    Args:
        path: final destination.
        suffix: suffix of the temporary file, for writers that infer the format from it
            (``.nii.gz``, ``.npy``).

    Raises:
        StoreError: the destination cannot be written (permissions, disk full).
    """
    dest = Path(path)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix or ".tmp", dir=dest.parent)
        os.close(fd)
    except OSError as exc:
        raise StoreError(f"{dest}: cannot write ({exc.strerror or exc})") from exc
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, dest)
    except OSError as exc:
        raise StoreError(f"{dest}: cannot write ({exc.strerror or exc})") from exc
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file for writing that atomically becomes ``path`` on success."""
    with atomic_path(path) as tmp, open(tmp, mode) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write ``text`` to ``path``."""
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
