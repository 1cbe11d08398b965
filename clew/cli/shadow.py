"""``clew shadow report ENDPOINT``: a shadow version beside its champion on the same requests."""

from __future__ import annotations

from typing import Annotated

import typer

import clew
from clew.cli import output
from clew.cli.output import Format, FormatOption, console

app = typer.Typer(help="Shadow deployments.", no_args_is_help=True)


@app.command("report")
def report(
    endpoint: Annotated[str, typer.Argument(help="The endpoint the shadow ran beside.")],
    deployment: Annotated[
        str | None,
        typer.Option("--deployment", help="A shadow deployment id (default: the newest)."),
    ] = None,
    format: FormatOption = Format.table,
) -> None:
    """Agreement of the shadow with its champion, and their quality once labels arrive."""
    found = clew.shadow_report(endpoint, deployment=deployment)
    if format is Format.json:
        output.print_json(found.to_dict())
        return
    agreement = "-" if found.agreement is None else f"{found.agreement:.1%}"
    console.print(
        f"shadow [bold]{found.shadow}[/bold] beside champion [bold]{found.champion}[/bold] on "
        f"{found.endpoint}: {found.requests} requests, {found.compared} of {found.paired_rows} "
        f"rows compared, agreement {agreement}, {found.labelled} labelled"
    )
    console.print(output.frame_table(found.to_pandas(), "champion and shadow"))
