"""Shared validation of the frozen configuration dataclasses (one per concern)."""

from __future__ import annotations

import os
from pathlib import Path

from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any

from seqtransfer.errors import ConfigError


def require(checks: Iterable[tuple[bool, str]]) -> None:
    """Raise :class:`ConfigError` with the message of the first failed ``(ok, message)`` check."""
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def reject_unknown_keys(cls: type, data: Mapping[str, Any], what: str) -> None:
    """Raise :class:`ConfigError` naming the keys of ``data`` that are not fields of ``cls``."""
    unknown = sorted(set(map(str, data)) - {f.name for f in fields(cls)})
    if unknown:
        # repr keeps a key with control characters on one line
        raise ConfigError(f"unknown {what} parameter(s): {', '.join(k if k.isidentifier() else repr(k) for k in unknown)}")


def default_cache_dir() -> Path:
    """``$SEQTRANSFER_CACHE``, else ``~/.cache/seqtransfer`` (preprocessed cases, verification records)."""
    env = os.environ.get("SEQTRANSFER_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "seqtransfer"
