"""Garbage collection of blobs that no record points at (``clew gc``).

Blobs are written before the metadata that points at them commits, so an upload that failed
half-way, or a client that died between storing bytes and recording them, leaves orphans.
A blob is *referenced* when any record could need it: a ``blobs`` row (every blob an artifact
needs is recorded there in the artifact's own transaction), an artifact's or model version's
digest, a policy digest, a code artifact's diff, or a file of a directory manifest that one
of those names. Only unreferenced blobs older than a grace period are deleted: a younger one
may belong to an upload whose metadata has not committed yet.

Deciding and deleting happen inside one write transaction, so no artifact can commit between
the moment its blob is judged unreferenced and the moment it is deleted; an artifact checks
that a blob it records for the first time still exists inside its own write transaction, so
an upload that found old orphan bytes already present (on any backend) either records them
before gc runs or is told they are gone, never points at a deleted blob.

The same pass deletes capture files (a batch's Parquet and Merkle files) that no
``capture_batches`` row names, once older than the grace period: a batch's files are written
before its row is inserted, so a failed insert or a process killed in between leaves them,
and a younger unnamed file may belong to a batch whose row is about to commit.

It also deletes temp files that killed writes left in the store (older than the grace
period), aborts object-store multipart uploads a killed server left (older than a day) and
the server's expired idempotency keys (``service.idempotency``), which
are protocol bookkeeping like orphan blobs and, like them, are never audited individually.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, select

from clew.domain import digests
from clew.errors import InvalidInputError
from clew.service import audit, idempotency
from clew.service.runs import now_ms
from clew.store import schema
from clew.store.blobs import BlobBackend
from clew.store.captures import CaptureFiles, StoredCaptureFile, merkle_name
from clew.store.location import Store
from clew.store.object_store import STALE_UPLOAD_MS, ObjectBlobStore

DEFAULT_GRACE_MS = 60 * 60 * 1000


@dataclass(frozen=True)
class Orphan:
    digest: str
    size: int
    modified_ms: int


@dataclass
class GcReport:
    """What a collection found (dry run) or did (``deleted``)."""

    orphans: list[Orphan]
    referenced: int
    young: list[Orphan] = field(default_factory=list)
    deleted: bool = False
    audit_seq: int | None = None
    expired_keys: int = 0
    stale_files: list[Path] = field(default_factory=list)
    stale_uploads: list[str] = field(default_factory=list)
    orphan_captures: list[StoredCaptureFile] = field(default_factory=list)
    young_captures: list[StoredCaptureFile] = field(default_factory=list)
    captures_audit_seq: int | None = None

    @property
    def bytes(self) -> int:
        return sum(orphan.size for orphan in self.orphans)

    @property
    def capture_bytes(self) -> int:
        return sum(orphan.size for orphan in self.orphan_captures)


def referenced_digests(connection: Connection, blobs: BlobBackend) -> set[str]:
    """Every digest a record in this database points at, manifest files included.

    Also used by backups, which copy exactly these blobs (the ones present) from a snapshot.
    """
    found: set[str] = set()
    for column in (
        schema.blobs.c.digest,
        schema.artifacts.c.digest,
        schema.model_versions.c.digest,
        schema.policies.c.digest,
    ):
        found.update(connection.execute(select(column)).scalars())
    found.update(_diff_digests(connection))
    for manifest in _manifest_digests(connection):
        if blobs.exists(manifest):
            found.update(blobs.read_manifest(manifest).values())
    return {digest for digest in found if digests.is_digest(digest)}


def _diff_digests(connection: Connection) -> set[str]:
    """The uncommitted-changes blobs that code artifacts name in their properties."""
    table = schema.artifacts
    rows = connection.execute(select(table.c.properties).where(table.c.type == "code"))
    diffs = (json.loads(properties or "{}").get("diff_digest") for properties in rows.scalars())
    return {digest for digest in diffs if isinstance(digest, str)}


def _manifest_digests(connection: Connection) -> set[str]:
    """Blobs recorded as manifests and digests of artifacts stored as directories."""
    manifests = set(
        connection.execute(
            select(schema.blobs.c.digest).where(schema.blobs.c.kind == "manifest")
        ).scalars()
    )
    table = schema.artifacts
    for digest, properties in connection.execute(select(table.c.digest, table.c.properties)):
        if json.loads(properties or "{}").get("kind") == "directory":
            manifests.add(digest)
    return manifests


def collect(
    store: Store,
    actor: str,
    *,
    delete: bool = False,
    grace_ms: int = DEFAULT_GRACE_MS,
) -> GcReport:
    """Find unreferenced blobs and unnamed capture files older than ``grace_ms`` and expired
    idempotency keys; delete them only when ``delete``.

    A deletion is audited (``blobs.gc``, ``captures.gc``) with the count, bytes and the digest
    of the sorted list of what went, so the log proves it without growing with every name.
    Listing a large store takes a while, so PostgreSQL's statement timeout is lifted.
    """
    if grace_ms < 0:
        raise InvalidInputError("the gc grace period cannot be negative; pass 0 or more.")
    with store.db.long_running(), store.db.write() as connection:
        now = now_ms()
        referenced = referenced_digests(connection, store.blobs)
        report = _plan(store.blobs, referenced, now - grace_ms)
        report.stale_files = _stale_scratch_files(store, now - grace_ms)
        report.stale_uploads = _stale_multipart_uploads(store, now, dry_run=not delete)
        report.orphan_captures, report.young_captures = _unnamed_capture_files(
            connection, store.capture_files, now - grace_ms
        )
        if not delete:
            report.expired_keys = idempotency.count_expired(connection, now)
            return report
        report.expired_keys = idempotency.purge_expired(connection, now)
        for stale in report.stale_files:
            stale.unlink(missing_ok=True)
        report.captures_audit_seq = _delete_capture_files(
            connection, store.capture_files, actor, report.orphan_captures, grace_ms
        )
        if not report.orphans:
            return report
        for orphan in report.orphans:
            store.blobs.delete(orphan.digest)
        removed = sorted(orphan.digest for orphan in report.orphans)
        entry = audit.append(
            connection,
            actor,
            "blobs.gc",
            "store:blobs",
            {
                "deleted": len(removed),
                "bytes": report.bytes,
                "digests_digest": digests.digest_json(removed),
                "grace_ms": grace_ms,
            },
        )
        report.deleted = True
        report.audit_seq = entry.seq
        return report


def _unnamed_capture_files(
    connection: Connection, files: CaptureFiles, cutoff_ms: int
) -> tuple[list[StoredCaptureFile], list[StoredCaptureFile]]:
    """Capture files no batch row names, split into (older than the cutoff, younger).

    A row names its Parquet file and, beside it, its Merkle file; anything else under the
    captures root (including a local writer's ``.incoming-`` temp file) belongs to no batch.
    """
    named: set[str] = set()
    for path in connection.execute(select(schema.capture_batches.c.path)).scalars():
        named.update((path, merkle_name(path)))
    old: list[StoredCaptureFile] = []
    young: list[StoredCaptureFile] = []
    for stored in files.list_files():
        if stored.relative not in named:
            (young if stored.modified_ms > cutoff_ms else old).append(stored)
    return old, young


def _delete_capture_files(
    connection: Connection,
    files: CaptureFiles,
    actor: str,
    orphans: list[StoredCaptureFile],
    grace_ms: int,
) -> int | None:
    """Delete unnamed capture files and audit it (``captures.gc``); the entry's seq, if any."""
    if not orphans:
        return None
    for orphan in orphans:
        files.delete_file(orphan.relative)
    removed = sorted(orphan.relative for orphan in orphans)
    entry = audit.append(
        connection,
        actor,
        "captures.gc",
        "store:captures",
        {
            "deleted": len(removed),
            "bytes": sum(orphan.size for orphan in orphans),
            "paths_digest": digests.digest_json(removed),
            "grace_ms": grace_ms,
        },
    )
    return entry.seq


def _stale_scratch_files(store: Store, cutoff_ms: int) -> list[Path]:
    """Temp files of writes that died half-way (a killed upload or blob write), once older
    than the grace period: a younger one may belong to a write still in progress."""
    return sorted(
        path
        for directory in store.scratch_directories()
        if directory.is_dir()
        for path in directory.iterdir()
        if path.is_file() and path.stat().st_mtime * 1000 < cutoff_ms
    )


def _stale_multipart_uploads(store: Store, now: int, *, dry_run: bool) -> list[str]:
    """Object-store multipart uploads a server killed mid-upload left under the store's
    prefix (never visible, but their parts cost storage); aborted once a day old, an age no
    live upload reaches, whatever the blob grace period."""
    if not isinstance(store.blobs, ObjectBlobStore):
        return []
    return store.blobs.abort_stale_uploads(now - STALE_UPLOAD_MS, dry_run=dry_run)


def _plan(blobs: BlobBackend, referenced: set[str], cutoff_ms: int) -> GcReport:
    orphans: list[Orphan] = []
    young: list[Orphan] = []
    kept = 0
    for digest in blobs.iter_digests():
        if digest in referenced:
            kept += 1
            continue
        orphan = Orphan(digest, blobs.size_of(digest), blobs.modified_ms(digest))
        (young if orphan.modified_ms > cutoff_ms else orphans).append(orphan)
    return GcReport(orphans, kept, young)
