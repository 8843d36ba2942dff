"""Errors a user can cause. The CLI prints their one-line message and exits with status 2."""

from __future__ import annotations


class SeqTransferError(Exception):
    """Base class of every error caused by input (data, configuration, arguments)."""


class DatasetError(SeqTransferError):
    """A dataset is missing, malformed or inconsistent.

    Args:
        message: one-line summary.
        problems: every problem found, one line each, each naming its file.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = list(problems) if problems else [message]


class ConfigError(SeqTransferError):
    """A configuration value or command-line argument is invalid."""


class StoreError(SeqTransferError):
    """A cache, checkpoint or result file is unreadable or corrupt."""


class WorkerLost(Exception):
    """A worker process died (killed, out of memory) while it ran a unit of work.

    Not bad input: the CLI prints the one-line message and exits with status 1. Every unit that
    finished is kept (the run store, atomic files, checkpoints), so running the same command
    again resumes.
    """
