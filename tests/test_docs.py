"""The documentation's references: every test and function that docs/method.md names exists.

The method page says, for each equation, which function computes it (an mkdocstrings
cross-reference ``[name][seqtransfer.module.function]``) and which test checks it
(``tests/PATH.py::test_name``). A rename or a move must not leave the page pointing at nothing;
the page is read as text here, so this needs neither mkdocs nor a build. The CLI reference is
generated from the typer application by ``docs/gen_cli.py``: it must list every command.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
METHOD = ROOT / "docs" / "method.md"
TEST_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
FUNCTION_REFERENCE = re.compile(r"\]\[(seqtransfer(?:\.\w+)+)\]")


def page_references(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The (file, test name) pairs and the qualified names that a page references."""
    return TEST_REFERENCE.findall(text), FUNCTION_REFERENCE.findall(text)


def defined_tests(path: Path) -> set[str]:
    """Names of the test functions defined in a test file (module level or in a class)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    }


def resolve(qualified: str) -> object:
    """The object a qualified name denotes: the longest importable module, then attributes."""
    parts = qualified.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)
        return obj
    raise ModuleNotFoundError(qualified)


def _method_page() -> str:
    return METHOD.read_text(encoding="utf-8")


def test_the_method_page_references_tests_and_functions() -> None:
    tests, functions = page_references(_method_page())
    # every equation section names at least one of each: a page that lost them all is wrong too
    assert len(tests) >= 20 and len(functions) >= 20


def test_every_test_the_method_page_names_exists() -> None:
    tests, _ = page_references(_method_page())
    missing = []
    for file, name in sorted(set(tests)):
        path = ROOT / file
        if not path.is_file() or name not in defined_tests(path):
            missing.append(f"{file}::{name}")
    assert not missing, f"docs/method.md names tests that do not exist: {missing}"


def test_every_function_the_method_page_names_is_importable() -> None:
    _, functions = page_references(_method_page())
    missing = []
    for qualified in sorted(set(functions)):
        try:
            obj = resolve(qualified)
        except (ImportError, AttributeError):
            missing.append(qualified)
            continue
        assert callable(obj) or isinstance(obj, ModuleType), f"{qualified} is neither callable nor a module"
    assert not missing, f"docs/method.md names functions that cannot be imported: {missing}"


def test_the_reference_checks_fail_on_what_does_not_exist() -> None:
    text = "[`x`][seqtransfer.affinity.affinity.no_such_function] `tests/test_docs.py::test_no_such_test`"
    tests, functions = page_references(text)
    assert tests == [("tests/test_docs.py", "test_no_such_test")]
    assert "test_no_such_test" not in defined_tests(ROOT / "tests" / "test_docs.py")
    with pytest.raises(AttributeError):
        resolve(functions[0])
    with pytest.raises(ModuleNotFoundError):
        resolve("no_such_package.module")


def _gen_cli() -> ModuleType:
    spec = importlib.util.spec_from_file_location("seqtransfer_docs_gen_cli", ROOT / "docs" / "gen_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_page_lists_every_command_and_option() -> None:
    import typer

    from seqtransfer.cli import app

    page = _gen_cli().cli_markdown(app)

    def walk(command: Any, path: str) -> list[tuple[str, Any]]:
        found: list[tuple[str, Any]] = [(path, command)]
        for name, sub in getattr(command, "commands", {}).items():
            found += walk(sub, f"{path} {name}")
        return found

    commands = walk(typer.main.get_command(app), "seqtransfer")
    assert len(commands) > 10
    for path, command in commands:
        assert re.search(rf"^#+ {re.escape(path)}$", page, flags=re.MULTILINE), f"no section for {path}"
        for param in command.params:
            for option in getattr(param, "opts", []):
                if option.startswith("--"):
                    assert f"`{option}" in page or f" {option}" in page, f"{path} {option}"


def test_help_text_is_shown_literally() -> None:
    plain_text = _gen_cli().plain_text
    assert plain_text("a | b <path> $HOME *x* [y] `z` a_b") == (
        "a &#124; b &lt;path&gt; &#36;HOME &#42;x&#42; &#91;y&#93; &#96;z&#96; a&#95;b"
    )
