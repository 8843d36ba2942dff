"""A griffe extension: the Sphinx roles of the docstrings as links of the API reference.

The docstrings name other objects the Sphinx way (``:func:`landmark_scores```,
``:mod:`~seqtransfer.affinity.pairs```). mkdocstrings does not read those roles, so before the
pages are rendered each one is rewritten to an *optional* cross-reference: a link when the
name resolves to a documented object, plain code otherwise (an object the reference does not
show, such as a private helper), never a warning. Names resolve as Sphinx resolves them: a
full path first, then relative to the enclosing class, then to the module.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:mod|func|class|meth|attr|data|exc|obj|const):`(?P<tilde>~?)(?P<name>[\w.]+)(?:\(\))?`")


def _objects(obj: griffe.Object) -> Iterator[griffe.Object]:
    """An object and every object defined inside it (aliases left out)."""
    yield obj
    for member in obj.members.values():
        if not member.is_alias and isinstance(member, griffe.Object):
            yield from _objects(member)


def _scopes(obj: griffe.Object) -> list[str]:
    """Where a relative name is looked up from, innermost first: the classes, then the module."""
    scopes = []
    parent: griffe.Object | None = obj if obj.is_class else obj.parent
    while parent is not None and parent.is_class:
        scopes.append(parent.path)
        parent = parent.parent
    scopes.append(obj.module.path)
    return scopes


def _resolve(collection: griffe.ModulesCollection, obj: griffe.Object, name: str) -> str | None:
    """The canonical path of the object that a role's name denotes, or None."""
    for candidate in [name, *(f"{scope}.{name}" for scope in _scopes(obj))]:
        try:
            found: Any = collection.get_member(candidate)
        except (KeyError, ValueError):
            continue
        try:
            return str(found.final_target.path if found.is_alias else found.path)
        except griffe.AliasResolutionError:
            return None
    return None


def _rewrite(collection: griffe.ModulesCollection, obj: griffe.Object, text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        title = html.escape(name.rsplit(".", 1)[-1] if match["tilde"] else name)
        path = _resolve(collection, obj, name)
        if path is None:
            return f"<code>{title}</code>"
        return f'<autoref identifier="{html.escape(path)}" optional><code>{title}</code></autoref>'

    return _ROLE.sub(replace, text)


class SphinxRoles(griffe.Extension):
    """Rewrites the Sphinx roles of every docstring of a package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Rewrite the docstrings of every object of ``pkg``."""
        collection = pkg.modules_collection
        for obj in _objects(pkg):
            if obj.docstring is not None and ":" in obj.docstring.value:
                obj.docstring.value = _rewrite(collection, obj, obj.docstring.value)
