"""Artefacts that travel: a Ray worker's own copy of the run, with no shared filesystem.

The workers of ``seqtransfer run --executor ray`` never open the run folder, nor the datasets
the driver reads: they are not handed a path to either. Each place the driver reads or writes
is a *root* with a token (``@run`` for the run folder, ``@data0``, ``@data1``... for datasets
outside it, ``@groups`` and ``@modalities`` for those files); a path a worker sees or sends is
spelled with the token (``@run/models/zoo/...``), and each side puts its own folder in its place
(:func:`tokens` and :func:`untokens`, which also rewrite the paths inside records).

At the start of every stage the driver lists the roots (:func:`manifest`: each file's size and
SHA-256, each link's target), and starts a :class:`FolderServer` on its own node (a Ray actor
holding no CPU), which alone reads the roots for the workers and writes their new files into
the run folder. A worker keeps, under its scratch folder (``--storage DIR``, else the node's
temporary folder; one per Ray node either way)::

    SCRATCH/objects/AB/SHA256       each file it was given, once per node (or per DIR), by content
    SCRATCH/runs/RUN/NODE-PID/TOKEN/...  its process's copy of the roots: hard links to the objects

:meth:`Mirror.sync` fetches only the objects its node lacks (another process of the node, or an
earlier stage, fetched the rest), so what one node computed (preprocessed cases, zoo models,
shared fine-tuning steps) is shipped, never computed again. :meth:`Mirror.ship` sends back
every file of the run the process wrote since, before the store record that names it: a
record the driver writes always has its files in the run folder already.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from seqtransfer.core.atomic import atomic_open
from seqtransfer.core.errors import StoreError
from seqtransfer.core.fetch import install
from seqtransfer.data.preprocess import file_digest

RUN = "@run"
#: what of the run folder only the driver writes: the store, the report, the configuration
#: and the demo's adapt run (never sent to workers, never taken from them)
DRIVER_ONLY = ("runs.sqlite", "report", "adapt", "config.resolved.json")
#: what workers write but never read: the saved predictions (taken from them, not sent)
NOT_SENT = (*DRIVER_ONLY, "predictions")
#: what a worker's copy fetches only when asked (:func:`~seqtransfer.core.fetch.need`): every
#: model of a paper-scale run on every node would be tens of GB
LAZY = f"{RUN}/models/"
#: the environment variable naming the scratch folder of a node's workers
SCRATCH_ENV = "SEQTRANSFER_SCRATCH"


@dataclass(frozen=True)
class Entry:
    """One file of a manifest (``sha``, ``size``) or one link (``link``: its target's key)."""

    sha: str = ""
    size: int = 0
    link: str = ""


def _digest(data: bytes) -> str:
    """SHA-256 of bytes, as :func:`~seqtransfer.data.preprocess.file_digest` gives a file's."""
    return hashlib.sha256(data).hexdigest()


def _hidden(name: str) -> bool:
    """A temporary file of an atomic write, or a folder being built."""
    return name.startswith(".") or name.endswith(".partial")


def _rebase(obj: Any, pairs: list[tuple[str, str]]) -> Any:
    if isinstance(obj, str):
        for old, new in pairs:
            if obj == old or obj.startswith(old + "/"):
                return new + obj[len(old) :]
        return obj
    if isinstance(obj, dict):
        return {k: _rebase(v, pairs) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rebase(v, pairs) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_rebase(v, pairs) for v in obj)
    return obj


def tokens(obj: Any, roots: Mapping[str, str | Path], aliases: Mapping[str, Sequence[str]] | None = None) -> Any:
    """``obj`` (strings, dicts, lists, tuples) with every path inside a root spelled by its
    token; ``aliases``: other spellings of a root (relative, unresolved) replaced as well."""
    pairs = [(str(path), token) for token, path in roots.items()]
    pairs += [(str(alias), token) for token, spelled in (aliases or {}).items() for alias in spelled]
    return _rebase(obj, sorted(pairs, key=lambda p: -len(p[0])))


def untokens(obj: Any, roots: Mapping[str, str | Path]) -> Any:
    """``obj`` with every token put back as its root's path (the inverse of :func:`tokens`)."""
    return _rebase(obj, [(token, str(path)) for token, path in roots.items()])


def _is_inside(path: str, roots: Mapping[str, str | Path]) -> bool:
    return tokens(path, roots) != path


def _tree(folder: Path, key: str, skip: tuple[str, ...]) -> Iterator[tuple[str, Path]]:
    """Every file and link below ``folder`` by key, in name order, not following links;
    temporary names are left out, and at the top of the run folder the names in ``skip``."""
    with os.scandir(folder) as it:
        children = sorted(it, key=lambda e: e.name)
    for child in children:
        if _hidden(child.name) or (key == RUN and child.name.startswith(skip)):
            continue
        path, sub = Path(child.path), f"{key}/{child.name}"
        if child.is_dir(follow_symlinks=False):
            yield from _tree(path, sub, skip)
        elif child.is_symlink() or child.is_file(follow_symlinks=False):
            yield sub, path


def _link_target(path: Path) -> str:
    """Where a link leads, as an absolute normalised path."""
    return os.path.normpath(os.path.join(path.parent, os.readlink(path)))


def manifest(roots: Mapping[str, str | Path]) -> dict[str, Entry]:
    """Every file and link under the roots, by key (``TOKEN/relative/path``).

    A link to a place inside a root is kept as a link; one that leads outside is followed
    (its files are listed under the link). The store, the report, the predictions and
    temporary files are left out (:data:`NOT_SENT`).
    """
    out: dict[str, Entry] = {}

    def visit(path: Path, key: str) -> None:
        if path.is_symlink() and _is_inside(_link_target(path), roots):
            out[key] = Entry(link=tokens(_link_target(path), roots))
        elif path.is_dir():
            for sub, child in _tree(path, key, NOT_SENT):
                visit(child, sub)
        elif path.is_file():
            out[key] = Entry(sha=file_digest(path), size=path.stat().st_size)

    for token, root in roots.items():
        visit(Path(root), token)
    return out


def _resolve(key: str, roots: Mapping[str, str | Path]) -> Path:
    """The path of a key under its root; a key that leaves its root is refused."""
    token, _, rest = key.partition("/")
    if token not in roots or (rest and any(part in ("", ".", "..") for part in rest.split("/"))):
        raise StoreError(f"{key}: not a path of this run")
    return Path(roots[token], rest) if rest else Path(roots[token])


class FolderServer:
    """The driver's side (a Ray actor on the driver's node): reads the roots, writes new files
    of the run folder. Nothing outside the roots is read, and only the run folder is written
    (never its store, report or predictions)."""

    def __init__(self, roots: Mapping[str, str]) -> None:
        self.roots = dict(roots)

    def read(self, key: str, sha: str) -> bytes:
        """A file's bytes, which must still be the ones the manifest listed.

        Raises:
            StoreError: an unknown key, or a file changed since.
        """
        path = _resolve(key, self.roots)
        data = path.read_bytes()
        if _digest(data) != sha:
            raise StoreError(f"{path}: changed while the stage ran")
        return data

    def _writable(self, key: str) -> Path:
        token, _, rest = key.partition("/")
        if token != RUN or not rest or rest.split("/")[0].startswith(DRIVER_ONLY):
            raise StoreError(f"{key}: workers write only the run folder's models, graphs and caches")
        return _resolve(key, self.roots)

    def write(self, key: str, data: bytes, sha: str, spelled: bool = False) -> None:
        """Write a worker's file into the run folder (atomically; the same bytes already there
        are left as they are). ``spelled``: a JSON file whose paths the worker wrote as tokens,
        written with this side's (:func:`json_paths`).

        Raises:
            StoreError: a key outside the run folder, or bytes that are not ``sha``'s.
        """
        path = self._writable(key)
        if _digest(data) != sha:
            raise StoreError(f"{path}: damaged in transit")
        if spelled:
            data = json_paths(data, [(t, str(p)) for t, p in self.roots.items()])
            sha = _digest(data)
        if path.is_file() and not path.is_symlink() and file_digest(path) == sha:
            return
        with atomic_open(path, "wb") as handle:
            handle.write(data)

    def link(self, key: str, target: str) -> None:
        """Make a worker's link in the run folder (to another path of the run)."""
        path = self._writable(key)
        _place_link(path, _resolve(target, self.roots))


def json_paths(data: bytes, pairs: Sequence[tuple[str, str]]) -> bytes:
    """A JSON file's text with each ``old`` path (or token) that starts a string or a path
    component replaced by ``new`` (``metrics.json`` of a transfer names its models' folders;
    the driver's copy must name the driver's). Bytes that are not UTF-8 are returned as given."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    for old, new in sorted(pairs, key=lambda p: -len(p[0])):
        escaped_old, escaped_new = json.dumps(old)[1:-1], json.dumps(new)[1:-1]
        text = re.sub(r'(?<=")' + re.escape(escaped_old) + r'(?=["/])', escaped_new.replace("\\", r"\\"), text)
    return text.encode("utf-8")


def _place_link(path: Path, target: Path) -> None:
    """``path`` becomes a link to ``target`` (atomically; a folder in its place is removed)."""
    if path.is_symlink() and Path(os.readlink(path)) == target:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    tmp = _temporary(path, "link")
    os.symlink(target, tmp, target_is_directory=target.is_dir())
    os.replace(tmp, path)


def _sweep(runs: Path, node: str) -> None:
    """Remove the copies of this node's processes that are gone (their objects stay)."""
    if not runs.is_dir():
        return
    for copy in runs.iterdir():
        owner, _, pid = copy.name.rpartition("-")
        if owner != node or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(copy, ignore_errors=True)
        except PermissionError:  # another user's live process
            pass


def _temporary(path: Path, what: str) -> Path:
    """A unique hidden name beside ``path`` (threads of the server, processes of the nodes)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.{what}")


def _call(server: Any, method: str, *args: Any) -> Any:
    """A method of the server: a Ray actor's (waited for), or a plain object's (tests)."""
    bound = getattr(server, method)
    if hasattr(bound, "remote"):
        import ray

        return ray.get(bound.remote(*args))
    return bound(*args)


def start_server(roots: Mapping[str, str | Path]) -> Any:
    """A :class:`FolderServer` actor on this (the driver's) node."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    actor = ray.remote(FolderServer).options(num_cpus=0, max_concurrency=4, scheduling_strategy=here)
    return actor.remote({t: str(p) for t, p in roots.items()})


def scratch_base(storage: str | None) -> Path:
    """A worker's scratch folder: ``storage`` (a folder every node mounts: shared by all),
    else ``$SEQTRANSFER_SCRATCH`` or the temporary folder, one subfolder per Ray node."""
    if storage:
        return Path(storage)
    base = os.environ.get(SCRATCH_ENV) or os.path.join(tempfile.gettempdir(), "seqtransfer-scratch")
    return Path(base, _node())


def _node() -> str:
    """This Ray node's id, shortened."""
    import ray

    return str(ray.get_runtime_context().get_node_id())[:16]


@dataclass(frozen=True)
class Link:
    """What a stage's workers get instead of paths: the roots' tokens and folder names, the
    manifest, the server, and where scratch goes (``storage``: a folder every node mounts)."""

    run: str
    names: dict[str, str]
    entries: dict[str, Entry]
    server: Any
    storage: str | None = None


_MIRRORS: dict[str, Mirror] = {}


class Mirror:
    """A worker process's copy of the roots (see the module).

    Args:
        base: the scratch folder.
        link: the stage's :class:`Link`.
        node: this process's node (its copy is ``runs/RUN/NODE-PID``).
    """

    def __init__(self, base: Path, link: Link, node: str = "local") -> None:
        self.objects = base / "objects"
        self.root = base / "runs" / link.run / f"{node}-{os.getpid()}"
        _sweep(self.root.parent, node)
        shutil.rmtree(self.root, ignore_errors=True)  # an earlier process of this id's leftovers
        self.roots = {token: self.root / token[1:] / name for token, name in link.names.items()}
        self.server = link.server
        # key -> (inode, size, mtime_ns, sha or link target) of the driver's copy
        self._known: dict[str, tuple[int, int, int, str]] = {}
        # the driver's files not placed yet (:data:`LAZY`), by key
        self._pending: dict[str, Entry] = {}

    @classmethod
    def of(cls, link: Link) -> Mirror:
        """This process's mirror of a run (kept from stage to stage), synced to ``link``."""
        base = scratch_base(link.storage)
        try:
            mirror = _MIRRORS.get(link.run)
            if mirror is None:
                mirror = _MIRRORS[link.run] = cls(base, link, _node())
            mirror.server = link.server  # a resumed run has a new server for the same folder
            mirror.sync(link.entries)
        except OSError as exc:  # one line for the user, not a worker's traceback
            raise StoreError(f"{base}: the scratch folder of a Ray node is not usable ({exc.strerror or exc})") from exc
        install(mirror.fetch, mirror.has)
        return mirror

    @classmethod
    def current(cls, link: Link) -> Mirror:
        """This process's mirror of a run, as it is (:meth:`of` made it this stage)."""
        return _MIRRORS[link.run]

    def path(self, token: str) -> Path:
        """The local folder of a root."""
        return self.roots[token]

    def inward(self, obj: Any) -> Any:
        """The driver's tokens made this mirror's paths."""
        return untokens(obj, self.roots)

    def outward(self, obj: Any) -> Any:
        """This mirror's paths made tokens (for the driver)."""
        return tokens(obj, self.roots)

    def _stat(self, path: Path) -> tuple[int, int, int]:
        st = path.lstat()
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _object(self, key: str, sha: str, size: int) -> Path:
        obj = self.objects / sha[:2] / sha
        if obj.is_file() and obj.stat().st_size == size:
            return obj
        obj.parent.mkdir(parents=True, exist_ok=True)
        with open(obj.parent / f".{sha}.lock", "a") as lock:  # one fetch per node
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (obj.is_file() and obj.stat().st_size == size):
                data = _call(self.server, "read", key, sha)
                if _digest(data) != sha:
                    raise StoreError(f"{key}: damaged in transit")
                tmp = _temporary(obj, "tmp")
                tmp.write_bytes(data)
                tmp.chmod(0o444)
                os.replace(tmp, obj)
        return obj

    def sync(self, entries: Mapping[str, Entry]) -> int:
        """Make the local copy hold every entry; returns how many files it had to place.

        The run's models (:data:`LAZY`) are placed only when :meth:`fetch` asks for them.
        Afterwards, what the driver holds is exactly ``entries``: a local file of the run not
        among them is sent at the next :meth:`ship`.
        """
        # (what this process shipped of the predictions: the driver keeps them, never sends them)
        self._known = {k: v for k, v in self._known.items() if k in entries or k.startswith(f"{RUN}/predictions/")}
        self._pending = {}
        placed = 0
        for key, entry in sorted(entries.items(), key=lambda kv: bool(kv[1].link)):
            path = _resolve(key, self.roots)
            if entry.link:
                _place_link(path, _resolve(entry.link, self.roots))
                self._known[key] = (*self._stat(path), entry.link)
                continue
            known = self._known.get(key)
            if known is not None and known[3] == entry.sha and path.exists() and self._stat(path) == known[:3]:
                continue
            if key.startswith(LAZY):
                self._pending[key] = entry
                continue
            self._place(key, entry)
            placed += 1
        return placed

    def fetch(self, path: Path) -> int:
        """Place what the driver has at ``path`` (a file, or a folder and all under it) and this
        copy lacks (:func:`~seqtransfer.core.fetch.need`); returns how many files."""
        key = self.outward(os.path.normpath(path))
        hits = [k for k in self._pending if k == key or k.startswith(key + "/")]
        for k in hits:
            self._place(k, self._pending.pop(k))
        return len(hits)

    def has(self, path: Path) -> bool:
        """Whether the driver has a file at ``path`` that this copy has not fetched yet."""
        return self.outward(os.path.normpath(path)) in self._pending

    def _place(self, key: str, entry: Entry) -> None:
        """A file of the driver's, here (a hard link to the node's object)."""
        path = _resolve(key, self.roots)
        obj = self._object(key, entry.sha, entry.size)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        tmp = _temporary(path, "mirror")
        try:
            os.link(obj, tmp)
        except OSError as exc:  # another filesystem, or no hard links: a copy
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
            shutil.copyfile(obj, tmp)
        os.replace(tmp, path)
        self._known[key] = (*self._stat(path), entry.sha)

    def ship(self) -> int:
        """Send the driver every file and link of the run this process wrote since it last
        shipped or synced; returns how many."""
        sent = 0
        root = self.roots[RUN]
        for key, path in _tree(root, RUN, DRIVER_ONLY) if root.is_dir() else ():
            stat = self._stat(path)
            known = self._known.get(key)
            if known is not None and known[:3] == stat:
                continue
            if path.is_symlink():
                target = self.outward(_link_target(path))
                if known is None or known[3] != target:
                    _call(self.server, "link", key, target)
                    sent += 1
                self._known[key] = (*stat, target)
                continue
            sha = file_digest(path)
            pending = self._pending.pop(key, None)
            if pending is not None and pending.sha == sha:  # made here as the driver has it
                known = (*stat, sha)
            if known is None or known[3] != sha:
                data = path.read_bytes()
                spelled = data
                if path.suffix == ".json":  # its paths in tokens: the driver writes its own
                    spelled = json_paths(data, [(str(p), t) for t, p in self.roots.items()])
                _call(self.server, "write", key, spelled, _digest(spelled), spelled != data)
                sent += 1
            self._known[key] = (*stat, sha)
        return sent


def data_token(i: int) -> str:
    """The token of the ``i``-th dataset of a configuration."""
    return f"@data{i}"


def driver_roots(run_dir: Path, datasets: list[str], files: Mapping[str, str | None]) -> dict[str, Path]:
    """The roots of a run: the run folder, each dataset outside it, and the named files."""
    run_dir = run_dir.resolve()
    roots: dict[str, Path] = {RUN: run_dir}
    for i, d in enumerate(datasets):
        path = Path(d).resolve()
        if not path.is_relative_to(run_dir):
            roots[data_token(i)] = path
    for token, file in files.items():
        if file:
            path = Path(file).resolve()
            if not path.is_relative_to(run_dir):
                roots[token] = path
    return roots


def stage_link(roots: Mapping[str, Path], server: Any, storage: str | None) -> Link:
    """A stage's :class:`Link`: the roots' manifest as of now."""
    run = hashlib.sha256("\n".join(f"{t}={p}" for t, p in sorted(roots.items())).encode()).hexdigest()[:16]
    return Link(
        run=run,
        names={token: Path(path).name for token, path in roots.items()},
        entries=manifest(roots),
        server=server,
        storage=storage,
    )


def respelled_records(records: Mapping[str, Any], spell: Callable[[Any], Any]) -> dict[str, Any]:
    """A store snapshot (:class:`~seqtransfer.experiment.store.RunRecord` s) with the paths of
    its specs and results respelled by ``spell`` (the driver's :func:`tokens`, a worker's
    :meth:`Mirror.inward`)."""
    return {key: replace(r, spec=spell(r.spec), result=spell(r.result)) for key, r in records.items()}
