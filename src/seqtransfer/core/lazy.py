"""Names a package exports but imports only on first use (PEP 562 module ``__getattr__``).

A package whose public names live in heavy modules (torch, MONAI, POT, the anatomy) lists
them with the module each comes from; a command that needs only the package's light part
(a configuration, a stored graph) then loads none of the heavy ones.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package``: ``where`` maps each lazy name to the module
    (dotted, absolute) that defines it.

    A name is imported on first use and then kept in the package's namespace, so later uses
    cost nothing; any other name raises :class:`AttributeError` as a module does.

    Args:
        package: the package's ``__name__``.
        where: lazy name -> defining module.

    Returns:
        The function to assign to the package's ``__getattr__``.
    """

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        vars(sys.modules[package])[name] = value
        return value

    return __getattr__
