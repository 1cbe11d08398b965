"""``clew findings add|list|update|show`` and ``clew review add|status|check``, through the SDK.

Validators record findings against a version and close them; an unresolved high finding
blocks promotion. ``clew review check`` raises ``review_overdue`` events for webhooks; run it
from cron (daily is plenty).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

import clew
from clew.cli import output
from clew.cli.output import Format, FormatOption, console
from clew.domain.findings import Finding, ReviewStatus

app = typer.Typer(
    help="Validation findings (SR 11-7) against model versions.", no_args_is_help=True
)
review_app = typer.Typer(
    help="Model reviews by risk tier: record one, see what is due, raise overdue events.",
    no_args_is_help=True,
)

Ref = Annotated[str, typer.Argument(help="MODEL/VERSION or MODEL@ALIAS, e.g. churn/3.")]
FindingId = Annotated[str, typer.Argument(help="The finding's id, from `clew findings list`.")]
SHOWN = ["id", "ref", "severity", "status", "owner", "due", "description"]


@app.command("add")
def add(
    ref: Ref,
    severity: Annotated[str, typer.Option("--severity", "-s", help="low, medium or high.")],
    description: Annotated[str, typer.Option("--description", "-d", help="What was found.")],
    remediation: Annotated[
        str, typer.Option("--remediation", "-r", help="What must be done about it.")
    ] = "",
    owner: Annotated[
        str | None, typer.Option("--owner", help="Who must remediate (default: model owner).")
    ] = None,
    due: Annotated[str | None, typer.Option("--due", help="Due date, YYYY-MM-DD.")] = None,
    format: FormatOption = Format.table,
) -> None:
    """Record a finding against a version (validators; audited)."""
    found = clew.add_finding(
        ref, severity, description, remediation=remediation, owner=owner, due=due
    )
    _print_finding(found, format, "recorded")


@app.command("list")
def list_findings(
    model: Annotated[str | None, typer.Argument(help="Only this model's findings.")] = None,
    version: Annotated[int | None, typer.Option("--version", help="Only this version.")] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="open, remediated, accepted, closed or unresolved."),
    ] = None,
    format: FormatOption = Format.table,
) -> None:
    """Findings, newest first."""
    frame = clew.findings(model, version=version, status=status)
    if format is Format.json:
        output.print_json({"findings": output.frame_records(frame)})
    elif frame.empty:
        console.print("no findings; record one with `clew findings add REF -s high -d ...`.")
    else:
        console.print(output.frame_table(frame, "findings", SHOWN))


@app.command("show")
def show(finding_id: FindingId, format: FormatOption = Format.table) -> None:
    """One finding with every field."""
    _print_finding(clew.get_finding(finding_id), format, None)


@app.command("update")
def update(
    finding_id: FindingId,
    note: Annotated[str, typer.Option("--note", "-n", help="Why (kept in the audit trail).")],
    status: Annotated[
        str | None, typer.Option("--status", help="open, remediated, accepted or closed.")
    ] = None,
    severity: Annotated[str | None, typer.Option("--severity", "-s")] = None,
    remediation: Annotated[str | None, typer.Option("--remediation", "-r")] = None,
    owner: Annotated[str | None, typer.Option("--owner")] = None,
    due: Annotated[str | None, typer.Option("--due", help="YYYY-MM-DD.")] = None,
    format: FormatOption = Format.table,
) -> None:
    """Change a finding's status or details (owners may mark it remediated; validators the
    rest)."""
    changes: dict[str, Any] = {
        key: value
        for key, value in (
            ("status", status),
            ("severity", severity),
            ("remediation", remediation),
            ("owner", owner),
            ("due", due),
        )
        if value is not None
    }
    _print_finding(clew.update_finding(finding_id, note, **changes), format, "updated")


@review_app.command("add")
def review_add(
    ref: Ref,
    comment: Annotated[str, typer.Option("--comment", "-c", help="What the review covered.")],
    format: FormatOption = Format.table,
) -> None:
    """Record that you reviewed (validated) a version (validators; audited)."""
    done = clew.review_model(ref, comment)
    if format is Format.json:
        output.print_json(done.to_dict())
    else:
        console.print(f"reviewed {done.model}/{done.version} as {done.reviewed_by}.")


@review_app.command("status")
def review_status(
    model: Annotated[str | None, typer.Argument(help="One model (default: all).")] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="As at the end of this day, YYYY-MM-DD.")
    ] = None,
    format: FormatOption = Format.table,
) -> None:
    """Risk tier, cadence, last review, next due date and state per model."""
    if model is not None:
        _print_status(clew.review_status(model, as_of), format)
        return
    frame = clew.review_statuses(as_of)
    if format is Format.json:
        output.print_json({"reviews": output.frame_records(frame)})
    elif frame.empty:
        console.print("no models registered.")
    else:
        shown = ["model", "risk_tier", "last_reviewed", "next_due", "state", "open_findings"]
        console.print(output.frame_table(frame, "reviews", shown))


@review_app.command("due")
def review_due(
    model: Annotated[str, typer.Argument(help="The registered model's name.")],
    due: Annotated[str, typer.Argument(help="The day the next review is due, YYYY-MM-DD.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why this date.")],
    format: FormatOption = Format.table,
) -> None:
    """Set the day a model's next review is due, until it is reviewed (validators; audited)."""
    event = clew.set_review_due(model, due, reason)
    if format is Format.json:
        output.print_json(event.to_dict())
    else:
        console.print(f"{model}'s next review is due {due} (set by {event.actor}).")


@review_app.command("check")
def review_check(format: FormatOption = Format.table) -> None:
    """Raise a review_overdue event (webhooks deliver it) for each overdue model, once per
    due date."""
    raised = clew.raise_overdue_reviews()
    if format is Format.json:
        output.print_json({"raised": [event.to_dict() for event in raised]})
        return
    for event in raised:
        console.print(f"overdue: {event.comment}")
    console.print(f"{len(raised)} overdue review event(s) raised.")


def _print_finding(found: Finding, format: Format, done: str | None) -> None:
    data = found.to_dict()
    if format is Format.json:
        output.print_json(data)
        return
    if done:
        console.print(f"{done} finding {found.id} on {found.ref}.")
    keys = [*SHOWN[1:], "remediation", "created_by", "updated_by", "note"]
    console.print(output.key_values({key: data[key] for key in keys}, f"finding {found.id}"))


def _print_status(status: ReviewStatus, format: Format) -> None:
    data = status.to_dict()
    if format is Format.json:
        output.print_json(data)
        return
    last = status.last_review
    shown = {
        "model": status.model,
        "risk tier": status.risk_tier,
        "cadence (days)": status.cadence_days,
        "last review": f"{last.model}/{last.version} by {last.reviewed_by}" if last else None,
        "next due": data["next_due"],
        "state": status.state,
        "unresolved findings": status.open_findings,
        "blocking findings": status.blocking_findings,
    }
    console.print(output.key_values(shown, f"review status of {status.model}"))
    for line in status.material_changes:
        console.print(f"material change: {line}")
