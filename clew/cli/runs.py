"""``clew runs list|show|search``: what was tried, with which params and metrics."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

import clew
from clew.cli import output
from clew.cli.output import Format, FormatOption, console, err_console
from clew.domain import records
from clew.errors import UnknownKeyWarning

app = typer.Typer(help="List, show and search experiment runs.", no_args_is_help=True)

TABLE_METRICS = 6


@app.command("list")
def list_runs(
    experiment: Annotated[
        list[str] | None,
        typer.Option("--experiment", "-e", help="Only runs of this experiment (repeatable)."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 20,
    format: FormatOption = Format.table,
) -> None:
    """The newest runs first."""
    found = clew.search_run_records(None, None, limit, experiment or None)
    _render_runs(found.runs, format, "runs")


@app.command("search")
def search(
    filter: Annotated[
        str,
        typer.Argument(
            help="e.g. \"metrics.auc > 0.8 and params.model = 'rf' and tags.team = 'risk'\""
        ),
    ],
    order_by: Annotated[
        list[str] | None,
        typer.Option(
            "--order-by", "-o", help="'<field> [ASC|DESC]', e.g. 'metrics.auc DESC' (repeatable)."
        ),
    ] = None,
    max_results: Annotated[int, typer.Option("--max-results", "-n", min=1)] = 100,
    experiment: Annotated[
        list[str] | None, typer.Option("--experiment", "-e", help="Repeatable.")
    ] = None,
    page_token: Annotated[
        str | None,
        typer.Option("--page-token", help="The token a previous page printed, for the next page."),
    ] = None,
    format: FormatOption = Format.table,
) -> None:
    """Runs matching a filter (see docs/runs.md for the language), a page at a time."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnknownKeyWarning)
        page = clew.search_run_records(
            filter, order_by or None, max_results, experiment or None, page_token
        )
    for warning in caught:
        if issubclass(warning.category, UnknownKeyWarning):
            err_console.print(f"[yellow]warning:[/yellow] {escape(str(warning.message))}")
        else:
            warnings.showwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    if format is Format.json:
        output.print_json({"runs": listed_runs(page.runs), "next_page_token": page.next_page_token})
        return
    _render_runs(page.runs, format, f"runs matching {filter}")
    if page.next_page_token is not None:
        err_console.print(f"more runs: repeat the command with --page-token {page.next_page_token}")


@app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="A run id, with or without the 'run:' prefix.")],
    format: FormatOption = Format.table,
) -> None:
    """Everything about one run: params, metrics, tags, code, environment, inputs, outputs."""
    details = run_details(run_id.removeprefix("run:"))
    if format is Format.json:
        output.print_json(details)
        return
    _print_details(details)


# --- lists ---------------------------------------------------------------------------------


def listed_runs(found: Sequence[records.RunRecord]) -> list[dict[str, Any]]:
    """Runs as the listings show them (docs/cli.md): the run's own fields, then its params,
    metrics and tags nested.

    A NaN metric is left out, as it always was when the listing was drawn from a DataFrame
    (``clew runs show`` reports it faithfully).
    """
    return [
        {
            **run.listed_fields(records.ms_to_iso),
            "params": dict(run.params),
            "metrics": {key: value for key, value in run.metrics.items() if not math.isnan(value)},
            "tags": dict(run.tags),
        }
        for run in found
    ]


def _render_runs(found: Sequence[records.RunRecord], format: Format, title: str) -> None:
    runs = listed_runs(found)
    if format is Format.json:
        output.print_json({"runs": runs})
        return
    if not runs:
        console.print("no runs found.")
        return
    metric_keys = sorted({key for run in runs for key in run["metrics"]})[:TABLE_METRICS]
    columns = ["run_id", "experiment", "name", "kind", "status", "user", "started"]
    rows = [
        [
            run["run_id"],
            run["experiment"],
            run["name"],
            run["kind"],
            _status(run["status"]),
            run["user"],
            (run["start_time"] or "").replace("T", " ")[:19],
            *(run["metrics"].get(key) for key in metric_keys),
        ]
        for run in runs
    ]
    console.print(output.table([*columns, *metric_keys], rows, title))


def _status(status: str) -> Text:
    colour = {"FINISHED": "green", "FAILED": "red", "KILLED": "yellow"}.get(status, "cyan")
    return Text(status, style=colour)


# --- one run -------------------------------------------------------------------------------


def run_details(run_id: str) -> dict[str, Any]:
    """A run with its code revision, environment, inputs and outputs, as plain data."""
    run = clew.get_run(run_id)
    upstream = clew.lineage.upstream(f"run:{run.id}", max_depth=1)
    downstream = clew.lineage.downstream(f"run:{run.id}", max_depth=1)
    code = upstream.nodes.get(run.code_artifact_id or "")
    environment = upstream.nodes.get(run.environment_artifact_id or "")
    captured = {run.code_artifact_id, run.environment_artifact_id}
    inputs = [
        _artifact(upstream.nodes[edge.source_id])
        for edge in upstream.edges
        if edge.association == records.CONTRIBUTED_TO and edge.source_id not in captured
    ]
    outputs = [
        _artifact(downstream.nodes[edge.destination_id])
        for edge in downstream.edges
        if edge.association == records.PRODUCED
    ]
    return {
        "run": run.to_dict(),
        "code": {"ref": code.ref, "digest": code.digest, **code.properties} if code else None,
        "environment": (
            {"ref": environment.ref, "digest": environment.digest, **environment.properties}
            if environment
            else None
        ),
        "inputs": sorted(inputs, key=lambda a: (a["type"], a["name"])),
        "outputs": sorted(outputs, key=lambda a: (a["type"], a["name"])),
    }


def _artifact(node: Any) -> dict[str, Any]:
    return {
        "id": node.id,
        "type": node.type,
        "name": node.name,
        "ref": node.ref,
        "digest": node.digest,
    }


def _print_details(details: dict[str, Any]) -> None:
    run = details["run"]
    lines = [
        f"[bold]{output.cell(run['experiment'])} / {output.cell(run['name'])}[/bold]"
        f"  {_status(run['status']).markup}  ({run['kind']})",
        f"id       {run['id']}",
        f"user     {output.cell(run['user'])}",
        f"started  {run['start_time']}   ended {run['end_time'] or '-'}",
    ]
    if run["command"]:
        lines.append(f"command  {output.cell(run['command'])}")
    if run["seed"] is not None:
        lines.append(f"seed     {run['seed']}")
    if run["parent_id"]:
        lines.append(f"parent   run:{run['parent_id']}")
    console.print(Panel("\n".join(lines), title="run", title_align="left"))
    for group in ("params", "metrics", "tags"):
        if run[group]:
            console.print(output.key_values(run[group], group))
    if details["code"]:
        console.print(_code_table(details["code"]))
    if details["environment"]:
        console.print(_environment_table(details["environment"]))
    for direction in ("inputs", "outputs"):
        if details[direction]:
            rows = [(a["type"], a["name"], a["ref"]) for a in details[direction]]
            console.print(output.table(["type", "name", "ref"], rows, direction))


def _code_table(code: dict[str, Any]) -> Any:
    keys = ("commit", "branch", "dirty", "script", "permalink", "remote", "diff_digest")
    return output.key_values(
        {key: code.get(key) for key in keys if code.get(key) is not None}, "code revision"
    )


def _environment_table(environment: dict[str, Any]) -> Any:
    facts = {key: environment.get(key) for key in ("python", "platform")}
    facts.update(environment.get("libraries") or {})
    return output.key_values(facts, "environment")
