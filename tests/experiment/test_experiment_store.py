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
