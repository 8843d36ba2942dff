"""The executors' message channel: what a mapped function sends reaches the driver, in order,
before its item counts as done; outside a map, sending is an error."""

import pytest

from seqtransfer.core.executor import ProcessExecutor, SequentialExecutor, in_worker, send
from seqtransfer.core.progress import ProgressEvent


@pytest.mark.parametrize(
    "make", [SequentialExecutor, lambda: ProcessExecutor(workers=1)], ids=["sequential", "process"]
)
def test_every_message_reaches_the_driver_before_its_item_is_done(make) -> None:
    log: list[object] = []
    executor = make()
    try:
        # send returns None: each item sends itself, and its result is None
        results = executor.map(send, ["a", ("b", 1), {"c": [2.5]}], log.append, on_message=log.append)
    finally:
        executor.close()
    assert results == [None, None, None]
    messages = [m for m in log if not isinstance(m, ProgressEvent)]
    assert messages == ["a", ("b", 1), {"c": [2.5]}]  # in the order sent
    # one worker does the items in order: item k's message comes before the k-th item is done
    # (a later item's may come before it too: the driver reads every waiting message first)
    for k, message in enumerate(messages, start=1):
        assert log.index(message) < log.index(ProgressEvent("", k, 3))


def test_messages_without_a_receiver_are_dropped_and_sending_outside_a_map_fails() -> None:
    with ProcessExecutor(workers=1) as pool:
        assert pool.map(send, list(range(20))) == [None] * 20
        got: list[object] = []
        assert pool.map(send, list(range(20)), on_message=got.append) == [None] * 20
        assert pool.map(_in_worker, [0]) == [True]  # a pool worker knows it is one
    assert got == list(range(20))  # the earlier map's messages were not kept for this one
    assert SequentialExecutor().map(_in_worker, [0]) == [False]
    with pytest.raises(RuntimeError, match="send"):
        send("nobody listens")
    assert not in_worker()


def _in_worker(_: int) -> bool:
    return in_worker()
