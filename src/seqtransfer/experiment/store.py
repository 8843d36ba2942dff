"""The experiment store: one SQLite record per run, keyed by a hash of its full specification.

A *run* is one unit of work of the protocol (a zoo training, a transfer, a baseline, a
scoring). Its specification is a JSON-ready dict holding everything that decides its result
(method, target, draw, configuration, seeds); the key is the SHA-256 of its canonical JSON.
:meth:`RunStore.run` returns the stored result of a finished run without doing anything;
otherwise it marks the run ``running``, does it and stores the result in one transaction.
A run that was interrupted (killed) stays ``running`` and is simply done again by the next
invocation; the trainings under it resume from their own checkpoints, so nothing is counted
twice. SQLite's journal makes every write atomic, also against ``kill -9``.

One writer: only the driver (the ``seqtransfer run`` process) opens the SQLite file. A worker
(a pool process, a Ray task) gets a :class:`JournalStore`: the driver's finished records as
they were when its stage began, plus what the worker itself finished; each run it starts and
finishes goes to the driver as a message (:func:`~seqtransfer.core.executor.send`), which the
driver writes with :meth:`RunStore.apply`, one transaction each, as they arrive. SQLite's
locking is unreliable on network filesystems (NFS): with one writer, it is never needed.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqtransfer.core.atomic import file_mode
from seqtransfer.core.errors import StoreError
from seqtransfer.core.executor import in_worker, send

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    started REAL,
    finished REAL,
    seconds REAL
)
"""


def _clean(value: Any) -> Any:
    """JSON-ready copy with non-finite floats as None (strict JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    """The canonical JSON of a specification (sorted keys, no spaces, NaN as null)."""
    return json.dumps(_clean(value), sort_keys=True, separators=(",", ":"))


def run_key(kind: str, spec: Mapping[str, Any]) -> str:
    """The key of a run: SHA-256 of its kind and canonical specification."""
    return hashlib.sha256(f"{kind}\n{canonical_json(spec)}".encode()).hexdigest()


@dataclass(frozen=True)
class RunRecord:
    """One row of the store."""

    key: str
    kind: str
    spec: dict[str, Any]
    status: str
    result: dict[str, Any] | None
    attempts: int
    seconds: float | None


class _Runs:
    """What :class:`RunStore` and a worker's :class:`JournalStore` share: a finished run's
    result is returned as known; any other run is started, done and finished through the
    subclass' :meth:`_started` and :meth:`_finished`."""

    def get(self, key: str) -> RunRecord | None:
        raise NotImplementedError

    def _started(self, kind: str, spec: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def _finished(
        self, key: str, kind: str, spec: Mapping[str, Any], result: dict[str, Any], seconds: float
    ) -> dict[str, Any]:
        raise NotImplementedError

    def done(self, kind: str, spec: Mapping[str, Any]) -> dict[str, Any] | None:
        """The result of a finished run, or None."""
        record = self.get(run_key(kind, spec))
        return record.result if record is not None and record.status == "done" else None

    def run(self, kind: str, spec: Mapping[str, Any], work: Callable[[], Mapping[str, Any]]) -> dict[str, Any]:
        """The run's result: known if it finished before, else computed now and recorded.

        Args:
            kind: what sort of run (``"zoo"``, ``"transfer"``, ...).
            spec: everything that decides the result (JSON-ready).
            work: does the run and returns its result (JSON-ready dict).

        Returns:
            The result (as stored: NaN becomes None).
        """
        key = run_key(kind, spec)
        record = self.get(key)
        if record is not None and record.status == "done" and record.result is not None:
            return record.result
        self._started(kind, spec)
        start = time.time()
        result = _clean(dict(work()))
        return self._finished(key, kind, spec, result, time.time() - start)


class RunStore(_Runs):
    """SQLite store of runs (``RUN_DIR/runs.sqlite``).

    Args:
        path: the database file (created with its folder).

    Raises:
        StoreError: the file cannot be opened or is not a run store.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if in_worker():  # a programming error, never bad input: workers send, the driver writes
            raise RuntimeError(f"{self.path}: a worker opened the run store (only the driver may)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            with self._connect() as db:
                db.execute(SCHEMA)
            if created:  # SQLite creates it 0644 & ~umask; a new file gets 0666 & ~umask
                with suppress(OSError):  # another user's process created it at the same moment
                    self.path.chmod(file_mode())
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable run store ({exc})") from exc
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot create the run store ({exc.strerror or exc})") from exc

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=60.0)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the run store ({exc})") from exc
        try:
            with db:  # one transaction, committed on success (rolled back on an error)
                yield db
        except sqlite3.OperationalError as exc:  # a full disk, a locked or read-only file
            raise StoreError(f"{self.path}: run store not writable ({exc})") from exc
        finally:
            db.close()

    def get(self, key: str) -> RunRecord | None:
        """The record of a key, or None."""
        try:
            with self._connect() as db:
                row = db.execute(
                    "SELECT key, kind, spec, status, result, attempts, seconds FROM runs WHERE key = ?", (key,)
                ).fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: unreadable run store ({exc})") from exc
        return None if row is None else self._record(row)

    @staticmethod
    def _record(row: tuple[Any, ...]) -> RunRecord:
        return RunRecord(
            key=row[0],
            kind=row[1],
            spec=json.loads(row[2]),
            status=row[3],
            result=json.loads(row[4]) if row[4] is not None else None,
            attempts=int(row[5]),
            seconds=row[6],
        )

    def _started(self, kind: str, spec: Mapping[str, Any]) -> None:
        self.mark_running(kind, spec)

    def _finished(
        self, key: str, kind: str, spec: Mapping[str, Any], result: dict[str, Any], seconds: float
    ) -> dict[str, Any]:
        self.finish(key, result, seconds)
        return result

    def mark_running(self, kind: str, spec: Mapping[str, Any]) -> str:
        """Record that a run starts (or starts again); returns its key."""
        key = run_key(kind, spec)
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (key, kind, spec, status, attempts, started) VALUES (?, ?, ?, 'running', 1, ?) "
                "ON CONFLICT(key) DO UPDATE SET "
                "status = 'running', attempts = attempts + 1, started = excluded.started",
                (key, kind, canonical_json(spec), time.time()),
            )
        return key

    def finish(self, key: str, result: Mapping[str, Any], seconds: float) -> None:
        """Store a run's result and mark it done (one transaction)."""
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET status = 'done', result = ?, finished = ?, seconds = ? WHERE key = ?",
                (canonical_json(result), time.time(), seconds, key),
            )

    def write_done(self, kind: str, spec: Mapping[str, Any], result: Mapping[str, Any], seconds: float) -> None:
        """Store a finished run, whether or not it was marked running (one transaction)."""
        key = run_key(kind, spec)
        now = time.time()
        with self._connect() as db:
            db.execute(
                "INSERT INTO runs (key, kind, spec, status, result, attempts, started, finished, seconds) "
                "VALUES (?, ?, ?, 'done', ?, 1, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                "status = 'done', result = excluded.result, finished = excluded.finished, seconds = excluded.seconds",
                (key, kind, canonical_json(spec), canonical_json(result), now - seconds, now, seconds),
            )

    def apply(self, message: Any) -> None:
        """Write what a worker's :class:`JournalStore` sent: a run started or finished.

        Raises:
            StoreError: a message of another kind (a programming error surfaces as such).
        """
        if isinstance(message, tuple) and len(message) == 3 and message[0] == "running":
            self.mark_running(message[1], message[2])
        elif isinstance(message, tuple) and len(message) == 5 and message[0] == "done":
            self.write_done(message[1], message[2], message[3], message[4])
        else:
            raise StoreError(f"{self.path}: not a run store message: {str(message)[:80]}")

    def snapshot(self) -> dict[str, RunRecord]:
        """Every finished record by key (what a worker's :class:`JournalStore` starts from)."""
        return {r.key: r for r in self.records(status="done")}

    def records(self, kind: str | None = None, status: str | None = None) -> list[RunRecord]:
        """All records, optionally of one kind and/or status, in insertion order."""
        query = "SELECT key, kind, spec, status, result, attempts, seconds FROM runs"
        clauses, args = [], []
        if kind is not None:
            clauses.append("kind = ?")
            args.append(kind)
        if status is not None:
            clauses.append("status = ?")
            args.append(status)
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        try:
            with self._connect() as db:
                rows = db.execute(query + " ORDER BY rowid", args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: unreadable run store ({exc})") from exc
        return [self._record(r) for r in rows]


class JournalStore(_Runs):
    """A worker's run store: reads the driver's finished records, sends what it does.

    It answers like :class:`RunStore` (``get``, ``done``, ``run``, ``records``) from the
    snapshot it was given and the runs it finished itself; :meth:`run` sends ``("running",
    kind, spec)`` before the work and ``("done", kind, spec, result, seconds)`` after it, for
    the driver's :meth:`RunStore.apply`. It never opens a file.

    Args:
        snapshot: the driver's finished records (:meth:`RunStore.snapshot`).
        path: the driver's store file, for messages only.
        outbox: where the messages go (default: :func:`~seqtransfer.core.executor.send`).
    """

    def __init__(
        self,
        snapshot: Mapping[str, RunRecord],
        path: str | Path = "runs.sqlite",
        outbox: Callable[[Any], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self._records: dict[str, RunRecord] = dict(snapshot)
        self._send = outbox or send

    def get(self, key: str) -> RunRecord | None:
        """The record of a key, or None."""
        return self._records.get(key)

    def _started(self, kind: str, spec: Mapping[str, Any]) -> None:
        self._send(("running", kind, dict(spec)))

    def _finished(
        self, key: str, kind: str, spec: Mapping[str, Any], result: dict[str, Any], seconds: float
    ) -> dict[str, Any]:
        # as the driver will hold it: its JSON (NaN as None, tuples as lists)
        stored = json.loads(canonical_json(result))
        self._send(("done", kind, dict(spec), stored, seconds))
        self._records[key] = RunRecord(key, kind, json.loads(canonical_json(spec)), "done", stored, 1, seconds)
        return stored

    def records(self, kind: str | None = None, status: str | None = None) -> list[RunRecord]:
        """The known records, optionally of one kind and/or status, the snapshot's first."""
        return [
            r
            for r in self._records.values()
            if (kind is None or r.kind == kind) and (status is None or r.status == status)
        ]


def _protocol_run(spec: Mapping[str, Any]) -> bool:
    """Whether a stored transfer or score belongs to the protocol itself: not the sample-size
    study's (``n_train`` in its spec) and not the whole-network ablation (``freeze_encoder``)."""
    return "n_train" not in spec and "freeze_encoder" not in (spec.get("finetune") or {})


def protocol_direct_transfers(store: RunStore | JournalStore) -> dict[tuple[str, str, int], float]:
    """The protocol's measured direct transfers, ``(source, target, draw) -> final Dice``: one
    fine-tuning step with the experiment's frozen-encoder recipe on the draw's 3 cases (the
    selection-quality ground truth and the calibration's data)."""
    out = {}
    for record in store.records("transfer", "done"):
        r = record.result or {}
        if len(r.get("path", [])) == 2 and r.get("final_dice") is not None and _protocol_run(record.spec):
            out[(r["path"][0], r["path"][1], int(record.spec["draw"]))] = float(r["final_dice"])
    return out


def protocol_scores(store: RunStore | JournalStore) -> list[dict[str, Any]]:
    """The protocol's LogME / LEEP / NCE records (the draw's 3 cases), each with its target and draw."""
    return [
        {**r.result, "target": r.spec["target"], "draw": r.spec["draw"]}
        for r in store.records("scores", "done")
        if r.result and _protocol_run(r.spec)
    ]


def calibrations(store: RunStore | JournalStore) -> dict[str, tuple[float, float]]:
    """Per target, the (alpha, beta) of its leave-one-site-out calibration (the newest stored)."""
    return {
        str(r.spec["target"]): (float(r.result["alpha"]), float(r.result["beta"]))
        for r in store.records("calibration", "done")
        if r.result
    }
