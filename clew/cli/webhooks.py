"""``clew webhooks add|list|remove|deliveries|deliver``: event delivery, through the SDK."""

from __future__ import annotations

from typing import Annotated

import typer

import clew
from clew.cli import output
from clew.cli.output import Format, FormatOption, console

app = typer.Typer(
    help="Webhooks: registry and monitoring events sent to your URLs, signed.",
    no_args_is_help=True,
)


@app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="Where to POST events (http:// or https://).")],
    model: Annotated[
        str | None, typer.Option("--model", help="Only this model's events (default: all).")
    ] = None,
    kinds: Annotated[
        list[str] | None,
        typer.Option("--kind", "-k", help="Only this event kind, e.g. alias_set (repeatable)."),
    ] = None,
    format: FormatOption = Format.table,
) -> None:
    """Subscribe URL to registry events; prints the signing secret once (admins; audited)."""
    added = clew.add_webhook(url, model=model, kinds=kinds or ())
    if format is Format.json:
        output.print_json(added)
        return
    scope = f"model {added['model']}" if added["model"] else "every model"
    kinds_text = ", ".join(added["kinds"]) or "every kind"
    console.print(f"webhook {added['id']}: {added['url']} gets {kinds_text} events of {scope}.")
    console.print(f"secret (shown once, give it to the receiver): {added['secret']}")


@app.command("list")
def list_webhooks(
    removed: Annotated[bool, typer.Option("--removed", help="Include removed ones.")] = False,
    format: FormatOption = Format.table,
) -> None:
    """Webhook subscriptions, oldest first (never their secrets)."""
    frame = clew.webhooks(removed=removed)
    if format is Format.json:
        output.print_json({"webhooks": output.frame_records(frame)})
    elif frame.empty:
        console.print("no webhooks; add one with `clew webhooks add URL`.")
    else:
        shown = ["id", "url", "model", "kinds", "created_by"]
        console.print(output.frame_table(frame, "webhooks", shown + ["deleted_by"] * removed))


@app.command("remove")
def remove(
    subscription_id: Annotated[str, typer.Argument(help="The id, from `clew webhooks list`.")],
    format: FormatOption = Format.table,
) -> None:
    """Stop a subscription; deliveries not yet sent are cancelled (admins; audited)."""
    removed = clew.remove_webhook(subscription_id)
    if format is Format.json:
        output.print_json(removed)
    else:
        console.print(f"removed webhook {removed['id']} ({removed['url']}).")


@app.command("deliveries")
def deliveries(
    subscription_id: Annotated[
        str | None, typer.Argument(help="Only this subscription's deliveries.")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="pending, delivered, failed or cancelled."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many rows.")] = 100,
    format: FormatOption = Format.table,
) -> None:
    """The delivery log, newest event first: status, attempts, next attempt, last answer."""
    frame = clew.webhook_deliveries(subscription_id, status=status, limit=limit)
    if format is Format.json:
        output.print_json({"deliveries": output.frame_records(frame)})
    elif frame.empty:
        console.print("no deliveries yet.")
    else:
        shown = ["id", "kind", "event_seq", "status", "attempts", "last_status_code", "last_error"]
        console.print(output.frame_table(frame, "deliveries", shown))


@app.command("deliver")
def deliver(
    limit: Annotated[int, typer.Option("--limit", help="Send at most this many.")] = 1000,
    format: FormatOption = Format.table,
) -> None:
    """Queue new events and send what is due now (cron, next to an embedded store)."""
    report = clew.deliver_webhooks(limit)
    if format is Format.json:
        output.print_json(report)
    else:
        console.print(
            f"queued {report['queued']}, delivered {report['delivered']}, "
            f"retrying {report['retrying']}, gave up on {report['gave_up']}."
        )
