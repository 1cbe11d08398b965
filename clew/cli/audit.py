"""``clew audit log|verify``: the hash-chained record of every write, and its proof.

Like ``clew verify`` these read the default client's store directly through the audit and
capture services (read-only), since verification belongs next to the data.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer

from clew.cli import output
from clew.cli.output import Format, FormatOption, console
from clew.domain import records
from clew.service import audit, capture, record_check, signed_heads

app = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True)
checkpoint_app = typer.Typer(
    help="Signed checkpoints of the chain head, kept where the database's writers can't.",
    no_args_is_help=True,
)
app.add_typer(checkpoint_app, name="checkpoint")
LOG_COLUMNS = ("seq", "time", "actor", "action", "target")


@app.command("log")
def log(
    target: Annotated[
        str | None,
        typer.Option("--target", "-t", help="Only entries about this, e.g. churn/3 or run:<id>."),
    ] = None,
    actor: Annotated[str | None, typer.Option("--actor", "-a", help="Only this user.")] = None,
    action: Annotated[
        str | None, typer.Option("--action", help="Action prefix, e.g. model. or run.create.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many.")] = 50,
    format: FormatOption = Format.table,
) -> None:
    """Audit entries, newest first."""
    store = output.local_store()
    found = [
        entry_dict(entry)
        for entry in audit.entries(store, target, limit, actor=actor, action=action)
    ]
    if format is Format.json:
        output.print_json({"entries": found})
        return
    if not found:
        console.print("no audit entries match.")
        return
    rows = [
        [e["seq"], e["time"][:19].replace("T", " "), e["actor"], e["action"], e["target"]]
        for e in found
    ]
    console.print(output.table(LOG_COLUMNS, rows, "audit log (newest first)"))


@checkpoint_app.command("export")
def export_checkpoints(
    destination: Annotated[
        str,
        typer.Argument(
            help="A file, or a URI such as s3://audit-bucket/store.jsonl (Object Lock)."
        ),
    ],
    retain_days: Annotated[
        int | None,
        typer.Option(
            "--retain-days",
            min=1,
            help="S3 only: keep the object under Object Lock in compliance mode this many days.",
        ),
    ] = None,
) -> None:
    """Sign the chain head now and write every signed checkpoint to DESTINATION."""
    count = signed_heads.export(output.local_store(), destination, retain_days=retain_days)
    console.print(f"wrote {count} signed checkpoints to {destination}")


@app.command("verify")
def verify(
    against: Annotated[
        str | None,
        typer.Option(
            "--against",
            help="Checkpoints exported earlier (file or URI): prove the chain was only added to.",
        ),
    ] = None,
    format: FormatOption = Format.table,
) -> None:
    """Recompute the hash chain, compare every governance and lineage row with the image the
    chain recorded, and re-check every signed capture batch; exit 1 on any problem."""
    store = output.local_store()
    checked, broken = audit.verify_chain(store)
    rows, row_problems = record_check.verify_records(store)
    signed, checkpoint_problems = (
        signed_heads.verify_against(store, against)
        if against
        else signed_heads.verify_stored(store)
    )
    batches, batch_problems = capture.verify_batches(store)
    problems = [{"batch": p.batch_id, "path": p.path, "reason": p.reason} for p in batch_problems]
    altered = [asdict(problem) for problem in row_problems]
    if format is Format.json:
        output.print_json(
            {
                "ok": broken is None and not problems and not altered and not checkpoint_problems,
                "entries_checked": checked,
                "first_break": {"seq": broken.seq, "reason": broken.reason} if broken else None,
                "rows_checked": rows,
                "row_problems": altered,
                "checkpoints_checked": signed,
                "checkpoint_problems": [asdict(problem) for problem in checkpoint_problems],
                "batches_checked": batches,
                "batch_problems": problems,
            }
        )
    else:
        _print_verification(checked, broken, batches, problems)
        _print_rows(rows, row_problems)
        _print_checkpoints(signed, checkpoint_problems, against)
    if checkpoint_problems:
        first = checkpoint_problems[0]
        output.fail(f"signed checkpoint #{first.seq} no longer matches: {first.reason}.")
    if broken is not None:
        output.fail(f"the audit chain is broken at entry #{broken.seq}: {broken.reason}.")
    if row_problems:
        output.fail(
            f"{len(row_problems)} records differ from the audit chain; the first: "
            f"{row_problems[0].describe()}."
        )
    if problems:
        output.fail(f"{len(problems)} of {batches} capture batches failed verification.")


def _print_checkpoints(
    checked: int, problems: list[signed_heads.CheckpointProblem], against: str | None
) -> None:
    where = f"in {against}" if against else "in the store"
    if not problems:
        console.print(f"[green]ok[/green]: {checked} signed checkpoints {where} match the chain.")
        return
    rows = [(p.seq, output.cell(p.reason)) for p in problems]
    console.print(output.table(["entry", "problem"], rows, f"checkpoints {where} that fail"))


def _print_rows(checked: int, problems: list[record_check.RecordProblem]) -> None:
    if not problems:
        console.print(
            f"[green]ok[/green]: {checked} governance and lineage records match the chain."
        )
        return
    rows = [(p.table, p.key, output.cell(p.reason)) for p in problems]
    console.print(output.table(["table", "row", "problem"], rows, "records that differ"))


def entry_dict(entry: audit.AuditEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "time": records.ms_to_iso(entry.time_ms),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "request_id": entry.request_id,
        "payload_digest": entry.payload_digest,
        "prev_hash": entry.prev_hash,
        "hash": entry.hash,
    }


def _print_verification(
    checked: int,
    broken: audit.ChainBreak | None,
    batches: int,
    problems: list[dict[str, str]],
) -> None:
    if broken is None:
        console.print(f"[green]ok[/green]: {checked} audit entries re-hashed; the chain is intact.")
    else:
        console.print(
            f"[red]broken[/red]: entry #{broken.seq}: {output.cell(broken.reason)} "
            f"({checked} entries before it are intact)"
        )
    if not problems:
        console.print(f"[green]ok[/green]: {batches} capture batches match their signed roots.")
        return
    rows = [(p["batch"], p["path"], p["reason"]) for p in problems]
    console.print(output.table(["batch", "path", "problem"], rows, "capture batches that failed"))
