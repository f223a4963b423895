"""How every command prints: one convention for the whole command line.

- Human output by default; ``--json`` (``add_json_flag``) prints the same facts as JSON, the one
  form scripts read (``print_json``).
- Tables (``print_table``) are rich tables in one style that fit the terminal's width
  (``COLUMNS``, else the terminal's, else 120 columns): cells wrap between words and fold only a
  word longer than its column, never cut it.
- Free text (``say``) wraps between words at the same width.
- Markdown (plans, reports) is rendered on a terminal and printed raw everywhere else (a pipe,
  a file, an artifact), so what a script or an auditor stores is the source (``print_markdown``).
- Anything that can take more than a few seconds shows a spinner with what it waits for on
  stderr when stderr is a terminal, and nothing otherwise (``progress``).

rich is imported only when something is printed through it, so ``hotspare --help`` stays fast.
Everything reaches ``sys.stdout`` as it is at the moment of printing (tests swap it), which
``terminal.guard_stdout`` keeps free of escape sequences a customer server could have planted.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence

DEFAULT_WIDTH = 120  # a pipe or a file without COLUMNS: a status row whole, no word broken
MAXIMUM_WIDTH = 200  # wider tables read badly even on wide terminals


def add_json_flag(parser, what: str = "the same facts") -> None:
    """The one ``--json`` flag of every command that reports."""
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON (for scripts) instead of text")


def wants_json(args) -> bool:
    return bool(getattr(args, "json", False))


def print_json(data) -> None:
    """``data`` as indented JSON; datetimes and other objects as their text."""
    print(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def width() -> int:
    """The width output is made for: ``COLUMNS``, else the terminal's, else 120 (never above 200)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return min(int(columns), MAXIMUM_WIDTH)
    try:
        if sys.stdout.isatty():
            return min(os.get_terminal_size(sys.stdout.fileno()).columns, MAXIMUM_WIDTH)
    except (OSError, ValueError, AttributeError):
        pass
    return DEFAULT_WIDTH


def is_terminal(stream=None) -> bool:
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def console(stderr: bool = False):
    """A rich console for the current stdout (or stderr): colour only on a terminal, no markup
    or highlighting of the text itself (it may carry what a customer server wrote)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(
        file=stream,
        width=width(),
        highlight=False,
        markup=False,
        emoji=False,
        force_terminal=None if is_terminal(stream) else False,
        soft_wrap=False,
    )


def say(text: str = "", stderr: bool = False) -> None:
    """One paragraph, wrapped between words at the output's width."""
    console(stderr).print(text, overflow="fold")


def print_table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], title: str | None = None, empty: str | None = None
) -> None:
    """Print ``rows`` under ``headers`` in the command line's one table style.

    Cells are text ("-" for None); they wrap between words and a word longer than its column
    is folded onto the next line, so nothing is cut off and no line is wider than ``width()``.
    ``empty`` is printed instead of a table without rows.
    """
    from rich import box
    from rich.table import Table

    rows = [[("-" if cell is None else str(cell)) for cell in row] for row in rows]
    if not rows and empty is not None:
        say(empty)
        return
    table = Table(
        box=box.SIMPLE_HEAD, title=title, title_justify="left", show_edge=False, pad_edge=False, header_style="bold", expand=False
    )
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(cell if cell is None or isinstance(cell, str) else str(cell) for cell in row))
    console().print(table)


def print_markdown(text: str) -> None:
    """Markdown rendered on a terminal; the raw text anywhere else (pipes, files, tests)."""
    if not is_terminal():
        print(text)
        return
    from rich.markdown import Markdown

    console().print(Markdown(text, hyperlinks=False))


@contextlib.contextmanager
def progress(message: str) -> Iterator[None]:
    """A spinner with ``message`` on stderr while the block runs, when stderr is a terminal;
    silent otherwise (logs, pipes, tests)."""
    if not is_terminal(sys.stderr):
        yield
        return
    with console(stderr=True).status(message, spinner="dots"):
        yield
