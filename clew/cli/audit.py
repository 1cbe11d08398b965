"""``clew audit log|verify``: the hash-chained record of every write, and its proof.

Like ``clew verify`` these read the default client's store directly through the audit and
capture services (read-only), since verification belongs next to the data.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from clew.cli import output
from clew.cli.output import Format, FormatOption, console
from clew.domain import records
from clew.service import audit, capture, record_check

app = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True)
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


@app.command("verify")
def verify(format: FormatOption = Format.table) -> None:
    """Recompute the hash chain, compare every governance and lineage row with the image the
    chain recorded, and re-check every signed capture batch; exit 1 on any problem."""
    store = output.local_store()
    checked, broken = audit.verify_chain(store)
    rows, row_problems = record_check.verify_records(store)
    batches, batch_problems = capture.verify_batches(store)
    problems = [{"batch": p.batch_id, "path": p.path, "reason": p.reason} for p in batch_problems]
    altered = [_problem_dict(problem) for problem in row_problems]
    if format is Format.json:
        output.print_json(
            {
                "ok": broken is None and not problems and not altered,
                "entries_checked": checked,
                "first_break": {"seq": broken.seq, "reason": broken.reason} if broken else None,
                "rows_checked": rows,
                "row_problems": altered,
                "batches_checked": batches,
                "batch_problems": problems,
            }
        )
    else:
        _print_verification(checked, broken, batches, problems)
        _print_rows(rows, row_problems)
    if broken is not None:
        output.fail(f"the audit chain is broken at entry #{broken.seq}: {broken.reason}.")
    if row_problems:
        output.fail(
            f"{len(row_problems)} records differ from the audit chain; the first: "
            f"{row_problems[0].describe()}."
        )
    if problems:
        output.fail(f"{len(problems)} of {batches} capture batches failed verification.")


def _problem_dict(problem: record_check.RecordProblem) -> dict[str, Any]:
    return {
        "table": problem.table,
        "key": problem.key,
        "seq": problem.seq,
        "reason": problem.reason,
    }


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
