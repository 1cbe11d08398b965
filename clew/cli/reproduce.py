"""``clew reproduce MODEL@ALIAS|MODEL/N``: re-run a version and sign the verdict.

Each step prints as it finishes (plan, checkout, inputs, run, environment, compare, report);
the exit code is 0 when the version reproduced (bit-identical or within tolerance) and 2 when
it did not, so CI can gate on it; a refusal (commit gone, diff not kept, input changed) is one
sentence and exit 1, like any error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

import clew
from clew.cli import output
from clew.cli.output import Format, FormatOption, console

NOT_REPRODUCED_EXIT = 2


def reproduce(
    ref: Annotated[str, typer.Argument(help="The version: churn@production or churn/3.")],
    repository: Annotated[
        Path | None,
        typer.Option(help="A clone holding the recorded commit (default: the current one)."),
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="Largest allowed difference of each recorded metric.")
    ] = 0.0,
    holdout: Annotated[
        str | None,
        typer.Option(help="Rows to compare predictions on: a CSV/Parquet path or a dataset ref."),
    ] = None,
    min_agreement: Annotated[
        float, typer.Option(help="Share of holdout predictions that must agree (0 to 1).")
    ] = 0.99,
    build_env: Annotated[
        bool, typer.Option(help="Build the recorded library versions in a venv with uv first.")
    ] = False,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds the recorded command may run.")
    ] = None,
    format: FormatOption = Format.table,
) -> None:
    """Re-run a version from its recorded commit, inputs and command; sign the verdict.

    Exit code: 0 reproduced (bit-identical or within tolerance), 2 not reproduced.
    """
    quiet = format is Format.json
    report = clew.reproduce(
        ref,
        repository=repository,
        tolerance=tolerance,
        holdout=holdout,
        min_agreement=min_agreement,
        build_env=build_env,
        timeout=timeout,
        progress=None if quiet else _step,
    )
    if quiet:
        output.print_json(report.to_dict())
    else:
        _print_report(report.to_dict())
    if not report.reproduced:
        raise typer.Exit(NOT_REPRODUCED_EXIT)


def _step(step: str, message: str) -> None:
    console.print(f"[green]✓[/green] [bold]{step}[/bold]  {output.cell(message)}")


def _print_report(report: dict[str, Any]) -> None:
    body = report["body"]
    for reason in body["reasons"]:
        console.print(f"  [dim]{output.cell(reason)}[/dim]")
    differences = body["findings"].get("environment_differences") or []
    if differences:
        rows = [(d["name"], d["recorded"], d["now"]) for d in differences]
        console.print(output.table(["library", "recorded", "re-run"], rows, "environment"))
    colour = "red" if body["verdict"] == "not-reproduced" else "green"
    console.print(
        f"[{colour}]{body['verdict']}[/{colour}]: report artifact:{report['artifact_id']} "
        f"({report['name']}), signed by key {report['key_id']}"
    )
