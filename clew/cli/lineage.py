"""``clew lineage REF``: what made this (upstream) or what this made (downstream)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

import clew
from clew.cli import output
from clew.cli.output import console
from clew.domain.lineage import LineageResult
from clew.domain.prov import to_prov_json


class LineageFormat(StrEnum):
    table = "table"
    json = "json"
    dot = "dot"
    prov_json = "prov-json"


SHAPES = {"run": "box", "artifact": "ellipse", "context": "folder"}


def lineage(
    ref: Annotated[
        str,
        typer.Argument(help="churn/3, churn@production, run:<id>, dataset:<name>, sha256:<hex>..."),
    ],
    up: Annotated[
        bool,
        typer.Option(
            "--up/--down", help="Walk upstream (what made it) or downstream (what it made)."
        ),
    ] = True,
    depth: Annotated[
        int, typer.Option("--depth", "-d", min=1, max=100, help="Hops to follow.")
    ] = 10,
    types: Annotated[
        list[str] | None,
        typer.Option("--type", "-t", help="Only edges reaching nodes of this type (repeatable)."),
    ] = None,
    format: Annotated[
        LineageFormat,
        typer.Option(
            "--format",
            "-f",
            help="table, json, dot (Graphviz DOT text) or prov-json (W3C PROV-JSON).",
        ),
    ] = LineageFormat.table,
) -> None:
    """Walk the lineage graph from REF."""
    walk = clew.lineage.upstream if up else clew.lineage.downstream
    result = walk(ref, max_depth=depth, types=types or None)
    if format is LineageFormat.json:
        output.print_json(result.to_dict())
    elif format is LineageFormat.prov_json:
        output.print_json(to_prov_json(result))
    elif format is LineageFormat.dot:
        typer.echo(to_dot(result))
    else:
        _print_table(result)


def _print_table(result: LineageResult) -> None:
    rows = [
        (row["depth"], row["source"], row["association"], row["destination"])
        for row in result.rows()
    ]
    title = f"{result.direction} of {result.start.ref}"
    if not rows:
        console.print(f"{title}: nothing recorded.")
        return
    console.print(output.table(["depth", "source", "association", "destination"], rows, title))
    if result.truncated:
        console.print("[yellow]the walk stopped at its edge limit; use a smaller --depth.[/]")


def to_dot(result: LineageResult) -> str:
    """Graphviz DOT text (render with ``dot -Tsvg``); edges point the way data flowed."""
    lines = [
        "digraph lineage {",
        "  rankdir=LR;",
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    used = {result.start.id}
    for edge in result.edges:
        used.update((edge.source_id, edge.destination_id))
    for node_id in sorted(used):
        node = result.nodes[node_id]
        attributes = {
            "label": f"{node.type}\\n{node.name}",
            "shape": SHAPES.get(node.kind, "ellipse"),
            "tooltip": node.ref,
        }
        if node.id == result.start.id:
            attributes["style"] = "bold"
        lines.append(f"  {_quote(node_id)} [{_attributes(attributes)}];")
    for edge in result.edges:
        label = _attributes({"label": edge.association})
        lines.append(f"  {_quote(edge.source_id)} -> {_quote(edge.destination_id)} [{label}];")
    lines.append("}")
    return "\n".join(lines)


def _attributes(values: dict[str, Any]) -> str:
    return ", ".join(f"{key}={_quote(str(value))}" for key, value in values.items())


def _quote(text: str) -> str:
    """A DOT quoted string; only '"' needs escaping ('\\n' stays a DOT line break)."""
    return '"' + text.replace('"', '\\"') + '"'
