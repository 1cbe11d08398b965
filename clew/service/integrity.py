"""Re-hashing stored blobs and checking the database's own structure, so damage or tampering
is found before anyone relies on them.

Reads verify each blob they touch; ``verify_blobs`` checks all of them at once (``clew
verify``): every blob the metadata records and every blob file on disk, so both a missing file
and an altered one are named by digest. ``require_verified_bytes`` checks one artifact's bytes
before a version of it is registered, approved or promoted. The database is checked with what
its engine offers (SQLite's ``integrity_check``; PostgreSQL's amcheck, or reading every row),
naming the damaged table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, select
from sqlalchemy.exc import DBAPIError

from clew.domain.records import ArtifactRecord
from clew.errors import IntegrityError, InvalidInputError, NotFoundError, UnverifiedBytesError
from clew.service.uploads import MAX_MANIFEST_BYTES, check_manifest_bytes, looks_like_manifest
from clew.store import schema
from clew.store.blobs import SNIFF_BYTES, BlobBackend, could_be_json
from clew.store.location import Store

# Blobs up to this size are read whole when checked: one read costs less than sniffing first.
_READ_WHOLE_BYTES = 1 << 20

MISSING, CORRUPT = "missing", "corrupt"


@dataclass(frozen=True)
class BlobProblem:
    digest: str
    problem: str  # MISSING: recorded but not on disk; CORRUPT: bytes no longer match digest

    def describe(self) -> str:
        if self.problem == MISSING:
            return f"{self.digest} is recorded but missing from the blob store"
        return f"{self.digest} does not match its digest (altered or damaged)"


def inventory(store: Store) -> dict[str, int]:
    """Every blob to check, recorded or on disk, with its expected size in bytes."""
    with store.db.read() as connection:
        query = select(schema.blobs.c.digest, schema.blobs.c.size)
        recorded = {digest: size for digest, size in connection.execute(query)}
    for digest in store.blobs.iter_digests():
        if digest not in recorded:
            recorded[digest] = store.blobs.size_of(digest)
    return dict(sorted(recorded.items()))


def verify_blobs(
    store: Store,
    progress: Callable[[int], None] | None = None,
    blobs: dict[str, int] | None = None,
) -> list[BlobProblem]:
    """Re-hash each blob (``blobs`` from ``inventory``, by default all); report bytes checked."""
    problems = []
    for digest, size in (inventory(store) if blobs is None else blobs).items():
        if not store.blobs.exists(digest):
            problems.append(BlobProblem(digest, MISSING))
        elif not store.blobs.verify(digest):
            problems.append(BlobProblem(digest, CORRUPT))
        if progress:
            progress(size)
    return problems


# --- the bytes of a version: checked before it is registered, approved or promoted ----------


class NotHashedYet(Exception):
    """Raised by ``require_verified_bytes(..., hash_now=False)`` when a blob would have to be
    hashed: the caller leaves its transaction, hashes (``hash_now=True``) and comes back."""

    def __init__(self, artifact: ArtifactRecord, context: str) -> None:
        super().__init__(context)
        self.artifact, self.context = artifact, context


def require_verified_bytes(
    store: Store, artifact: ArtifactRecord, context: str, *, hash_now: bool = True
) -> None:
    """Refuse unless the artifact's digest, and every file of its manifest when it is a
    directory, is in the blob store and hashes to its digest.

    ``context`` starts the refusal ("cannot approve churn/3"). Each blob is hashed once per
    process while the store reports the same fingerprint for it (a stat, or one HEAD on an
    object store; see ``Rehashed``); a manifest's paths are checked whenever it is re-hashed.
    With ``hash_now`` false only that memory is consulted, and ``NotHashedYet`` is raised
    where hashing would be needed (callers holding a write lock).
    """
    what = f"{artifact.type}:{artifact.name}"
    if artifact.properties.get("reference"):
        raise UnverifiedBytesError(
            f"{context}: {what} was recorded by reference only ({artifact.uri}), so the store "
            "has no bytes to check; log the model's files with run.log_model(...) instead."
        )
    directory = artifact.properties.get("kind") == "directory"
    try:
        files = _checked(
            store.blobs,
            artifact.digest,
            what,
            context,
            hash_now,
            manifest=True,
            directory=directory,
        )
        for path, digest in sorted((files or {}).items()):
            _checked(store.blobs, digest, f"file {path!r} of {what}", context, hash_now)
    except _MustHash:
        raise NotHashedYet(artifact, context) from None


class _MustHash(Exception):
    """A blob is not in this process's memory of hashed blobs (``hash_now`` was false)."""


def _checked(
    blobs: BlobBackend,
    digest: str,
    what: str,
    context: str,
    hash_now: bool,
    *,
    manifest: bool = False,
    directory: bool = False,
) -> dict[str, str] | None:
    """Re-hash one blob unless unchanged since this process last did (with ``hash_now``
    false, raise ``_MustHash`` instead); return its manifest files when ``manifest`` and the
    bytes are one (always read as one when ``directory``)."""
    fingerprint = blobs.fingerprint(digest)
    if fingerprint is None:
        raise _missing(digest, what, context)
    known = blobs.rehashed.find(digest, fingerprint)
    if known is not None and not (directory and known[0] is None):
        return known[0]
    if not hash_now:
        raise _MustHash
    try:
        files = _rehash(blobs, digest, fingerprint[0], manifest=manifest, directory=directory)
    except NotFoundError:
        raise _missing(digest, what, context) from None
    except IntegrityError:
        raise _corrupt(digest, what, context) from None
    except InvalidInputError as error:
        raise InvalidInputError(f"{context}: {error}") from None
    blobs.rehashed.remember(digest, fingerprint, files)
    return files


def _rehash(
    blobs: BlobBackend, digest: str, size: object, *, manifest: bool, directory: bool
) -> dict[str, str] | None:
    """The manifest's files (paths checked) when the re-hashed blob is one, else None."""
    if manifest and (directory or _small_json(blobs, digest, size)):
        data = blobs.read_bytes(digest)  # re-hashes
        if directory or looks_like_manifest(data):
            return check_manifest_bytes(data, digest)
        return None
    if not blobs.verify(digest):
        raise IntegrityError(f"blob {digest} does not match its digest.")
    return None


def _small_json(blobs: BlobBackend, digest: str, size: object) -> bool:
    """Whether a blob small enough to be a manifest may be one: small ones are simply read
    whole (one read instead of two), larger ones only if they start like JSON."""
    if not isinstance(size, int) or size > MAX_MANIFEST_BYTES:
        return False
    return size <= _READ_WHOLE_BYTES or could_be_json(blobs.read_prefix(digest, SNIFF_BYTES))


def _missing(digest: str, what: str, context: str) -> UnverifiedBytesError:
    return UnverifiedBytesError(
        f"{context}: {what} ({digest}) is missing from the store; log the model again or "
        "restore the blob from a backup, then retry."
    )


def _corrupt(digest: str, what: str, context: str) -> UnverifiedBytesError:
    return UnverifiedBytesError(
        f"{context}: {what} ({digest}) does not match its digest (the stored bytes were "
        "altered or damaged); restore it from a backup, then retry."
    )


SQLITE_CHECK = "SQLite PRAGMA integrity_check"
AMCHECK = "PostgreSQL amcheck (bt_index_check, verify_heapam)"
FULL_READ = "PostgreSQL: every row of every table read (amcheck is not installed)"


@dataclass(frozen=True)
class DatabaseProblem:
    table: str  # "" when the damage belongs to no table (SQLite's free list, its schema)
    problem: str


@dataclass(frozen=True)
class DatabaseCheck:
    """How the database was checked and what was found; ``first`` is the engine's own first
    finding (SQLite names the page there), or "" when none."""

    method: str
    problems: list[DatabaseProblem]
    first: str = ""

    def describe(self) -> str:
        tables = ", ".join(sorted({p.table for p in self.problems if p.table})) or "no table"
        finding = self.first or self.problems[0].problem
        return f"{finding} (damaged: {tables})"


def check_database(store: Store) -> DatabaseCheck:
    """The database's structure, checked by its engine: bytes a disk or a stray write damaged
    are found here even in tables no verify command reads."""
    if store.db.dialect == "sqlite":
        return _check_sqlite(store)
    with store.db.long_running():
        return _check_postgres(store)


def _check_sqlite(store: Store) -> DatabaseCheck:
    """One whole-file check; only when it fails, one check per table to name the damaged ones
    (a damaged page makes SQLite stop a check with an error rather than list every finding)."""
    with store.db.read() as connection:
        first = _findings(connection, "PRAGMA integrity_check(1)")
        if first == ["ok"]:
            return DatabaseCheck(SQLITE_CHECK, [])
        try:
            names = connection.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            ).scalars()
            tables = list(names)
        except DBAPIError as error:
            return DatabaseCheck(SQLITE_CHECK, [DatabaseProblem("", _message(error))], first[0])
        problems = []
        for table in tables:
            found = _findings(connection, f'PRAGMA integrity_check("{table}")')
            if found != ["ok"]:
                problems.append(DatabaseProblem(table, "; ".join(found)))
    if len(problems) == 1:  # SQLite's first finding (naming the page) is in that table
        problems = [DatabaseProblem(problems[0].table, f"{first[0]} ({problems[0].problem})")]
    return DatabaseCheck(SQLITE_CHECK, problems or [DatabaseProblem("", first[0])], first[0])


def _findings(connection: Connection, pragma: str) -> list[str]:
    try:
        rows = connection.exec_driver_sql(pragma).scalars().all()
    except DBAPIError as error:
        return [_message(error)]
    return [" ".join(str(row).replace("*** in database main ***", "").split()) for row in rows]


def _check_postgres(store: Store) -> DatabaseCheck:
    with store.db.read() as connection:
        amcheck = connection.exec_driver_sql(
            "SELECT 1 FROM pg_extension WHERE extname = 'amcheck'"
        ).first()
    problems = []
    for table in schema.metadata.sorted_tables:
        problem = _check_postgres_table(store, table.name, amcheck is not None)
        if problem:
            problems.append(DatabaseProblem(table.name, problem))
    return DatabaseCheck(AMCHECK if amcheck else FULL_READ, problems)


def _check_postgres_table(store: Store, table: str, amcheck: bool) -> str:
    """Each table in its own transaction: a damaged page aborts the statement that reads it."""
    with store.db.read() as connection:
        try:
            if not amcheck:
                # every column of every row, detoasted: nothing is answered from an index
                connection.exec_driver_sql(f'SELECT sum(length(t::text)) FROM "{table}" AS t')
                return ""
            rows = connection.exec_driver_sql(
                f"SELECT blkno, msg FROM verify_heapam('\"{table}\"'::regclass)"
            ).all()
            connection.exec_driver_sql(
                "SELECT bt_index_check(index => i.indexrelid, heapallindexed => true) "
                f"FROM pg_index AS i WHERE i.indrelid = '\"{table}\"'::regclass"
            ).all()
        except DBAPIError as error:
            connection.rollback()
            return _message(error)
    return "; ".join(f"block {block}: {message}" for block, message in rows)


def _message(error: DBAPIError) -> str:
    text = str(error.orig).strip()
    return text.splitlines()[0] if text else type(error.orig).__name__
