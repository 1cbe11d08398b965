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
    models: Annotated[
        bool,
        typer.Option(
            "--models/--no-models",
            help="Also import logged and registered models, versions and aliases.",
        ),
    ] = True,
    format: FormatOption = Format.table,
) -> None:
    """Import every experiment, run and registered model of an MLflow store; running it
    again adds nothing. Versions are registered, never approved; aliases the policy does not
    let you set are named with what to do."""
    result = clew.get_client().imports.mlflow(tracking_uri, artifacts=artifacts, models=models)
    if format is Format.json:
        output.print_json(result.to_dict())
        return
    console.print(
        f"imported {result.imported} runs ({result.metric_points:,} metric points, "
        f"{result.artifacts} artifacts); {result.already} were imported before."
    )
    if result.versions or result.logged_models:
        console.print(
            f"registered {result.versions_imported} model versions ({result.logged_models} "
            f"logged model{'s' if result.logged_models != 1 else ''}); "
            f"{result.versions_already} were imported before."
        )
    for alias in result.aliases:
        console.print(f"[green]alias set:[/] {alias}")
    for reason in result.skipped:
        console.print(f"[yellow]skipped:[/] {reason}")
    for note in result.notes:
        console.print(f"[yellow]{'not set' if ' not set: ' in note else 'note'}:[/] {note}")


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
