"""What `seqtransfer run` says: the stage runners' info lines at the default level, nothing with -q."""

import logging
from pathlib import Path
from typing import Any

import pytest

from seqtransfer.cli import main
from seqtransfer.core.progress import Progress, ProgressEvent


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
        raise SystemExit(0)
    code = info.value.code if isinstance(info.value.code, int) else 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[ProgressEvent]:
    """`seqtransfer run` with the protocol replaced by one that logs like the real one (through the
    runner's own logger) and reports progress; the events it got back are returned."""
    import seqtransfer.experiment.config as config_module
    import seqtransfer.experiment.runner as runner
    import seqtransfer.report as report_module

    events: list[ProgressEvent] = []

    def run_experiment(config: Any, run_dir: Path, progress: Progress | None = None, executor: Any = None) -> None:
        assert progress is not None
        runner.logger.info("graphs: %d draw(s), %d target(s): %s", 1, 1, "T")
        runner.logger.info("T draw 0: no landmark; skipped: ours")
        runner.logger.debug("T draw 0: ours skipped (a worker's line)")
        logging.getLogger("seqtransfer.pipeline.zoo").info("A: training the zoo model")
        progress(ProgressEvent("zoo", 1, 1))
        events.append(ProgressEvent("zoo", 1, 1))

    monkeypatch.setattr(config_module, "load_config", lambda _path: object())
    monkeypatch.setattr(runner, "run_experiment", run_experiment)
    monkeypatch.setattr(
        report_module, "write_report", lambda out: {"report": out / "report.html", "summary": out / "summary.md"}
    )
    (tmp_path / "exp.toml").write_text("")
    return events


def test_run_says_its_stages_by_default_and_nothing_with_quiet(
    fake_run: list[ProgressEvent], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", str(tmp_path / "exp.toml"), "--out", str(tmp_path / "run"), "--workers", "1"]
    code, out, err = run(argv, capsys)
    assert code == 0 and "report:" in out, err
    assert "graphs: 1 draw(s), 1 target(s): T" in err and "skipped: ours" in err, err
    # the rest of the library's info lines and the workers' debug lines wait for --verbose
    assert "training the zoo model" not in err and "a worker's line" not in err, err
    code, out, err = run(["-q", *argv], capsys)
    assert code == 0 and "report:" in out and err == "", err
    code, _, err = run(["-v", *argv], capsys)
    assert code == 0 and "graphs:" in err and "training the zoo model" in err and "a worker's line" in err, err
    assert len(fake_run) == 3  # the progress adapter took every event
    for name in ("seqtransfer", "seqtransfer.experiment.runner", "seqtransfer.adapt.run"):
        assert logging.getLogger(name).level == logging.NOTSET  # main gives the caller its logging back
