"""Shared validation of the frozen configuration dataclasses (one per concern)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from seqtransfer.core.errors import ConfigError


def require(checks: Iterable[tuple[bool, str]]) -> None:
    """Raise :class:`ConfigError` with the message of the first failed ``(ok, message)`` check."""
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def recorded_dict(config: Any, *added: str) -> dict[str, Any]:
    """``asdict(config)`` without the fields in ``added`` while they hold their defaults.

    A field added to a configuration whose dict is hashed into keys (model folders, stored
    runs, benchmark markers) would change every key recorded before it existed; left out at
    its default, those keys stay valid and a run with the new option gets new ones.
    """
    data = asdict(config)
    defaults = {f.name: f.default for f in fields(config)}
    for name in added:
        if data[name] == defaults[name]:
            del data[name]
    return data


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
