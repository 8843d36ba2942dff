"""mkdocs hooks: the generated pages, offline math, the code colours.

- The CLI reference (``cli.md``) is written from the typer application (``docs/gen_cli.py``).
- One API page per package or top-level module of ``src/seqtransfer`` (``api/NAME.md``, one
  ``::: seqtransfer.NAME`` each, its submodules rendered by mkdocstrings): a new package gets
  its page, and a new module its section, without an edit here. Pages follow the layers of the
  import-linter contract in ``pyproject.toml``, lowest first, the order data flows.
- Math: ``pymdownx.arithmatex`` (generic mode) leaves ``\\(...\\)`` and ``\\[...\\]`` in the
  HTML; they are converted here to MathML with ``latex2mathml``, which browsers draw natively:
  no script, no network, when building or when reading.
- ``css/pygments.css``: the Pygments colours of the highlighted code (the theme's highlight.js
  would come from a CDN, so it is off).
"""

from __future__ import annotations

import html
import logging
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import latex2mathml.converter
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page
from pygments.formatters import HtmlFormatter

log = logging.getLogger("mkdocs.hooks.seqtransfer")

PACKAGE = "seqtransfer"
_INLINE_MATH = re.compile(r'<span class="arithmatex">\\\((.+?)\\\)</span>', re.DOTALL)
_BLOCK_MATH = re.compile(r'<div class="arithmatex">\\\[(.+?)\\\]</div>', re.DOTALL)


def _root(config: MkDocsConfig) -> Path:
    """The repository root: the folder of mkdocs.yml."""
    return Path(config.config_file_path).resolve().parent


def _layer_order(root: Path) -> list[str]:
    """The package names of the import-linter layers, lowest layer first."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    names: list[str] = []
    for contract in pyproject.get("tool", {}).get("importlinter", {}).get("contracts", []):
        if contract.get("type") != "layers":
            continue
        for layer in reversed(contract.get("layers", [])):
            for module in layer.split("|"):
                name = module.strip().removeprefix(f"{PACKAGE}.")
                if name not in names:
                    names.append(name)
    return names


def api_modules(root: Path) -> list[str]:
    """Every public package and top-level module of ``src/seqtransfer``, in layer order."""
    source = root / "src" / PACKAGE
    found = {
        path.stem if path.is_file() else path.name
        for path in source.iterdir()
        if not path.name.startswith("_")
        and ((path.is_dir() and (path / "__init__.py").is_file()) or (path.is_file() and path.suffix == ".py"))
    }
    ordered = [name for name in _layer_order(root) if name in found]
    return ordered + sorted(found - set(ordered))


def _api_page(name: str) -> str:
    """The Markdown of one API page: the package's docstring, its members, its submodules."""
    return f"# `{PACKAGE}.{name}`\n\n::: {PACKAGE}.{name}\n    options:\n      show_root_heading: false\n"


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Import the checked-out sources (not an installed copy) and lay out the navigation."""
    root = _root(config)
    source = str(root / "src")
    if source not in sys.path:
        sys.path.insert(0, source)
    config.nav = [
        {"Home": "index.md"},
        {"The method": "method.md"},
        {"Command line": "cli.md"},
        {"API reference": [{f"{PACKAGE}.{name}": f"api/{name}.md"} for name in api_modules(root)]},
    ]
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated pages and the Pygments stylesheet."""
    root = _root(config)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        from gen_cli import cli_markdown
    finally:
        sys.path.pop(0)
    from seqtransfer.cli import app

    files.append(File.generated(config, "cli.md", content=cli_markdown(app)))
    for name in api_modules(root):
        files.append(File.generated(config, f"api/{name}.md", content=_api_page(name)))
    files.append(File.generated(config, "css/pygments.css", content=HtmlFormatter().get_style_defs(".highlight")))
    return files


def tex_to_mathml(tex: str, display: str) -> str:
    """One formula, as arithmatex left it (HTML-escaped TeX), as MathML.

    A displayed formula is typeset in display style (full-size sums, limits below them).
    """
    tex = html.unescape(tex).strip()
    if display == "block":
        tex = rf"\displaystyle {tex}"
    return str(latex2mathml.converter.convert(tex, display=display))


def on_page_content(content: str, page: Page, config: MkDocsConfig, files: Files, **_: Any) -> str:
    """Replace the math markup of a page (its text and its docstrings) with MathML."""
    content = _BLOCK_MATH.sub(lambda m: f'<div class="math">{tex_to_mathml(m.group(1), "block")}</div>', content)
    return _INLINE_MATH.sub(lambda m: tex_to_mathml(m.group(1), "inline"), content)
