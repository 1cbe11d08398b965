"""``clew backup|restore|gc`` and ``clew db upgrade``: operating a store, next to its data.

Like ``clew admin`` these work on the store directly (``--uri``/``--artifacts``, default
``CLEW_URI``/``CLEW_ARTIFACTS``/``CLEW_HOME``) through the SDK's admin facade, never through
a server: a backup must see the database and blob store themselves, and gc must hold the
store's write lock while it decides. Given a server address, the facade says where to run them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clew.cli import output
from clew.cli.output import Format, FormatOption, console
from clew.cli.server import ArtifactsOption, UriOption
from clew.client import admin

db_app = typer.Typer(help="The metadata database's schema.", no_args_is_help=True)


def backup(
    destination: Annotated[Path, typer.Argument(help="The archive to write (must not exist).")],
    uri: UriOption = None,
    artifacts: ArtifactsOption = None,
    compression: Annotated[
        str,
        typer.Option(
            "--compression", help="auto (zstd if installed, else gzip), zstd, gzip, none."
        ),
    ] = "auto",
    format: FormatOption = Format.table,
) -> None:
    """Write metadata, referenced blobs, capture files and keys to one verified archive."""
    made = admin.backup(destination, compression, uri, artifacts)
    summary = made.summary
    if format is Format.json:
        output.print_json(
            {
                "path": str(summary.path),
                "digest": summary.digest,
                "size": summary.size,
                "compression": summary.compression,
                "blobs": summary.blobs,
                "blob_bytes": summary.blob_bytes,
                "capture_files": summary.capture_files,
                "rows": summary.rows,
                "audit_head": summary.audit_head,
            }
        )
        return
    console.print(
        f"[green]backed up[/green] {output.cell(made.uri)} to {output.cell(summary.path)}: "
        f"{sum(summary.rows.values()):,} rows, {summary.blobs} blobs ({summary.blob_bytes:,} "
        f"bytes), {summary.capture_files} capture files; {summary.size:,} bytes "
        f"({summary.compression})"
    )
    console.print(f"archive digest {summary.digest}: keep it apart from the archive")


def restore(
    archive: Annotated[Path, typer.Argument(help="A backup written by clew backup.")],
    uri: UriOption = None,
    artifacts: ArtifactsOption = None,
    format: FormatOption = Format.table,
) -> None:
    """Restore a backup into an empty store, then verify blobs, audit chain and counts."""
    summary = admin.restore(archive, uri, artifacts)
    if format is Format.json:
        output.print_json(
            {
                "uri": summary.uri,
                "blobs": summary.blobs,
                "capture_files": summary.capture_files,
                "rows": summary.rows,
                "audit_entries": summary.audit_entries,
                "audit_head": summary.audit_head,
                "verified": True,
            }
        )
        return
    console.print(
        f"[green]restored[/green] {output.cell(archive)} into {output.cell(summary.uri)}: "
        f"{sum(summary.rows.values()):,} rows, {summary.blobs} blobs, "
        f"{summary.capture_files} capture files"
    )
    console.print(
        f"[green]verified[/green]: every blob re-hashed, {summary.audit_entries} audit entries "
        "chain to the backed-up head, recorded digests and row counts match"
    )


def gc(
    yes: Annotated[
        bool, typer.Option("--yes", help="Delete; without it, only show what would go.")
    ] = False,
    grace: Annotated[
        int,
        typer.Option(
            "--grace-minutes",
            min=0,
            help="Spare unreferenced blobs and capture files younger than this (uploads and "
            "capture batches still committing).",
        ),
    ] = admin.DEFAULT_GRACE_MINUTES,
    uri: UriOption = None,
    artifacts: ArtifactsOption = None,
    format: FormatOption = Format.table,
) -> None:
    """Delete blobs no record points at, capture files no batch names, temp files of
    interrupted writes and expired idempotency keys (a dry run unless --yes); referenced
    blobs and recorded capture files never go."""
    report = admin.collect_garbage(yes, grace, uri, artifacts)
    if format is Format.json:
        output.print_json(
            {
                "deleted": report.deleted,
                "orphans": [
                    {"digest": o.digest, "size": o.size, "modified_ms": o.modified_ms}
                    for o in report.orphans
                ],
                "bytes": report.bytes,
                "referenced": report.referenced,
                "young": len(report.young),
                "audit_seq": report.audit_seq,
                "expired_idempotency_keys": report.expired_keys,
                "stale_temp_files": [str(path) for path in report.stale_files],
                "stale_uploads": report.stale_uploads,
                "orphan_capture_files": [
                    {"path": o.relative, "size": o.size, "modified_ms": o.modified_ms}
                    for o in report.orphan_captures
                ],
                "capture_bytes": report.capture_bytes,
                "young_capture_files": len(report.young_captures),
                "captures_audit_seq": report.captures_audit_seq,
            }
        )
        return
    if report.orphans:
        rows = [(o.digest, o.size) for o in report.orphans]
        title = "deleted blobs" if report.deleted else "blobs gc would delete"
        console.print(output.table(["digest", "bytes"], rows, title))
    verb = "deleted" if report.deleted else "would delete"
    console.print(
        f"{verb} {len(report.orphans)} unreferenced blobs ({report.bytes:,} bytes); kept "
        f"{report.referenced} referenced and {len(report.young)} younger than {grace} minutes"
    )
    if report.orphan_captures or report.young_captures:
        _print_capture_orphans(report, yes, grace)
    if report.expired_keys:
        key_verb = "deleted" if yes else "would delete"
        console.print(f"{key_verb} {report.expired_keys} expired idempotency keys (over a day old)")
    if report.stale_files:
        file_verb = "deleted" if yes else "would delete"
        console.print(
            f"{file_verb} {len(report.stale_files)} temp files left by interrupted writes"
        )
    if report.stale_uploads:
        upload_verb = "aborted" if yes else "would abort"
        console.print(
            f"{upload_verb} {len(report.stale_uploads)} multipart uploads left by interrupted "
            "blob uploads"
        )
    pending = report.orphans or report.orphan_captures or report.expired_keys
    if (pending or report.stale_files or report.stale_uploads) and not yes:
        console.print("run again with --yes to delete them")


def _print_capture_orphans(report: admin.GcReport, yes: bool, grace: int) -> None:
    if report.orphan_captures:
        rows = [(o.relative, o.size) for o in report.orphan_captures]
        title = "deleted capture files" if yes else "capture files gc would delete"
        console.print(output.table(["path", "bytes"], rows, title))
    verb = "deleted" if yes else "would delete"
    console.print(
        f"{verb} {len(report.orphan_captures)} capture files no batch names "
        f"({report.capture_bytes:,} bytes); kept {len(report.young_captures)} younger than "
        f"{grace} minutes"
    )


@db_app.command("upgrade")
def upgrade(
    uri: UriOption = None,
    artifacts: ArtifactsOption = None,
    create: Annotated[
        bool,
        typer.Option(
            "--create",
            help="Create a new store where there is none (a path or database holding no "
            "store is otherwise refused as a typo), or an empty database where blobs, "
            "captures or keys are found without one (a lost database; restore it from a "
            "backup instead).",
        ),
    ] = False,
) -> None:
    """Apply schema migrations up to this clew's head; a no-op when already there."""
    upgraded = admin.upgrade(uri, artifacts, create)
    console.print(
        f"[green]ok[/green]: {output.cell(upgraded.uri)} is at schema revision "
        f"{upgraded.revision} (this clew's head is {admin.SCHEMA_HEAD})"
    )
    for what, holder, names in upgraded.look_alikes:
        console.print(
            f"[yellow]note[/yellow]: {what} {', '.join(map(repr, names))} "
            f"{'look' if len(names) > 1 else 'looks'} like {what} {holder!r} (same name but for "
            "case); both keep working, none was merged; no new look-alike can be created. "
            "Archive or stop using the one you do not mean."
        )
