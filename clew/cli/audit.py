"""``clew audit log|verify|checkpoint export``: the hash-chained record of every write, and
its proof.

They go through the SDK (the default client), so they work on a store directory, a database
URL or a clew server alike; the server runs the checks next to its store.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer

import clew
from clew.cli import output
from clew.cli.output import Format, FormatOption, console
from clew.domain import records
from clew.domain.captures import BatchProblem

if TYPE_CHECKING:
    from clew.domain.audit import AuditEntry, ChainBreak, CheckpointProblem, RecordProblem

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
    found = [
        entry_dict(entry)
        for entry in clew.get_client().audit_log(target, limit, actor=actor, action=action)
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
    count = clew.get_client().export_checkpoints(destination, retain_days)
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
    report = clew.get_client().verify_audit(against)
    problems = [_batch_dict(problem) for problem in report.batch_problems]
    if format is Format.json:
        broken = report.first_break
        output.print_json(
            {
                "ok": report.ok,
                "entries_checked": report.entries_checked,
                "first_break": {"seq": broken.seq, "reason": broken.reason} if broken else None,
                "rows_checked": report.rows_checked,
                "row_problems": [asdict(problem) for problem in report.row_problems],
                "checkpoints_checked": report.checkpoints_checked,
                "checkpoint_problems": [asdict(p) for p in report.checkpoint_problems],
                "batches_checked": report.batches_checked,
                "batch_problems": problems,
            }
        )
    else:
        _print_verification(
            report.entries_checked, report.first_break, report.batches_checked, problems
        )
        _print_rows(report.rows_checked, report.row_problems)
        _print_checkpoints(report.checkpoints_checked, report.checkpoint_problems, against)
    failure = report.failure()
    if failure is not None:
        output.fail(failure)


def _batch_dict(problem: BatchProblem) -> dict[str, str]:
    return {"batch": problem.batch_id, "path": problem.path, "reason": problem.reason}


def _print_checkpoints(
    checked: int, problems: list[CheckpointProblem], against: str | None
) -> None:
    where = f"in {against}" if against else "in the store"
    if not problems:
        console.print(f"[green]ok[/green]: {checked} signed checkpoints {where} match the chain.")
        return
    rows = [(p.seq, output.cell(p.reason)) for p in problems]
    console.print(output.table(["entry", "problem"], rows, f"checkpoints {where} that fail"))


def _print_rows(checked: int, problems: list[RecordProblem]) -> None:
    if not problems:
        console.print(
            f"[green]ok[/green]: {checked} governance and lineage records match the chain."
        )
        return
    rows = [(p.table, p.key, output.cell(p.reason)) for p in problems]
    console.print(output.table(["table", "row", "problem"], rows, "records that differ"))


def entry_dict(entry: AuditEntry) -> dict[str, Any]:
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
    broken: ChainBreak | None,
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
