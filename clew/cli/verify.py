"""``clew verify``: re-hash every stored blob and name any that is missing or altered.

It reads every stored byte, so it runs next to the data: the SDK's admin facade refuses a
server address in one sentence saying where to run it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
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
from clew.client import admin


@contextmanager
def byte_progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
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
    checked = admin.verify_store(
        lambda blobs, total: byte_progress(f"verifying {blobs} blobs", total)
    )
    database, problems = checked.database, checked.problems
    if format is Format.json:
        output.print_json(
            {
                "ok": not problems and not database.problems,
                "checked": checked.blobs,
                "bytes": checked.bytes,
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
        _print_table(database, problems, checked.blobs, checked.bytes)
    if database.problems:
        output.fail(
            f"the database {checked.uri} is damaged: {database.describe()}; restore the store "
            "from a backup (clew restore ARCHIVE --uri NEW_STORE)."
        )
    if problems:
        output.fail(
            f"{len(problems)} of {checked.blobs} blobs failed verification; restore them from a "
            "backup or re-log the artifacts."
        )


def _print_table(
    database: admin.DatabaseCheck,
    problems: list[admin.BlobProblem],
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
