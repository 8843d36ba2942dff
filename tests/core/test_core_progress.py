"""The one progress protocol: events, renaming, and the executors' reports."""

import math
from dataclasses import FrozenInstanceError

import pytest

from seqtransfer.core.executor import ProcessExecutor, SequentialExecutor
from seqtransfer.core.progress import ProgressEvent, prefixed, relabel, report


def test_report_sends_one_event_and_nothing_without_a_callback() -> None:
    events: list[ProgressEvent] = []
    report(events.append, "zoo", 2, 5)
    report(events.append, "training A", 3, 10, loss=0.25)
    report(None, "zoo", 1, 1)  # no callback: nothing happens, nothing fails
    assert events == [ProgressEvent("zoo", 2, 5), ProgressEvent("training A", 3, 10, 0.25)]
    assert events[0].loss is None


def test_relabel_and_prefixed_rename_the_stage_and_keep_the_rest() -> None:
    events: list[ProgressEvent] = []
    named = relabel(events.append, "zoo")
    nested = prefixed(prefixed(events.append, "graph draw 1: "), "benchmark ")
    assert named is not None and nested is not None
    named(ProgressEvent("", 1, 4, loss=0.5))
    nested(ProgressEvent("affinity", 2, 8))
    assert events == [ProgressEvent("zoo", 1, 4, 0.5), ProgressEvent("graph draw 1: benchmark affinity", 2, 8)]
    assert relabel(None, "zoo") is None and prefixed(None, "x ") is None


def test_events_are_frozen() -> None:
    event = ProgressEvent("zoo", 1, 2)
    with pytest.raises(FrozenInstanceError):
        event.__setattr__("done", 2)


@pytest.mark.parametrize(
    "make", [SequentialExecutor, lambda: ProcessExecutor(workers=1)], ids=["sequential", "process"]
)
def test_executors_report_done_and_total_after_every_item(make) -> None:
    events: list[ProgressEvent] = []
    executor = make()
    try:
        results = executor.map(math.sqrt, [4.0, 9.0, 16.0], relabel(events.append, "roots"))
    finally:
        executor.close()
    assert results == [2.0, 3.0, 4.0]
    assert events == [ProgressEvent("roots", done, 3) for done in (1, 2, 3)]
