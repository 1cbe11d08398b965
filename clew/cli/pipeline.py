"""``clew pipeline show NAME|RUN_ID``: one pipeline execution drawn as a tree of its steps.

Each step shows its status (✓ finished, ↺ skipped with its outputs reused, ✗ failed), its
parameters, and the artifacts it read and wrote; ``--format json`` prints the same facts.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.tree import Tree

import clew
from clew.cli import output
from clew.cli.output import Format, FormatOption, console

app = typer.Typer(help="Pipelines: executions of @clew.step functions.", no_args_is_help=True)

MARKS = {"FINISHED": "[green]✓[/green]", "FAILED": "[red]✗[/red]", "KILLED": "[red]✗[/red]"}


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="A pipeline name (its newest run) or a run id.")],
    format: FormatOption = Format.table,
) -> None:
    """Draw a pipeline execution: its steps, skipped or run, with their inputs and outputs."""
    found = clew.show_pipeline(ref).to_dict()
    if format is Format.json:
        output.print_json(found)
        return
    tree = Tree(
        f"[bold]pipeline {output.cell(found['name'])}[/bold]  run {found['run_id']}  "
        f"{found['status']}  by {output.cell(found['user'])}"
    )
    for step in found["steps"]:
        _add_step(tree, step)
    console.print(tree)


def _add_step(tree: Tree, step: dict[str, Any]) -> None:
    if step["skipped"]:
        mark, note = "[cyan]↺[/cyan]", f"  [dim]skipped: reused run {step['reused_from']}[/dim]"
    else:
        mark, note = MARKS.get(step["status"], "[yellow]…[/yellow]"), ""
    branch = tree.add(f"{mark} [bold]{output.cell(step['name'])}[/bold]  {step['run_id']}{note}")
    if step["params"]:
        pairs = ", ".join(f"{k}={v}" for k, v in sorted(step["params"].items()))
        branch.add(f"params {output.cell(pairs)}")
    for direction, arrow in (("inputs", "←"), ("outputs", "→")):
        for node in step[direction]:
            branch.add(
                f"{arrow} {node['type']}:{output.cell(node['name'])}  "
                f"[dim]{node['digest'][7:19]}[/dim]"
            )
