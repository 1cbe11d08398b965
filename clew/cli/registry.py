"""The governed registry: models, versions, register, approve/reject/revoke/archive, promote,
rollback and the policy. Each decision command prints the event it appended."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.panel import Panel

import clew
from clew.cli import output
from clew.cli.output import Format, FormatOption, console
from clew.domain.records import RegistryEvent

models_app = typer.Typer(help="Registered models.", no_args_is_help=True)
policy_app = typer.Typer(help="The governance policy (who may approve, what production needs).")

Comment = Annotated[str, typer.Option("--comment", "-m", help="Why (kept in the audit trail).")]
Evidence = Annotated[
    list[str] | None,
    typer.Option(
        "--evidence", "-e", help="Artifact ref relied on, e.g. report:validation (repeatable)."
    ),
]
VersionArgument = Annotated[str, typer.Argument(help="NAME/VERSION or NAME@ALIAS, e.g. churn/3.")]
HISTORY_COLUMNS = ("time", "kind", "version", "alias", "from_version", "actor", "comment")


# --- reading -------------------------------------------------------------------------------


@models_app.command("list")
def list_models(format: FormatOption = Format.table) -> None:
    """Every registered model with its latest version, status and aliases."""
    models = clew.list_model_records()
    if format is Format.json:
        output.print_json({"models": models})
    elif not models:
        console.print("no models registered yet; register one with `clew register RUN NAME`.")
    else:
        console.print(output.records_table(models, "models"))


@models_app.command("show")
def show_model(
    name: Annotated[str, typer.Argument(help="The registered model's name.")],
    format: FormatOption = Format.table,
) -> None:
    """A model, its versions and its history (registrations, decisions, alias moves)."""
    model = clew.get_model(name)
    versions = clew.model_version_records(name)
    history = [event.to_dict() for event in clew.model_history(name)]
    if format is Format.json:
        output.print_json(
            {
                "model": model.to_dict(),
                "versions": versions,
                "history": history,
            }
        )
        return
    facts = model.to_dict()
    lines = [f"[bold]{output.cell(name)}[/bold]  {output.cell(facts['description'])}"]
    for key in ("owner", "risk_tier", "created_by", "created_at", "tags"):
        if facts[key]:
            lines.append(f"{key:<11}{output.cell(facts[key])}")
    console.print(Panel("\n".join(lines), title="model", title_align="left"))
    console.print(output.records_table(versions, "versions", _version_columns()))
    _print_history(history, "history (newest first)")


@models_app.command("history")
def model_history(
    name: Annotated[str, typer.Argument(help="The registered model's name.")],
    alias: Annotated[
        str | None, typer.Option("--alias", "-a", help="Only moves of this alias.")
    ] = None,
    format: FormatOption = Format.table,
) -> None:
    """Alias moves (promotions and rollbacks), newest first."""
    events = output.json_safe(clew.alias_history_records(name, alias))
    if format is Format.json:
        output.print_json({"history": events})
        return
    _print_history(events, f"alias history of {name}" + (f"@{alias}" if alias else ""))


def versions(
    name: Annotated[str, typer.Argument(help="The registered model's name.")],
    format: FormatOption = Format.table,
) -> None:
    """Every version of a model, newest first, with its status and aliases."""
    found = clew.model_version_records(name)
    if format is Format.json:
        output.print_json({"versions": found})
        return
    console.print(output.records_table(found, f"versions of {name}", _version_columns()))


def status(ref: VersionArgument, format: FormatOption = Format.table) -> None:
    """A version's approvals, aliases and whether it meets the production policy (and why not)."""
    facts = clew.version_status(ref)
    if format is Format.json:
        output.print_json(facts)
        return
    ready = facts["meets_production_policy"]
    lines = [
        f"[bold]{facts['ref']}[/bold]  {facts['status']}",
        f"digest     {facts['digest']}",
        f"created    {facts['created_at']} by {output.cell(facts['created_by'])}",
        f"approvals  {facts['approvals']} of {facts['required_approvals']}"
        + (f" ({output.cell(', '.join(facts['approved_by']))})" if facts["approved_by"] else ""),
        f"aliases    {', '.join(facts['aliases']) or '-'}",
        f"production {'[green]allowed[/green]' if ready else '[yellow]not allowed[/yellow]'}"
        f" by policy v{facts['policy_version']}",
    ]
    lines += [f"  - {output.cell(reason)}" for reason in facts["reasons"]]
    lines += [
        f"signature  {s['kind']} by {output.cell(s['actor'])}: {s['state']}"
        + (f" (key {s['key_id'][:19]}...)" if s["key_id"] else "")
        for s in facts.get("signatures", [])
    ]
    console.print(Panel("\n".join(lines), title="version status", title_align="left"))


# --- writing -------------------------------------------------------------------------------


def register(
    source: Annotated[
        str,
        typer.Argument(help="The run that logged the model (run:<id> or <id>) or a model ref."),
    ],
    name: Annotated[str, typer.Argument(help="Registered model name, e.g. churn.")],
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    format: FormatOption = Format.table,
) -> None:
    """Register the next version of NAME from a run's model (or a model artifact ref)."""
    version = clew.register_model(source, name, description=description)
    if format is Format.json:
        output.print_json(version.to_dict())
        return
    console.print(
        f"[green]registered[/green] [bold]{version.ref}[/bold] ({version.digest}) "
        f"by {output.cell(version.created_by)}"
    )


def approve(
    ref: VersionArgument,
    comment: Comment,
    evidence: Evidence = None,
    meaning: Annotated[
        str, typer.Option("--meaning", help="What the signature means (21 CFR Part 11).")
    ] = "approved",
    format: FormatOption = Format.table,
) -> None:
    """Approve a version as the current user (CLEW_USER); the creator may not approve."""
    _report(clew.approve(ref, comment, evidence=evidence or None, meaning=meaning), format)


def reject(
    ref: VersionArgument,
    comment: Comment,
    evidence: Evidence = None,
    format: FormatOption = Format.table,
) -> None:
    """Reject a version; it can never be promoted or loaded."""
    _report(clew.reject(ref, comment, evidence=evidence or None), format)


def revoke(ref: VersionArgument, comment: Comment, format: FormatOption = Format.table) -> None:
    """Revoke an approved version; loading it is refused from now on."""
    _report(clew.revoke(ref, comment), format)


def archive(ref: VersionArgument, comment: Comment, format: FormatOption = Format.table) -> None:
    """Archive a version; it can no longer be promoted."""
    _report(clew.archive(ref, comment), format)


def promote(
    ref: VersionArgument,
    alias: Annotated[str, typer.Argument(help="e.g. production, staging, champion.")],
    comment: Comment = "",
    new_alias: Annotated[
        bool,
        typer.Option(
            "--new-alias",
            help="Create ALIAS on this model; without it, an alias the model never had and the "
            "policy does not list is refused as a likely typo.",
        ),
    ] = False,
    format: FormatOption = Format.table,
) -> None:
    """Point NAME@ALIAS at a version (production aliases need the policy met)."""
    _report(clew.promote(ref, alias, comment, new_alias), format)


def rollback(
    name: Annotated[str, typer.Argument(help="The registered model's name.")],
    alias: Annotated[str, typer.Argument(help="The alias to move back, e.g. production.")],
    comment: Comment = "",
    format: FormatOption = Format.table,
) -> None:
    """Return NAME@ALIAS to the version it pointed at before its latest promotion."""
    _report(clew.rollback(name, alias, comment), format)


@policy_app.command("set")
def set_policy(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="A YAML policy document.")
    ],
    format: FormatOption = Format.table,
) -> None:
    """Store a new policy version; a document with a mistake is refused, the old one stays."""
    number = clew.set_policy(file)
    if format is Format.json:
        output.print_json(clew.get_policy())
        return
    console.print(f"[green]policy v{number} is in force[/green] (from {output.cell(file)})")


@policy_app.command("show")
def show_policy(format: FormatOption = Format.table) -> None:
    """The policy in force (version 0 is the built-in default)."""
    policy = clew.get_policy()
    if format is Format.json:
        output.print_json(policy)
        return
    origin = (
        "built-in default"
        if policy["default"]
        else f"set by {output.cell(policy['set_by'])} at {policy['set_at']}"
    )
    console.print(f"[bold]policy v{policy['version']}[/bold] ({origin}) {policy['digest']}")
    console.print(output.cell(policy["document"].rstrip()))


# --- rendering -----------------------------------------------------------------------------


def _version_columns() -> list[str]:
    return ["version", "status", "approvals", "aliases", "created_at", "created_by", "digest"]


def _report(event: RegistryEvent, format: Format) -> None:
    """One line saying what happened (or the event as JSON)."""
    if format is Format.json:
        output.print_json(event.to_dict())
        return
    target = f"{event.model}/{event.version}"
    if event.alias:
        moved = f"{event.model}@{event.alias} -> {target}"
        origin = f" (was {event.model}/{event.from_version})" if event.from_version else ""
        console.print(f"[green]{event.kind}[/green] {moved}{origin} by {output.cell(event.actor)}")
    else:
        console.print(f"[green]{event.kind}[/green] {target} by {output.cell(event.actor)}")


def _print_history(events: list[dict[str, Any]], title: str) -> None:
    if not events:
        console.print(f"{title}: nothing recorded.")
        return
    rows = [
        [_short_time(event["time"]), *(event.get(k) for k in HISTORY_COLUMNS[1:])]
        for event in events
    ]
    console.print(output.table(HISTORY_COLUMNS, rows, title))


def _short_time(value: str | None) -> str:
    return (value or "")[:19].replace("T", " ")
