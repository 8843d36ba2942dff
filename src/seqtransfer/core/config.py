"""Shared loading and validation of the frozen configuration dataclasses (one per concern).

:func:`config_from_mapping` is the one loader from a parsed TOML table or JSON object to a
configuration dataclass; every ``from_dict`` and the experiment file use it.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, TypeVar

from seqtransfer.core.errors import ConfigError

T = TypeVar("T")


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


def reject_unknown_keys(cls: type, data: Mapping[str, Any], what: str, allowed: Collection[str] | None = None) -> None:
    """Raise :class:`ConfigError` naming the keys of ``data`` that are not fields of ``cls``
    (or not among ``allowed`` of them)."""
    names = {f.name for f in fields(cls)} if allowed is None else set(allowed)
    unknown = sorted(set(map(str, data)) - names)
    if unknown:
        # repr keeps a key with control characters on one line
        raise ConfigError(
            f"unknown {what} parameter(s): {', '.join(k if k.isidentifier() else repr(k) for k in unknown)}"
        )


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """``value`` as a field annotated ``annotation`` holds it (lists become tuples, ints floats)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        real = [a for a in options if a is not type(None)]
        if len(real) == 1:
            return _coerce(value, real[0], where)
        return value
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if not isinstance(value, Mapping):
            raise ConfigError(f"[{where}] must be a table")
        return config_from_mapping(annotation, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list")
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{where} must be a list of {len(args)}")
        if not args:
            return tuple(value)
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def config_from_mapping(cls: type[T], data: Mapping[str, Any], what: str, allowed: Collection[str] | None = None) -> T:
    """The frozen configuration dataclass ``cls`` from a parsed TOML table or JSON object.

    The one dict-to-dataclass loader of the package: unknown keys are refused by name, each
    value is checked against its field's annotation (``bool``, ``int``, ``float``, ``str``,
    ``tuple[...]``, ``X | None``, a nested configuration dataclass) with lists turned into
    tuples and integers into floats where a float is expected, and the class's own
    validation (its ``__post_init__``) runs last. Missing keys keep their defaults.

    Args:
        cls: the configuration dataclass.
        data: the parsed table.
        what: its name in messages (``zoo``, ``graph``, ...).
        allowed: the fields a file may set, when not all of them (the others are set by the caller).

    Raises:
        ConfigError: one line naming the key and what is wrong.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"[{what}] must be a table")
    reject_unknown_keys(cls, data, what, allowed)
    hints = typing.get_type_hints(cls)
    kwargs = {str(key): _coerce(value, hints[str(key)], f"{what}.{key}") for key, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        # a class's own message starts with the field's name: name the table too
        message = str(exc)
        if message.split(" ", 1)[0] in hints:
            message = f"{what}.{message}"
        raise ConfigError(message) from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {what} parameters: {exc}") from exc


def default_cache_dir() -> Path:
    """``$SEQTRANSFER_CACHE``, else ``~/.cache/seqtransfer`` (preprocessed cases, verification records)."""
    env = os.environ.get("SEQTRANSFER_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "seqtransfer"
