"""``clew status``: a version's standing, or which versions answered each endpoint at a time.

``clew status churn/3`` is the registry's view of a version (clew/cli/registry.py);
``clew status --at 2026-12-07T10:00:00Z [--endpoint churn-api]`` reads the recorded serving
deployments: the champion and any shadows answering then.
"""

from __future__ import annotations

from typing import Annotated

import typer

import clew
from clew.cli import output, registry
from clew.cli.output import Format, FormatOption, console


def status(
    ref: Annotated[
        str | None,
        typer.Argument(help="NAME/VERSION or NAME@ALIAS, e.g. churn/3 (omit with --at)."),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option("--at", help="An ISO 8601 time (UTC unless it says), e.g. 2026-12-07T10:00Z."),
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", "-e", help="Only this endpoint.")
    ] = None,
    format: FormatOption = Format.table,
) -> None:
    """A version's approvals, aliases and policy standing; or, with --at or --endpoint (or
    nothing), which version answered each endpoint at that time."""
    if ref is not None:
        if at is not None or endpoint is not None:
            output.fail("pass either a version REF or --at/--endpoint, not both.")
        registry.status(ref, format)
        return
    found = clew.status(endpoint, at)
    if format is Format.json:
        output.print_json(found.to_dicts())
        return
    when = at or "now"
    if not found:
        where = f"endpoint {endpoint}" if endpoint else "any endpoint"
        console.print(f"no deployment answered {where} at {when}")
        return
    shown = ("endpoint", "role", "model", "digest", "started_at", "stopped_at", "address")
    console.print(output.frame_table(found.to_pandas(), f"deployments answering at {when}", shown))
