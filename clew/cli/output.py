"""What every command shares: the consoles, ``--format``, JSON and table rendering, errors.

Humans get Rich tables on stdout; scripts get ``--format json``, whose shapes are documented
in docs/cli.md and kept stable. An expected failure (any ``ClewError``) becomes one line
``error: <message>`` on stderr and exit code 1, never a traceback: ``ClewGroup`` catches it
once, at the root, so no command needs its own try/except.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any

import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from typer._click.core import Context  # the click typer carries, which its groups use

from clew.errors import ClewError

PIPE_WIDTH = 160

console = Console(highlight=False, soft_wrap=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def fit_console() -> None:
    """Size tables for where stdout goes now: ``COLUMNS`` if set, the terminal's width, or
    wide when piped, so rows stay whole lines for grep (decided per command, not at import)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        console.width = int(columns)
    elif sys.stdout.isatty():
        console.width = os.get_terminal_size(sys.stdout.fileno()).columns
    else:
        console.width = PIPE_WIDTH


class Format(StrEnum):
    table = "table"
    json = "json"


FormatOption = Annotated[
    Format, typer.Option("--format", "-f", help="table (humans) or json (documented shapes).")
]


class ClewGroup(typer.core.TyperGroup):
    """The root command group: turns clew's expected errors into one line and exit 1."""

    def invoke(self, ctx: Context) -> Any:
        fit_console()
        try:
            return super().invoke(ctx)
        except ClewError as error:
            fail(str(error))


def fail(message: str, code: int = 1) -> None:
    """Print ``error: <message>`` on stderr and exit; for refusals the CLI itself detects."""
    err_console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def json_safe(value: Any) -> Any:
    """Turn values into what JSON can hold; non-finite floats become "NaN"/"Infinity" strings."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return json_safe(value.item())
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)


def print_json(data: Any) -> None:
    """Strict JSON (no NaN literals) on stdout, two-space indented, keys in stable order."""
    typer.echo(json.dumps(json_safe(data), indent=2, allow_nan=False))


def cell(value: Any) -> str | Text:
    """A table cell: short, readable text for any value (Rich ``Text`` passes through)."""
    if isinstance(value, Text):
        return value
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items())
    return escape(str(value))


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> Table:
    rendered = Table(title=title, title_justify="left", header_style="bold")
    for index, column in enumerate(columns):
        rendered.add_column(column, overflow="fold", no_wrap=index == 0)
    for row in rows:
        rendered.add_row(*(cell(value) for value in row))
    return rendered


def key_values(values: Mapping[str, Any], title: str, key: str = "key") -> Table:
    """A two-column table of a mapping, sorted by key."""
    return table([key, "value"], sorted(values.items()), title)


def is_missing(value: Any) -> bool:
    """True for the NaN/None pandas uses for a column a row does not have."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def frame_records(frame: Any) -> list[dict[str, Any]]:
    """DataFrame rows as JSON-ready dicts; pandas' NaN/NaT placeholders become null."""
    return [
        {
            str(key): None if _is_placeholder(value) else json_safe(value)
            for key, value in row.items()
        }
        for row in frame.to_dict("records")
    ]


def _is_placeholder(value: Any) -> bool:
    import pandas as pd

    return is_missing(value) or value is pd.NaT


def frame_table(
    frame: Any, title: str | None = None, columns: Sequence[str] | None = None
) -> Table:
    """A Rich table of a DataFrame's rows (optionally only some columns)."""
    return records_table(frame_records(frame), title, columns or list(frame.columns))


def records_table(
    rows: Sequence[Mapping[str, Any]], title: str | None = None, columns: Sequence[str] = ()
) -> Table:
    """A Rich table of rows given as dicts, as :func:`frame_table` draws a frame's: the SDK's
    ``*_records`` calls give the CLI its listings without pandas. ``columns`` defaults to the
    first row's keys."""
    shown = list(columns or (rows[0] if rows else ()))
    return table(shown, ([_readable(json_safe(row.get(c))) for c in shown] for row in rows), title)


def _readable(value: Any) -> Any:
    """ISO times in a table read better without the 'T' and milliseconds."""
    if isinstance(value, str) and len(value) == 24 and value[10] == "T" and value.endswith("Z"):
        return value[:19].replace("T", " ")
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return value
