"""The run store: finished runs are skipped, interrupted ones are redone, keys follow the spec."""

import math
from pathlib import Path

import pytest

from seqtransfer.errors import StoreError
from seqtransfer.experiment.store import RunStore, run_key


def test_finished_runs_are_skipped_and_keys_follow_the_spec(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    calls = []

    def work() -> dict:
        calls.append(1)
        return {"dice": 0.5, "nan": math.nan}

    first = store.run("transfer", {"path": ["a", "b"], "draw": 0}, work)
    again = RunStore(tmp_path / "runs.sqlite").run("transfer", {"draw": 0, "path": ["a", "b"]}, work)  # key order irrelevant
    assert first == again == {"dice": 0.5, "nan": None} and len(calls) == 1
    store.run("transfer", {"path": ["a", "b"], "draw": 1}, work)
    assert len(calls) == 2
    assert run_key("transfer", {"a": 1}) != run_key("zoo", {"a": 1})
    (record,) = [r for r in store.records("transfer") if r.spec["draw"] == 1]
    assert record.status == "done" and record.attempts == 1


def test_an_interrupted_run_is_redone(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")

    def dies() -> dict:
        raise KeyboardInterrupt  # as a kill would leave it: marked running, no result

    with pytest.raises(KeyboardInterrupt):
        store.run("zoo", {"task": "x"}, dies)
    (record,) = store.records("zoo")
    assert record.status == "running" and record.result is None
    result = store.run("zoo", {"task": "x"}, lambda: {"ok": True})
    (record,) = store.records("zoo")
    assert result == {"ok": True} and record.status == "done" and record.attempts == 2


def test_a_file_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "runs.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="runs.sqlite"):
        RunStore(bad)
    assert bad.read_bytes() == b"this is not sqlite" * 100  # refused, and left as it was
