"""The CLI reference page, written from the typer application itself.

``typer.main.get_command(app)`` gives the click command tree that ``seqtransfer --help`` prints;
this module walks it and writes each command's help text, usage and options as Markdown, so the
page can never drift from the code. The mkdocs hook (``docs/hooks.py``) calls :func:`cli_markdown`
at build time; ``python docs/gen_cli.py`` prints the same page.
"""

from __future__ import annotations

import html
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

PROG = "seqtransfer"

# Characters that Markdown (or the math extension: `$`) would interpret in plain help text.
_MARKDOWN_ENTITIES = {"|": "&#124;", "$": "&#36;", "*": "&#42;", "_": "&#95;", "[": "&#91;", "]": "&#93;", "`": "&#96;"}


class Parameter(Protocol):
    """What this page reads of a click/typer parameter."""

    def get_help_record(self, ctx: Any) -> tuple[str, str] | None: ...


class Command(Protocol):
    """What this page reads of a click/typer command (a group also has ``commands``)."""

    @property
    def help(self) -> str | None: ...

    @property
    def hidden(self) -> bool: ...

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any: ...

    def get_params(self, ctx: Any) -> Sequence[Parameter]: ...

    def collect_usage_pieces(self, ctx: Any) -> list[str]: ...


def plain_text(text: str) -> str:
    """Help text as Markdown that shows it literally (HTML and Markdown characters escaped)."""
    escaped = html.escape(text, quote=False)
    return "".join(_MARKDOWN_ENTITIES.get(char, char) for char in escaped)


def _paragraphs(text: str) -> list[str]:
    """Paragraphs of a help text, each on one line (click rewraps them the same way)."""
    blocks = [" ".join(line.strip() for line in block.splitlines()) for block in text.strip().split("\n\n")]
    return [block for block in blocks if block]


def _subcommands(command: Command) -> Mapping[str, Command]:
    """A group's visible subcommands by name, in the order they were registered; none for a command."""
    commands: Mapping[str, Command] = getattr(command, "commands", {})
    return {name: sub for name, sub in commands.items() if not sub.hidden}


def _walk(command: Command, name: str, parent: Any) -> Iterator[tuple[Command, Any]]:
    """Every command of the tree with its context, depth first, the group before its commands."""
    ctx = command.make_context(name, [], parent=parent, resilient_parsing=True)
    yield command, ctx
    for sub_name, sub in _subcommands(command).items():
        yield from _walk(sub, sub_name, ctx)


def command_section(command: Command, ctx: Any) -> str:
    """One command's section: heading, help, usage, options table (and a group's commands)."""
    path = ctx.command_path
    level = "#" * min(2 + path.count(" "), 4)
    lines = [f"{level} {path}", ""]
    for paragraph in _paragraphs(command.help or ""):
        lines += [plain_text(paragraph), ""]
    usage = " ".join([path, *command.collect_usage_pieces(ctx)])
    lines += ["```text", f"Usage: {usage}", "```", ""]
    records = [record for param in command.get_params(ctx) if (record := param.get_help_record(ctx)) is not None]
    if records:
        lines += ["| Argument / option | Description |", "|---|---|"]
        lines += [f"| `{names}` | {plain_text(text)} |" for names, text in records]
        lines.append("")
    subcommands = _subcommands(command)
    if subcommands:
        lines += ["Commands: " + ", ".join(f"`{path} {sub}`" for sub in subcommands), ""]
    return "\n".join(lines)


def cli_markdown(app: Any, prog: str = PROG) -> str:
    """The whole CLI reference page for a typer application.

    Args:
        app: the ``typer.Typer`` application.
        prog: the program name the usage lines start with.

    Returns:
        Markdown: a title, then one section per command, groups before their commands.
    """
    import typer

    root: Command = typer.main.get_command(app)
    sections = [
        "# Command line reference",
        "",
        f"Written at build time from the `{prog}` application (`seqtransfer.cli.app`): every command's "
        f"`--help`, as `{prog} COMMAND --help` prints it.",
        "",
    ]
    sections += [command_section(command, ctx) for command, ctx in _walk(root, prog, None)]
    return "\n".join(sections)


def main() -> None:
    """Print the page for the checked-out sources (``src/`` beside ``docs/``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from seqtransfer.cli import app

    sys.stdout.write(cli_markdown(app))


if __name__ == "__main__":
    main()
