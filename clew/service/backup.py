"""Backups of a whole store in one archive, and restores that prove nothing was lost.

An archive is a tar file (zstd-compressed when the ``zstandard`` package is installed, else
gzip) holding:

- the metadata at one consistent moment: a SQLite store is copied with SQLite's online
  backup API (safe under WAL while other processes write); a PostgreSQL store is exported
  table by table as JSON lines from one REPEATABLE READ transaction, so it can be restored
  into SQLite or PostgreSQL alike;
- every blob that snapshot references (``gc.referenced_digests``), capture batch files the
  snapshot records, and the store's signing keys (so restored captures still verify and new
  ones are signed by the same key: treat the archive as a secret);
- ``manifest.json`` last: the digest and size of every other member, row counts per table
  and the audit chain head.

Blobs are stored before the metadata that points at them commits, so everything a snapshot
references already exists when it is copied. A restore goes only into an empty store,
checks every member against the manifest before writing anything, then re-hashes every
blob, recomputes the audit chain and every recorded digest, and compares counts and the
chain head with the manifest; any difference is an error.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import shutil
import sqlite3
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, create_engine, delete, func, select, text
from sqlalchemy.engine import make_url

from clew.domain import digests
from clew.errors import ConflictError, IntegrityError, InvalidInputError, StoreVersionError
from clew.service import audit, gc
from clew.service.runs import now_ms
from clew.service.uploads import check_relative_path
from clew.store import captures, schema
from clew.store.location import Store
from clew.store.metadata import BUSY_TIMEOUT_MS, SCHEMA_HEAD, Database

FORMAT = "clew.backup/v1"
MANIFEST = "manifest.json"
SQLITE_MEMBER = "metadata.sqlite"
ROWS_PREFIX = "metadata/"
BLOBS_PREFIX = "blobs/"
CAPTURES_PREFIX = "captures/"
KEYS_PREFIX = "keys/"
ZSTD, GZIP, NONE = "zstd", "gzip", "none"
COMPRESSIONS = ("auto", ZSTD, GZIP, NONE)
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_INSERT_BATCH = 2000
TABLES = schema.metadata.sorted_tables  # parents before children, for foreign keys


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    digest: str  # of the archive file: keep it apart from the archive to detect a swap
    size: int
    compression: str
    blobs: int
    blob_bytes: int
    capture_files: int
    rows: dict[str, int]
    audit_head: str | None


@dataclass(frozen=True)
class RestoreSummary:
    uri: str
    blobs: int
    capture_files: int
    rows: dict[str, int]
    audit_entries: int
    audit_head: str | None


# --- backup ------------------------------------------------------------------------------


def backup(store: Store, destination: Path, compression: str = "auto") -> BackupSummary:
    """Write a verified, self-describing archive of ``store`` to ``destination``.

    The archive appears under its name only once complete (written to a hidden temp name,
    fsynced, renamed) and is readable by its owner only, as it carries the signing key.
    """
    destination = Path(destination).expanduser()
    if destination.exists():
        raise ConflictError(f"{destination} already exists; choose a new backup file name.")
    codec = _codec(compression)
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(f".{destination.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        with (
            tempfile.TemporaryDirectory(prefix=".clew-backup-", dir=destination.parent) as scratch,
            _archive_writer(partial, codec) as tar,
        ):
            manifest = _write_members(store, tar, Path(scratch))
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
        partial.replace(destination)
    finally:
        partial.unlink(missing_ok=True)
    blob_members = [m for name, m in manifest["members"].items() if name.startswith(BLOBS_PREFIX)]
    captured = [name for name in manifest["members"] if name.startswith(CAPTURES_PREFIX)]
    return BackupSummary(
        destination,
        _file_digest(destination),
        destination.stat().st_size,
        codec,
        len(blob_members),
        sum(member["size"] for member in blob_members),
        len(captured),
        manifest["rows"],
        manifest["audit"]["head"],
    )


def _codec(compression: str) -> str:
    if compression not in COMPRESSIONS:
        raise InvalidInputError(
            f"compression {compression!r} is unknown; use one of: {', '.join(COMPRESSIONS)}."
        )
    zstd_available = _zstandard() is not None
    if compression == "auto":
        return ZSTD if zstd_available else GZIP
    if compression == ZSTD and not zstd_available:
        raise InvalidInputError(
            "zstd compression needs the zstandard package; install it or use --compression gzip."
        )
    return compression


def _zstandard() -> Any:
    try:
        import zstandard
    except ImportError:
        return None
    return zstandard


@contextlib.contextmanager
def _archive_writer(path: Path, codec: str) -> Iterator[tarfile.TarFile]:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(descriptor, "wb") as raw:
        with contextlib.ExitStack() as stack:
            sink: IO[bytes] | gzip.GzipFile = raw
            if codec == ZSTD:
                compressor = _zstandard().ZstdCompressor(level=3)
                sink = stack.enter_context(compressor.stream_writer(raw, closefd=False))
            elif codec == GZIP:
                # Level 1: blobs are mostly compressed already (Parquet, zipped models).
                sink = stack.enter_context(
                    gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0)
                )
            yield stack.enter_context(tarfile.open(fileobj=sink, mode="w|"))
        raw.flush()
        os.fsync(raw.fileno())


def _write_members(store: Store, tar: tarfile.TarFile, scratch: Path) -> dict[str, Any]:
    """Add the metadata snapshot, then what it references; return the manifest."""
    members: dict[str, dict[str, Any]] = {}
    with _frozen_metadata(store, scratch) as (connection, metadata_files):
        for name, path in metadata_files.items():
            members[name] = _add_file(tar, name, path)
        rows = {table.name: _count(connection, table) for table in TABLES}
        head = connection.execute(
            select(schema.store_info.c.value).where(schema.store_info.c.key == "audit_head")
        ).scalar()
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        referenced = gc.referenced_digests(connection, store.blobs)
        recorded = set(connection.execute(select(schema.blobs.c.digest)).scalars())
        batch_paths = list(connection.execute(select(schema.capture_batches.c.path)).scalars())
    members.update(_add_blobs(store, tar, scratch, referenced, recorded))
    members.update(_add_captures(store, tar, batch_paths))
    members.update(_add_keys(store, tar))
    return {
        "format": FORMAT,
        "created_ms": now_ms(),
        "source": store.uri,
        "dialect": store.db.dialect,
        "schema_revision": revision,
        "metadata": SQLITE_MEMBER if SQLITE_MEMBER in members else ROWS_PREFIX,
        "rows": rows,
        "audit": {"entries": rows[schema.audit_log.name], "head": head},
        "members": members,
    }


@contextlib.contextmanager
def _frozen_metadata(store: Store, scratch: Path) -> Iterator[tuple[Connection, dict[str, Path]]]:
    """A connection that sees one moment of the metadata, and the files that hold it."""
    if store.db.dialect == "sqlite":
        copy = scratch / SQLITE_MEMBER
        _sqlite_copy(str(make_url(store.db.url).database), copy)
        engine = create_engine(f"sqlite:///{copy}")
        try:
            with engine.connect() as connection:
                yield connection, {SQLITE_MEMBER: copy}
        finally:
            engine.dispose()
        return
    with store.db.engine.connect() as connection:
        snapshot = connection.execution_options(isolation_level="REPEATABLE READ")
        with snapshot.begin():
            files = {
                f"{ROWS_PREFIX}{table.name}.jsonl": _dump_rows(snapshot, table, scratch)
                for table in TABLES
            }
            yield snapshot, files


def _sqlite_copy(source: str, target: Path) -> None:
    """SQLite's online backup, in one step: it reads one consistent snapshot of the WAL
    database while other connections keep writing (a stepwise copy would restart on them)."""
    with (
        contextlib.closing(sqlite3.connect(source, timeout=BUSY_TIMEOUT_MS / 1000)) as live,
        contextlib.closing(sqlite3.connect(target)) as copy,
    ):
        live.backup(copy)


def _dump_rows(connection: Connection, table: Any, scratch: Path) -> Path:
    path = scratch / f"{table.name}.jsonl"
    query = select(table).order_by(*table.primary_key.columns or table.columns)
    with open(path, "w", encoding="utf-8") as writer:
        for row in connection.execution_options(yield_per=_INSERT_BATCH).execute(query):
            writer.write(json.dumps(dict(row._mapping), sort_keys=True) + "\n")
    return path


def _count(connection: Connection, table: Any) -> int:
    return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


def _add_blobs(
    store: Store, tar: tarfile.TarFile, scratch: Path, referenced: set[str], recorded: set[str]
) -> dict[str, dict[str, Any]]:
    """Every referenced blob that is stored; a recorded one that is missing stops the backup.

    Digests that are not blobs (a code revision's identity, a reference artifact) are skipped.
    """
    members = {}
    for digest in sorted(referenced):
        if not store.blobs.exists(digest):
            if digest in recorded:
                raise IntegrityError(
                    f"blob {digest} is recorded but missing from the blob store, so no complete "
                    "backup is possible; run clew verify and restore or re-log it first."
                )
            continue
        name = BLOBS_PREFIX + digests.hex_part(digest)
        with _blob_file(store, digest, scratch) as path:
            members[name] = _add_file(tar, name, path)
        if members[name]["digest"] != digest:
            raise IntegrityError(
                f"blob {digest} does not match its digest; run clew verify before backing up."
            )
    return members


@contextlib.contextmanager
def _blob_file(store: Store, digest: str, scratch: Path) -> Iterator[Path]:
    """A local path holding the blob: the stored file itself, or a verified download."""
    path = store.blobs.local_path(digest)
    if path is not None:
        yield path
        return
    spool = store.blobs.export_file(digest, scratch / "blob")
    try:
        yield spool
    finally:
        spool.unlink(missing_ok=True)


def _add_captures(
    store: Store, tar: tarfile.TarFile, batch_paths: list[str]
) -> dict[str, dict[str, Any]]:
    members = {}
    files = store.capture_files
    for relative in sorted(batch_paths):
        for stored in (relative, captures.merkle_name(relative)):
            if not files.exists(stored):
                raise IntegrityError(
                    f"capture file {stored} is recorded but missing from {files.location}, so "
                    "no complete backup is possible; run clew audit verify to see which "
                    "batches are damaged."
                )
            name = CAPTURES_PREFIX + stored
            with files.local_copy(stored) as path:
                members[name] = _add_file(tar, name, path)
    return members


def _add_keys(store: Store, tar: tarfile.TarFile) -> dict[str, dict[str, Any]]:
    if not store.keys.is_dir():
        return {}
    return {
        KEYS_PREFIX + path.name: _add_file(tar, KEYS_PREFIX + path.name, path)
        for path in sorted(store.keys.iterdir())
        if path.is_file() and not path.name.startswith(".")
    }


class _HashingReader:
    """Feeds tarfile while hashing, so each member is read once."""

    def __init__(self, reader: IO[bytes]) -> None:
        self.reader = reader
        self.hasher = digests.Hasher()

    def read(self, size: int = -1) -> bytes:
        data = self.reader.read(size)
        self.hasher.update(data)
        return data


def _add_file(tar: tarfile.TarFile, name: str, path: Path) -> dict[str, Any]:
    info = tarfile.TarInfo(name)
    info.size = path.stat().st_size
    info.mode = 0o600
    info.mtime = now_ms() // 1000
    with open(path, "rb") as reader:
        hashing = _HashingReader(reader)
        tar.addfile(info, hashing)
    return {"digest": hashing.hasher.digest(), "size": info.size}


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = now_ms() // 1000
    tar.addfile(info, io.BytesIO(data))


def _file_digest(path: Path) -> str:
    return digests.digest_file(path)


# --- restore -----------------------------------------------------------------------------


def restore(archive: Path, target: Store, actor: str) -> RestoreSummary:
    """Restore ``archive`` into the empty store ``target`` and prove the result complete.

    Every member is checked against the manifest before anything is written; afterwards
    the restored store is verified as a whole (blobs re-hashed, audit chain recomputed,
    recorded digests re-checked, row counts and chain head compared). Only then is the
    restore itself audited (``store.restore``), after the restored chain's last entry.
    """
    archive = Path(archive).expanduser()
    if not archive.is_file():
        raise InvalidInputError(f"backup file {archive} does not exist.")
    _require_empty(target)
    target.home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".clew-restore-", dir=target.home) as scratch:
        staged = Path(scratch)
        manifest = _unpack(archive, staged)
        _restore_files(manifest, staged, target)
        _restore_rows(manifest, staged, target)
    summary = _verify_restored(target, manifest)
    with target.db.write() as connection:
        audit.append(
            connection,
            actor,
            "store.restore",
            "store:",
            {
                "archive_digest": _file_digest(archive),
                "source": manifest["source"],
                "audit_head": manifest["audit"]["head"],
                "rows": manifest["rows"],
            },
        )
    return summary


def _require_empty(target: Store) -> None:
    """A restore never merges: two audit chains or two sets of versions cannot be mixed."""
    found = []
    with target.db.read() as connection:
        for table in TABLES:
            if table is not schema.store_info and _count(connection, table):
                found.append(f"table {table.name} has rows")
    if next(iter(target.blobs.iter_digests()), None) is not None:
        found.append("the blob store holds blobs")
    if target.capture_files.has_files():
        found.append("captures/ holds files")
    if found:
        raise ConflictError(
            f"the target store at {target.uri} is not empty ({', '.join(found[:3])}); restore "
            "only into a new, empty store (a fresh directory or an empty database)."
        )


def _unpack(archive: Path, staged: Path) -> dict[str, Any]:
    """Extract every member into ``staged`` and check each one against the manifest."""
    actual: dict[str, dict[str, Any]] = {}
    with _archive_reader(archive) as tar:
        for member in tar:
            name = _member_name(member)
            target = staged / "members" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None  # regular files only, checked by _member_name
            hashing = _HashingReader(source)
            with open(target, "wb") as writer:
                while chunk := hashing.read(digests.CHUNK):
                    writer.write(chunk)
            actual[name] = {"digest": hashing.hasher.digest()}
    if MANIFEST not in actual:
        raise IntegrityError(f"{archive} has no {MANIFEST}; it is not a complete clew backup.")
    manifest: dict[str, Any] = json.loads((staged / "members" / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise InvalidInputError(f"{archive} is not a {FORMAT} archive.")
    _check_members(archive, manifest["members"], actual)
    return manifest


@contextlib.contextmanager
def _archive_reader(archive: Path) -> Iterator[tarfile.TarFile]:
    with open(archive, "rb") as raw:
        if raw.read(4) == _ZSTD_MAGIC:
            zstandard = _zstandard()
            if zstandard is None:
                raise InvalidInputError(
                    f"{archive} is zstd-compressed; install the zstandard package to restore it."
                )
            raw.seek(0)
            with (
                zstandard.ZstdDecompressor().stream_reader(raw) as stream,
                tarfile.open(fileobj=stream, mode="r|") as tar,
            ):
                yield tar
            return
        raw.seek(0)
        try:
            with tarfile.open(fileobj=raw, mode="r|*") as tar:
                yield tar
        except (tarfile.ReadError, EOFError, gzip.BadGzipFile) as error:
            raise IntegrityError(
                f"{archive} is not a readable backup archive ({error}); it is damaged or truncated."
            ) from error


def _member_name(member: tarfile.TarInfo) -> str:
    """Only regular files with names clew writes: nothing can land outside the staging dir."""
    name = member.name
    if not member.isreg():
        raise IntegrityError(f"backup member {name!r} is not a regular file; refusing it.")
    try:
        check_relative_path(name)
    except InvalidInputError as error:
        raise IntegrityError(f"backup member {name!r} is refused: {error}") from error
    if name in (MANIFEST, SQLITE_MEMBER) or name.startswith(
        (ROWS_PREFIX, BLOBS_PREFIX, CAPTURES_PREFIX, KEYS_PREFIX)
    ):
        return name
    raise IntegrityError(f"backup member {name!r} is not part of a clew backup; refusing it.")


def _check_members(
    archive: Path, listed: dict[str, dict[str, Any]], actual: dict[str, dict[str, Any]]
) -> None:
    unlisted = sorted(set(actual) - set(listed) - {MANIFEST})
    missing = sorted(set(listed) - set(actual))
    changed = sorted(
        name
        for name in listed
        if name in actual and actual[name]["digest"] != listed[name]["digest"]
    )
    misnamed = sorted(
        name
        for name in listed
        if name.startswith(BLOBS_PREFIX)
        and listed[name]["digest"] != digests.PREFIX + name.removeprefix(BLOBS_PREFIX)
    )
    for problem, names in (
        ("do not match their recorded digests", changed),
        ("are listed but missing", missing),
        ("are not listed in the manifest", unlisted),
        ("are named after another digest", misnamed),
    ):
        if names:
            raise IntegrityError(
                f"{archive}: member(s) {', '.join(names[:3])} {problem}; the archive was altered "
                "or damaged, so nothing was restored; use another backup."
            )


def _restore_files(manifest: dict[str, Any], staged: Path, target: Store) -> None:
    """Blobs first, then captures and keys: metadata pointing at them commits last."""
    members = staged / "members"
    for name in manifest["members"]:
        path = members / name
        if name.startswith(BLOBS_PREFIX):
            stored = target.blobs.put_file(path)
            if stored.digest != manifest["members"][name]["digest"]:
                raise IntegrityError(f"blob {stored.digest} changed while being restored.")
        elif name.startswith(CAPTURES_PREFIX):
            target.capture_files.put_file(name.removeprefix(CAPTURES_PREFIX), path)
        elif name.startswith(KEYS_PREFIX):
            _restore_key(path, target.keys / name.removeprefix(KEYS_PREFIX))


def _restore_key(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(destination.parent, 0o700)
    if destination.exists():
        raise ConflictError(
            f"{destination} already exists in the target store; restore into a store without "
            "a signing key, so captured batches keep verifying with the backed-up one."
        )
    os.chmod(source, 0o600)
    shutil.move(source, destination)


def _restore_rows(manifest: dict[str, Any], staged: Path, target: Store) -> None:
    with (
        _row_source(manifest, staged / "members") as read_rows,
        target.db.write() as connection,
    ):
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA defer_foreign_keys=ON")
        connection.execute(delete(schema.store_info))
        for table in TABLES:
            batch: list[dict[str, Any]] = []
            for row in read_rows(table):
                batch.append(row)
                if len(batch) == _INSERT_BATCH:
                    connection.execute(table.insert(), batch)
                    batch = []
            if batch:
                connection.execute(table.insert(), batch)
        if connection.dialect.name == "postgresql":
            _advance_sequences(connection)


@contextlib.contextmanager
def _row_source(manifest: dict[str, Any], members: Path) -> Iterator[Any]:
    """A function yielding each table's rows from the snapshot, whichever backend wrote it.

    A SQLite snapshot from an older clew is migrated to this clew's schema first; JSON-lines
    rows must already be at this clew's schema revision.
    """
    if manifest["metadata"] == SQLITE_MEMBER:
        snapshot = Database(f"sqlite:///{members / SQLITE_MEMBER}")
        try:
            with snapshot.read() as connection:

                def from_sqlite(table: Any) -> Iterator[dict[str, Any]]:
                    query = select(table).order_by(*table.primary_key.columns or table.columns)
                    for row in connection.execution_options(yield_per=_INSERT_BATCH).execute(query):
                        yield dict(row._mapping)

                yield from_sqlite
        finally:
            snapshot.close()
        return
    if manifest["schema_revision"] != SCHEMA_HEAD:
        raise StoreVersionError(
            f"this backup's rows are at schema revision {manifest['schema_revision']!r} and this "
            f"clew expects {SCHEMA_HEAD!r}; restore it with the clew version that wrote it, then "
            "run clew db upgrade."
        )

    def from_json_lines(table: Any) -> Iterator[dict[str, Any]]:
        with open(members / f"{ROWS_PREFIX}{table.name}.jsonl", encoding="utf-8") as reader:
            for line in reader:
                yield json.loads(line)

    yield from_json_lines


def _advance_sequences(connection: Connection) -> None:
    """Rows were inserted with their ids; move each serial's sequence past the largest."""
    for table in TABLES:
        column = table.autoincrement_column
        if column is None:
            continue
        connection.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                f"COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false)"
            )
        )


def _verify_restored(target: Store, manifest: dict[str, Any]) -> RestoreSummary:
    """Check the restored store as a whole against itself and against the manifest."""
    problems: list[str] = []
    checked, chain_break = audit.verify_chain(target)
    if chain_break is not None:
        problems.append(f"audit chain broken at entry #{chain_break.seq}: {chain_break.reason}")
    # verify_digests re-hashes every blob and re-checks versions and capture batches.
    _, digest_problems = audit.verify_digests(target)
    problems.extend(f"{problem.target}: {problem.reason}" for problem in digest_problems)
    with target.db.read() as connection:
        rows = {table.name: _count(connection, table) for table in TABLES}
        head = connection.execute(
            select(schema.store_info.c.value).where(schema.store_info.c.key == "audit_head")
        ).scalar()
    for name, expected in manifest["rows"].items():
        if rows.get(name) != expected:
            problems.append(f"table {name} has {rows.get(name)} rows, the backup {expected}")
    if head != manifest["audit"]["head"] or checked != manifest["audit"]["entries"]:
        problems.append(
            f"the audit chain ends at {head} after {checked} entries, the backup at "
            f"{manifest['audit']['head']} after {manifest['audit']['entries']}"
        )
    blob_names = [name for name in manifest["members"] if name.startswith(BLOBS_PREFIX)]
    missing = [
        name
        for name in blob_names
        if not target.blobs.exists(digests.PREFIX + name.removeprefix(BLOBS_PREFIX))
    ]
    problems.extend(f"blob {name} was not restored" for name in missing)
    if problems:
        raise IntegrityError(
            f"the restored store at {target.uri} does not match the backup: "
            f"{'; '.join(problems[:5])}; do not use it, restore an intact backup into a new store."
        )
    return RestoreSummary(
        target.uri,
        len(blob_names),
        sum(name.startswith(CAPTURES_PREFIX) for name in manifest["members"]),
        rows,
        checked,
        head,
    )
