"""``clew card show|edit|export|import``: structured model cards, through the SDK."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

import clew
from clew.cli import output
from clew.cli.output import Format, FormatOption, console
from clew.domain.cards import EDITABLE, Card, sections

app = typer.Typer(
    help="Model cards: facts from lineage, edited fields versioned; JSON, SageMaker, HTML, PDF.",
    no_args_is_help=True,
)

Ref = Annotated[str, typer.Argument(help="MODEL/VERSION or MODEL@ALIAS, e.g. credit/3.")]


@app.command("show")
def show(ref: Ref, format: FormatOption = Format.table) -> None:
    """The version's card: edited fields and what lineage knows."""
    found = clew.card(ref)
    if format is Format.json:
        output.print_json(found.to_dict())
        return
    _print(found)


@app.command("edit")
def edit(
    ref: Ref,
    fields: Annotated[
        list[str],
        typer.Option("--set", help=f"FIELD=TEXT (repeatable); fields: {', '.join(EDITABLE)}."),
    ],
    comment: Annotated[str, typer.Option("--comment", "-c", help="Why (audited).")] = "",
    format: FormatOption = Format.table,
) -> None:
    """Set edited fields of the card; the result is its next revision (audited)."""
    changes: dict[str, str] = {}
    for item in fields:
        name, separator, text = item.partition("=")
        if not separator:
            output.fail(
                f"--set {item!r} is not FIELD=TEXT; e.g. --set limitations='No data on minors'."
            )
        changes[name.strip()] = text
    found = clew.edit_card(ref, comment, **changes)
    if format is Format.json:
        output.print_json(found.to_dict())
    else:
        console.print(f"card of {found.ref} is now at revision {found.revision}.")


@app.command("export")
def export(
    ref: Ref,
    to: Annotated[
        str, typer.Option("--format", "-f", help="json, sagemaker, html or pdf.")
    ] = "json",
    out: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).")
    ] = None,
) -> None:
    """Render the card (PDF needs the cards extra)."""
    data = clew.export_card(ref, to)
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        out.write_bytes(data)
        console.print(f"wrote the card of {ref} as {to} to {out}.")


@app.command("import")
def import_card(
    ref: Ref,
    path: Annotated[Path, typer.Argument(help="A SageMaker Model Card JSON file.")],
    comment: Annotated[str, typer.Option("--comment", "-c")] = "",
) -> None:
    """Take the human-written fields of a SageMaker Model Card JSON file."""
    found = clew.import_card(ref, path, comment)
    console.print(f"card of {found.ref} is now at revision {found.revision}.")


def _print(found: Card) -> None:
    for title, lines in sections(found):
        console.print(f"[bold]{title}[/bold]", highlight=False)
        for line in lines:
            console.print(f"  {line}", markup=False, highlight=False)
