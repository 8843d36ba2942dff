"""The run store: finished runs are skipped, interrupted ones are redone, keys follow the spec."""

import math
from pathlib import Path

import pytest

from seqtransfer.core.errors import StoreError
from seqtransfer.experiment.store import RunStore, run_key


def test_finished_runs_are_skipped_and_keys_follow_the_spec(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    calls = []

    def work() -> dict:
        calls.append(1)
        return {"dice": 0.5, "nan": math.nan}

    first = store.run("transfer", {"path": ["a", "b"], "draw": 0}, work)
    again = RunStore(tmp_path / "runs.sqlite").run(
        "transfer", {"draw": 0, "path": ["a", "b"]}, work
    )  # key order irrelevant
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


def test_the_protocol_transfers_and_scores_leave_out_the_sample_size_study_and_the_unfrozen_ablation(
    tmp_path: Path,
) -> None:
    """The selection-quality truth and the calibration's data are the protocol's direct transfers
    only: a sample-size run (n_train) or a whole-network one (freeze_encoder) of the same pair and
    draw must not replace them, whatever order they were stored in."""
    from seqtransfer.experiment.store import protocol_direct_transfers, protocol_scores

    store = RunStore(tmp_path / "runs.sqlite")
    frozen = {"steps": 20, "lr": 0.01}
    for spec, dice in (
        ({"path": ["a", "t"], "draw": 0, "finetune": frozen, "n_train": 5}, 0.9),
        ({"path": ["a", "t"], "draw": 0, "finetune": frozen}, 0.4),
        ({"path": ["a", "t"], "draw": 0, "finetune": {**frozen, "freeze_encoder": False}}, 0.7),
        ({"path": ["b", "a", "t"], "draw": 0, "finetune": frozen}, 0.8),  # a path, not a direct transfer
        ({"path": ["a", "t"], "draw": 1, "finetune": frozen}, 0.5),
    ):
        store.run("transfer", spec, lambda spec=spec, dice=dice: {"path": spec["path"], "final_dice": dice})
    assert protocol_direct_transfers(store) == {("a", "t", 0): 0.4, ("a", "t", 1): 0.5}
    for spec, value in (
        ({"target": "t", "draw": 0, "source": "a", "n_train": 10}, -0.1),
        ({"target": "t", "draw": 0, "source": "a"}, -0.5),
    ):
        store.run("scores", spec, lambda value=value: {"source": "a", "leep": value})
    assert protocol_scores(store) == [{"source": "a", "leep": -0.5, "target": "t", "draw": 0}]


def _journal_runs(args: tuple) -> dict:
    """A worker's side: runs through a journal of the driver's snapshot (module level: picklable)."""
    from seqtransfer.experiment.store import JournalStore

    snapshot, specs = args
    journal = JournalStore(snapshot)
    out = {}
    for spec in specs:
        out[spec["n"]] = journal.run("score", spec, lambda spec=spec: {"value": spec["n"] * 0.5, "nan": math.nan})
    return {"results": out, "known": len(journal.records("score", "done"))}


@pytest.mark.parametrize("workers", [0])  # a pool: test_a_process_pool_gives_the_same_results_as_one_process
def test_workers_journal_and_the_driver_alone_writes(tmp_path: Path, workers: int) -> None:
    """Runs done in workers reach the SQLite file only through the driver; what was finished
    before the stage is not done again; a worker that opens the file is refused."""
    from seqtransfer.core.executor import ProcessExecutor, SequentialExecutor

    store = RunStore(tmp_path / "runs.sqlite")
    store.run("score", {"n": 0}, lambda: {"value": 0.0, "nan": None})  # finished before the stage
    snapshot = store.snapshot()
    items = [(snapshot, [{"n": 0}, {"n": 1}]), (snapshot, [{"n": 2}, {"n": 3}])]
    executor = SequentialExecutor() if workers == 0 else ProcessExecutor(workers)
    try:
        out = executor.map(_journal_runs, items, on_message=store.apply)
        # a second stage: everything is known, nothing is sent
        again = executor.map(_journal_runs, [(store.snapshot(), [{"n": 3}])], on_message=store.apply)
    finally:
        executor.close()
    assert out[0]["results"] == {0: {"value": 0.0, "nan": None}, 1: {"value": 0.5, "nan": None}}
    assert [o["known"] for o in out] == [2, 3]  # the snapshot's record and its own
    records = {r.spec["n"]: r for r in store.records("score")}
    assert sorted(records) == [0, 1, 2, 3]
    assert all(r.status == "done" and r.attempts == 1 for r in records.values())
    assert records[3].result == {"value": 1.5, "nan": None} and records[3].seconds is not None
    assert again[0]["results"] == {3: {"value": 1.5, "nan": None}}
    assert [r.attempts for r in store.records("score")] == [1, 1, 1, 1]


def test_a_worker_may_not_open_the_store(tmp_path: Path, monkeypatch) -> None:
    """What a pool worker or a Ray task is (``in_worker()``, tested in tests/core) may not open the file."""
    import seqtransfer.core.executor as executor

    monkeypatch.setattr(executor, "_IN_WORKER", True)
    with pytest.raises(RuntimeError, match="a worker opened the run store"):
        RunStore(tmp_path / "runs.sqlite")
    assert not (tmp_path / "runs.sqlite").exists()


def test_a_started_run_the_driver_never_hears_the_end_of_stays_running(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    store.apply(("running", "zoo", {"task": "x"}))
    store.apply(("running", "zoo", {"task": "x"}))  # a retried task
    (record,) = store.records("zoo")
    assert record.status == "running" and record.attempts == 2
    store.apply(("done", "zoo", {"task": "x"}, {"ok": True}, 1.5))
    (record,) = store.records("zoo")
    assert record.status == "done" and record.attempts == 2 and record.result == {"ok": True}
    with pytest.raises(StoreError, match="not a run store message"):
        store.apply(("deleted", "zoo"))
