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


def test_a_pool_worker_that_dies_is_one_error_that_says_a_rerun_resumes() -> None:
    import os

    from seqtransfer.core.errors import WorkerLost

    pool = ProcessExecutor(workers=1)
    with pytest.raises(WorkerLost, match="run the same command again"):
        pool.map(os._exit, [3])  # the worker ends without a word, as a SIGKILL or the OOM killer leaves it
    assert pool._pool is None  # closed; the next map starts a new pool
    try:
        assert pool.map(abs, [-2]) == [2]
    finally:
        pool.close()


def test_the_cli_says_a_worker_died_in_one_line_with_status_1(monkeypatch, capsys, tmp_path) -> None:
    import seqtransfer.experiment.config as experiment_config
    from seqtransfer.cli import main
    from seqtransfer.core.errors import WorkerLost

    def dies(path):
        raise WorkerLost("a worker process died (test)")

    monkeypatch.setattr(experiment_config, "load_config", dies)
    with pytest.raises(SystemExit) as info:
        main(["run", str(tmp_path / "x.toml"), "--out", str(tmp_path / "run")])
    assert info.value.code == 1
    assert capsys.readouterr().err.strip() == "error: a worker process died (test)"


def test_an_error_in_one_item_stops_the_pool_without_losing_or_blocking_the_others_messages() -> None:
    """One item fails at once while another still sends far more than a pipe holds (64 KiB):
    the error is raised, every message of the other item is delivered, nothing hangs."""
    import signal

    from seqtransfer.core.errors import ConfigError

    got: list[object] = []
    signal.alarm(120)  # a hang fails the test instead of the suite
    try:
        with ProcessExecutor(workers=2) as pool, pytest.raises(ConfigError, match="item 0 fails"):
            pool.map(_fail_or_chatter, [0, 1], on_message=got.append)
    finally:
        signal.alarm(0)
    assert got == [(i, "x" * 1000) for i in range(300)]


def _fail_or_chatter(item: int) -> None:
    import time

    from seqtransfer.core.errors import ConfigError

    if item == 0:
        raise ConfigError("item 0 fails")
    time.sleep(0.3)  # the other item's error reaches the driver first
    for i in range(300):  # about 300 kB: far more than the pipe's buffer
        send((i, "x" * 1000))
