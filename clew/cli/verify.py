"""``clew verify``: re-hash every stored blob and name any that is missing or altered."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from clew.cli import output
from clew.cli.output import Format, FormatOption, console, err_console
from clew.domain.blobs import Progress as ProgressCallback
from clew.service import integrity


@contextmanager
def byte_progress(description: str, total: int | None) -> Iterator[ProgressCallback]:
    """A Rich progress bar on stderr (so stdout stays parseable) fed with byte counts."""
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda count: bar.advance(task, count)


def verify(format: FormatOption = Format.table) -> None:
    """Check the database's structure and re-hash every stored blob; exit 1 naming any damaged
    table and any digest that is missing or altered."""
    store = output.local_store("clew verify")
    database = integrity.check_database(store)
    blobs = integrity.inventory(store)
    total = sum(blobs.values())
    with byte_progress(f"verifying {len(blobs)} blobs", total) as progress:
        problems = integrity.verify_blobs(store, progress, blobs)
    if format is Format.json:
        output.print_json(
            {
                "ok": not problems and not database.problems,
                "checked": len(blobs),
                "bytes": total,
                "problems": [{"digest": p.digest, "problem": p.problem} for p in problems],
                "database": {
                    "method": database.method,
                    "first": database.first,
                    "problems": [
                        {"table": p.table, "problem": p.problem} for p in database.problems
                    ],
                },
            }
        )
    else:
        _print_table(database, problems, len(blobs), total)
    if database.problems:
        output.fail(
            f"the database {store.uri} is damaged: {database.describe()}; restore the store "
            "from a backup (clew restore ARCHIVE --uri NEW_STORE)."
        )
    if problems:
        output.fail(
            f"{len(problems)} of {len(blobs)} blobs failed verification; restore them from a "
            "backup or re-log the artifacts."
        )


def _print_table(
    database: integrity.DatabaseCheck,
    problems: list[integrity.BlobProblem],
    blobs: int,
    total: int,
) -> None:
    if database.problems:
        rows = [(p.table or "-", p.problem) for p in database.problems]
        console.print(output.table(["table", "problem"], rows, "database damage"))
    else:
        console.print(f"[green]ok[/green]: the database is intact ({database.method}).")
    if problems:
        rows = [(p.digest, p.problem) for p in problems]
        console.print(output.table(["digest", "problem"], rows, "blobs that failed verification"))
    else:
        summary = f"{blobs} blobs ({total:,} bytes) match their digests."
        console.print(f"[green]ok[/green]: {summary}")
