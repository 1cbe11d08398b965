"""Re-hashing every stored blob and checking the database's own structure, so damage or
tampering is found before anyone loads it.

Reads verify each blob they touch; this checks all of them at once (``clew verify``): every
blob the metadata records and every blob file on disk, so both a missing file and an altered
one are named by digest. The database is checked with what its engine offers (SQLite's
``integrity_check``; PostgreSQL's amcheck, or reading every row), naming the damaged table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, select
from sqlalchemy.exc import DBAPIError

from clew.store import schema
from clew.store.location import Store

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
