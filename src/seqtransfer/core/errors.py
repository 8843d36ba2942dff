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
