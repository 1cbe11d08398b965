"""``clew trace PREDICTION_ID``: the thread from one prediction back to its data.

Each step is marked verified (re-hashed, re-derived or signature-checked just now), not
checkable (clew holds nothing to check it against, and says why) or failed (naming the digest
that differs), so an auditor sees which links are proven and which are only recorded. The exit
code tells the three apart for scripts: 0 every step verified, 3 no step failed but some could
not be checked, 1 a step failed (as for any error).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.tree import Tree

import clew
from clew.cli import output
from clew.cli.output import Format, FormatOption, console
from clew.domain.trace import FAILED, NOT_CHECKABLE, VERIFIED, summary

EXIT_CODES = {VERIFIED: 0, NOT_CHECKABLE: 3, FAILED: 1}
MARKS = {
    VERIFIED: "[green]✓[/green]",
    NOT_CHECKABLE: "[yellow]?[/yellow]",
    FAILED: "[red]✗[/red]",
}

LABELS = {
    "prediction": "prediction",
    "model_version": "model version",
    "approvals": "approvals & promotions",
    "training_run": "training run",
    "input_data": "input data",
    "data_source": "data source",
}


def trace(
    prediction_id: Annotated[
        str, typer.Argument(help="A captured prediction id, e.g. 01J...XYZ.0.")
    ],
    format: FormatOption = Format.table,
) -> None:
    """Walk from a prediction to its model version, approvals, training run and data.

    Exit code: 0 every step verified, 3 some step not checkable (none failed), 1 a step failed.
    """
    found = clew.trace(prediction_id.removeprefix("prediction:")).to_dict()
    if format is Format.json:
        output.print_json(found)
    else:
        print_trace(found)
    if found["outcome"] != VERIFIED:
        raise typer.Exit(EXIT_CODES[found["outcome"]])


def print_trace(found: dict[str, Any]) -> None:
    """A Rich tree: one branch per step, marked ✓ verified, ? not checkable or ✗ failed."""
    tree = Tree(f"[bold]trace of prediction {found['prediction_id']}[/bold]")
    for step in found["steps"]:
        mark = MARKS[step["outcome"]]
        label = LABELS.get(step["kind"], step["kind"])
        branch = tree.add(f"{mark} [bold]{label}[/bold]  {output.cell(step['title'])}")
        branch.add(f"[dim]{output.cell(step['reason'])}[/dim]")
        for line in _detail_lines(step["kind"], step["details"]):
            branch.add(output.cell(line))
    console.print(tree)
    colour = {VERIFIED: "green", NOT_CHECKABLE: "yellow", FAILED: "red"}[found["outcome"]]
    line = summary([step["outcome"] for step in found["steps"]])
    why = "" if found["outcome"] == VERIFIED else "; each step says why above"
    console.print(f"[{colour}]{line}[/{colour}]{why}")


def _detail_lines(kind: str, details: dict[str, Any]) -> list[str]:
    if kind == "prediction":
        lines = [
            f"output {details.get('output')!r}, label {details.get('label')!r}",
            f"batch {details.get('batch')}, signed by key {details.get('key_id')}",
        ]
        if details.get("inputs_withheld"):
            lines.append("inputs not captured: the input array was changed after predict")
        return lines
    if kind == "model_version":
        return [f"created by {details.get('created_by')} at {details.get('created_at')}"]
    if kind == "approvals":
        return [_event_line(event) for event in details.get("events", [])]
    if kind == "training_run":
        return _run_lines(details)
    if kind in ("input_data", "data_source"):
        lines = [
            f"produced by {made['run']} ({made['name']}, {made['kind']})"
            for made in details.get("produced_by", [])
        ]
        if details.get("uri"):
            lines.append(f"uri {details['uri']}")
        return lines
    return []


def _event_line(event: dict[str, Any]) -> str:
    alias = f" {event['alias']}" if event.get("alias") else ""
    comment = f": {event['comment']}" if event.get("comment") else ""
    when = (event.get("time") or "")[:19].replace("T", " ")
    return f"{when} {event['kind']}{alias} by {event['actor']}{comment}"


def _run_lines(details: dict[str, Any]) -> list[str]:
    lines = [
        f"by {details.get('user')}, {details.get('status')}, command {details.get('command')}",
        f"params {_pairs(details.get('params') or {})}",
        f"metrics {_pairs(details.get('metrics') or {})}",
    ]
    if details.get("seed") is not None:
        lines.append(f"seed {details['seed']}")
    code = details.get("code") or {}
    if code:
        dirty = " (dirty)" if code.get("dirty") else ""
        lines.append(f"code {code.get('commit')}{dirty} {code.get('permalink') or ''}".rstrip())
    environment = details.get("environment") or {}
    if environment:
        libraries = environment.get("libraries", {})
        shown = ", ".join(
            f"{name} {libraries[name]}"
            for name in ("scikit-learn", "numpy", "pandas", "torch", "xgboost")
            if name in libraries
        )
        lines.append(f"environment python {environment.get('python')}; {shown}")
    return lines


def _pairs(values: dict[str, Any]) -> str:
    return ", ".join(
        f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in sorted(values.items())
    )
