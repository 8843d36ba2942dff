"""Atomic writes: a result is either absent or complete, never half-written.

Every writer goes through a temporary file in the destination's folder followed by
``os.replace``, which is atomic on POSIX file systems. A failure (disk full, kill) leaves
the previous version of the file untouched.

**File modes.** ``tempfile`` creates its files 0600 and its folders 0700, whatever the
user's umask. A file published here gets the mode an ordinary new file would get, 0666
without the bits of the umask (0644 under umask 0022, 0600 under 0077), and a folder made
through a temporary name (:func:`publish_dir_mode`) 0777 without them.

The umask is process-global and ``os.umask`` can only be read by setting it, which would
change the mode of files other threads create at that moment. :func:`current_umask` therefore
reads it from ``/proc/self/status`` (Linux), which changes nothing; only where that is
unavailable does it set and restore it, under a lock, setting the most private mask 0077
for that instant so that a concurrent file is never created more open than the user wants.
It is read at every publication, so a umask changed while the process runs is honoured.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from seqtransfer.core.errors import ConfigError, SeqTransferError, StoreError

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (see the module)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode of a new file under the current umask (``0o666 & ~umask``)."""
    return 0o666 & ~current_umask()


def dir_mode() -> int:
    """The mode of a new folder under the current umask (``0o777 & ~umask``)."""
    return 0o777 & ~current_umask()


def publish_dir_mode(path: str | os.PathLike[str]) -> None:
    """Give a folder made by ``tempfile.mkdtemp`` (0700) the mode of an ordinary new folder."""
    os.chmod(path, dir_mode())


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
        os.chmod(tmp, file_mode())  # mkstemp made it 0600; the writer may also have recreated it
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


def prepare_output_folder(folder: str | os.PathLike[str]) -> bool:
    """Create ``folder`` if needed and check that a file can be written there, before any work.

    Returns:
        True when the folder was created here (see :func:`removed_on_failure`).

    Raises:
        ConfigError: the folder cannot be created or written.
    """
    path = Path(folder)
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".probe.", dir=path)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        if created:
            shutil.rmtree(path, ignore_errors=True)
        raise ConfigError(f"{path}: cannot write ({exc.strerror or exc})") from exc
    return created


@contextlib.contextmanager
def removed_on_failure(folder: str | os.PathLike[str], created: bool, only_if_empty: bool = False) -> Iterator[None]:
    """Remove ``folder`` when the block fails (a user error or a file-system error such as a
    full disk) and this run ``created`` it, so a failed command leaves no half-built folder.

    Args:
        folder: the output folder.
        created: whether this run created it (an existing folder is never removed).
        only_if_empty: remove it only when nothing was written into it.
    """
    path = Path(folder)
    try:
        yield
    except (SeqTransferError, OSError):
        if created and path.is_dir() and not (only_if_empty and any(path.iterdir())):
            shutil.rmtree(path, ignore_errors=True)
        raise
