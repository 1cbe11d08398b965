"""``clew import mlflow`` and ``clew import dvc``: history from other tools, through the SDK."""

from __future__ import annotations

from typing import Annotated

import typer

import clew
from clew.cli import output
from clew.cli.output import Format, FormatOption, console

app = typer.Typer(
    help="Bring history from other tools (MLflow, DVC) into clew's lineage.",
    no_args_is_help=True,
)


@app.command("mlflow")
def mlflow(
    tracking_uri: Annotated[
        str,
        typer.Option(
            "--tracking-uri", help="The MLflow store: sqlite:///mlflow.db, http://host:5000..."
        ),
    ],
    artifacts: Annotated[
        bool, typer.Option("--artifacts/--no-artifacts", help="Hash run artifacts into clew.")
    ] = True,
    format: FormatOption = Format.table,
) -> None:
    """Import every experiment and run of an MLflow store; running it again adds nothing."""
    result = clew.get_client().imports.mlflow(tracking_uri, artifacts=artifacts)
    if format is Format.json:
        output.print_json(result.to_dict())
        return
    console.print(
        f"imported {result.imported} runs ({result.metric_points:,} metric points, "
        f"{result.artifacts} artifacts); {result.already} were imported before."
    )
    for reason in result.skipped:
        console.print(f"[yellow]skipped:[/] {reason}")


@app.command("dvc")
def dvc(
    path: Annotated[str, typer.Argument(help="The DVC project's directory.")] = ".",
    format: FormatOption = Format.table,
) -> None:
    """Import a DVC project's stages (dvc.lock) as runs; again after `dvc repro` adds only
    the stages that changed."""
    result = clew.get_client().imports.dvc(path)
    if format is Format.json:
        output.print_json(result.to_dict())
        return
    console.print(
        f"imported {result.imported} stages ({result.artifacts} new artifacts); "
        f"{result.already} unchanged since the last import."
    )
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
