"""Opening the metadata database: engine settings, schema migrations, transactions.

SQLite runs in WAL mode with ``BEGIN IMMEDIATE`` for writes, so two processes logging to one
store queue up behind each other instead of failing; ``CLEW_SQLITE_SYNC`` picks how durable a
commit is (see ``sqlite_synchronous``). PostgreSQL gets the same semantics from a
transaction-level advisory lock taken at the start of every write (see ``_postgres_engine``).
Every PostgreSQL wait is bounded (see ``PostgresLimits``), so a frozen database server turns
into a clear "unavailable" error instead of a request that hangs forever.
Migrations are Alembic's; an embedded store is upgraded on open, a store whose schema this clew
does not know (a newer clew wrote it) is refused.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPICursor, DBAPIModule
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import QueuePool, StaticPool

from clew.errors import (
    IntegrityError,
    InvalidInputError,
    QueryTimeoutError,
    StoreBusyError,
    StoreUnavailableError,
    StoreVersionError,
)
from clew.store import schema
from clew.store.faults import sqlite_fault
from clew.store.typed_sql import register_sqlite_functions
from clew.store.wal_checkpoints import WalCheckpointer

if TYPE_CHECKING:
    from alembic.config import Config

SCHEMA_HEAD = "0016"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 60_000
# WAL checkpoints run on a background thread (store/wal_checkpoints.py); SQLite's own, which stalls
# the commit that crosses it, is only a backstop at ~128 MiB instead of its default 4 MiB.
WAL_CHECKPOINT_PAGES = 32_000
SQLITE_SYNC_ENV = "CLEW_SQLITE_SYNC"
SQLITE_SYNC_MODES = ("full", "normal")
# Arbitrary fixed keys ("clew" in ASCII, plus one) naming clew's two PostgreSQL advisory locks.
_PG_WRITE_LOCK = 0x636C6577
_PG_MIGRATION_LOCK = 0x636C6578
_engines: weakref.WeakSet[Engine] = weakref.WeakSet()
_long_running: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "clew_long_running", default=False
)


def _forget_inherited_connections() -> None:
    """A forked child must open its own connections, never reuse its parent's."""
    for engine in list(_engines):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_inherited_connections)


def sqlite_synchronous() -> str:
    """SQLite's ``synchronous`` setting from ``CLEW_SQLITE_SYNC``: ``normal`` (default) or ``full``.

    ``normal`` fsyncs only at WAL checkpoints: a commit survives the process being killed
    (kill -9, a crash: the commit is in the WAL, in the OS page cache) but the last commits
    may roll back on power loss or an OS crash. ``full`` fsyncs the WAL on every commit, so a
    commit survives power loss too, at the price of one fsync (milliseconds on many disks) per
    write. Neither can corrupt the database, and a rollback only ever drops a suffix of
    transactions, so the audit chain stays a valid prefix. Governance writes are fsynced
    under either setting (``mark_durable``). docs/operations.md (durability).
    """
    mode = os.environ.get(SQLITE_SYNC_ENV, "").strip().lower() or "normal"
    if mode not in SQLITE_SYNC_MODES:
        raise InvalidInputError(
            f"{SQLITE_SYNC_ENV}={mode!r} is not a SQLite sync mode; use full or normal."
        )
    return mode


def _sqlite_engine(url: str) -> Engine:
    synchronous = sqlite_synchronous().upper()
    engine = create_engine(
        url,
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        # Pooled connections stay open: closing the last connection to a WAL database
        # checkpoints it, which made every short write pay for a full checkpoint.
        poolclass=StaticPool if ":memory:" in url else QueuePool,
    )
    _engines.add(engine)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        # LIKE matches case as PostgreSQL's does, so a search answers alike on both.
        cursor.execute("PRAGMA case_sensitive_like=ON")
        cursor.close()
        register_sqlite_functions(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A deferred transaction that later writes can fail with SQLITE_BUSY without waiting;
        # taking the write lock up front makes concurrent writers queue instead.
        # Straight on the DBAPI connection: a SQLAlchemy execute would cost as much as the
        # short writes this begins.
        write = connection.get_execution_options().get("clew_write", False)
        driver_execute(connection, "BEGIN IMMEDIATE" if write else "BEGIN", {})

    return engine


@dataclass(frozen=True)
class PostgresLimits:
    """How long clew waits for PostgreSQL, from the environment (docs/operations.md).

    ``statement_timeout_ms`` is PostgreSQL's own ``statement_timeout`` for every statement
    (0: none). A server that is frozen rather than down (SIGSTOP, a hung VM, a stalled disk)
    cannot enforce it, and its kernel still acknowledges TCP traffic, so keepalives do not
    notice either: clew also stops waiting for a reply on its side ``REPLY_MARGIN_S`` after the
    statement timeout and drops that connection. A writer queued for the write lock gives up
    at ``lock_timeout_ms``, before its statement times out, with the precise "busy" error.
    """

    connect_timeout_s: int
    statement_timeout_ms: int
    pool_timeout_s: int = 30

    REPLY_MARGIN_S = 5.0
    CONNECT_ENV = "CLEW_PG_CONNECT_TIMEOUT_S"
    STATEMENT_ENV = "CLEW_PG_STATEMENT_TIMEOUT_MS"
    POOL_ENV = "CLEW_PG_POOL_TIMEOUT_S"  # how long a request waits for a pooled connection

    @classmethod
    def from_environment(cls) -> PostgresLimits:
        return cls(
            connect_timeout_s=_nonnegative_int(cls.CONNECT_ENV, 10),
            statement_timeout_ms=_nonnegative_int(cls.STATEMENT_ENV, 40_000),
            pool_timeout_s=_nonnegative_int(cls.POOL_ENV, 30),
        )

    @property
    def reply_timeout_s(self) -> float | None:
        if self.statement_timeout_ms == 0:
            return None
        return self.statement_timeout_ms / 1000 + self.REPLY_MARGIN_S

    @property
    def lock_timeout_ms(self) -> int:
        if self.statement_timeout_ms == 0:
            return BUSY_TIMEOUT_MS
        return max(1, min(BUSY_TIMEOUT_MS, self.statement_timeout_ms * 3 // 4))


def _nonnegative_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit():
        raise InvalidInputError(f"{name}={text!r} is not a whole number; use 0 or more.")
    return int(text)


def _bounded_connection_class() -> type[Any]:
    """A psycopg connection that stops waiting for a reply after its deadline.

    psycopg waits for every reply (queries, commits, pings) in ``Connection.wait``; past the
    deadline the connection's state is unknown, so it is closed (the pool then replaces it)
    and the wait fails as a lost connection. Created lazily: psycopg is imported only when a
    PostgreSQL store is opened.
    """
    import psycopg

    class ReplyTimeoutError(psycopg.OperationalError):
        """The server did not answer in time (frozen or overloaded); the connection is gone."""

        clew_timeout = True

    class BoundedConnection(psycopg.Connection):
        reply_timeout_s: float | None = None

        def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
            deadline = None if _long_running.get() else self.reply_timeout_s
            if timeout is not None or deadline is None:
                return super().wait(gen, interval, timeout)  # psycopg's own bounded waits
            try:
                return super().wait(gen, interval, deadline)
            except psycopg.errors._WaitTimeout:
                self.pgconn.finish()
                raise ReplyTimeoutError(
                    f"no reply from the database server within {deadline} s"
                ) from None

    return BoundedConnection


def _postgres_engine(url: str) -> Engine:
    """A connection pool that survives a server restart (stale connections are replaced) and
    never waits on the server without a bound."""
    limits = PostgresLimits.from_environment()
    engine = create_engine(
        url,
        pool_pre_ping=True,
        pool_size=8,
        max_overflow=16,
        pool_timeout=limits.pool_timeout_s,
        connect_args={
            "connect_timeout": limits.connect_timeout_s,
            # A database host that vanished (no RST) is noticed on idle pooled connections.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        },
    )
    _engines.add(engine)
    connection_class = _bounded_connection_class()

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect, _record, cargs, cparams):  # type: ignore[no-untyped-def]
        connection = connection_class.connect(*cargs, **cparams)
        connection.reply_timeout_s = limits.reply_timeout_s
        # A session setting, not a startup ``options`` parameter, which poolers such as
        # PgBouncer refuse by default.
        connection.execute(f"SET statement_timeout = {limits.statement_timeout_ms}")
        # clew's statements are short; the JIT spent ~8 s compiling a filter of 99 expressions,
        # and no statement timeout interrupts that compilation, so a search limit went unheeded.
        connection.execute("SET jit = off")
        connection.commit()
        return connection

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Services read, decide, then write (get-or-create a context, append to the audit
        # chain); serialising writers like SQLite does keeps those sequences race-free. Every
        # write already serialises on the audit chain head, so this costs no throughput.
        long_running = _long_running.get()
        if long_running:
            connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
        if connection.get_execution_options().get("clew_write", False):
            lock_ms = BUSY_TIMEOUT_MS if long_running else limits.lock_timeout_ms
            connection.exec_driver_sql(f"SET LOCAL lock_timeout = {lock_ms}")
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_WRITE_LOCK})")

    return engine


_DURABLE = "clew_durable_commit"
# What SQLite itself calls for synchronous=FULL on Linux; macOS has no fdatasync.
_fdatasync = getattr(os, "fdatasync", os.fsync)
# Only raises PostgreSQL's setting for this transaction when the server's is "off": "local"
# flushes the commit record to this server's disk; stronger settings (replication) stay.
_PG_DURABLE = (
    "SELECT set_config('synchronous_commit', 'local', true) "
    "WHERE current_setting('synchronous_commit') = 'off'"
)


def mark_durable(connection: Connection) -> None:
    """Make the write transaction on ``connection`` survive power loss once it commits, before
    it is acknowledged, whatever ``CLEW_SQLITE_SYNC`` says for bulk writes.

    For governance writes (registry events, approvals, policies, keys, users): a power cut may
    take back a logged metric, never an approval a user was told had happened. SQLite refuses
    to change ``synchronous`` inside a transaction, so ``Database.write`` fsyncs the WAL right
    after the commit, which is what ``synchronous=FULL`` does in WAL mode; on PostgreSQL the
    transaction commits with ``synchronous_commit`` at least ``local``.
    """
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(_PG_DURABLE)
        return
    connection.info[_DURABLE] = True


@dataclass(frozen=True)
class _Joined:
    """The transaction ``single_transaction`` opened, and what waits for its commit."""

    database: Database
    connection: Connection
    committed: list[Callable[[], object]]


_joined_transaction: contextvars.ContextVar[_Joined | None] = contextvars.ContextVar(
    "clew_joined_transaction", default=None
)


class DriverStatement:
    """One plain SQL statement run on the DBAPI cursor inside a SQLAlchemy transaction.

    For hot paths only (version registration): SQLAlchemy's bookkeeping per ``execute``
    (execution context, result metadata, events) costs several times what SQLite spends
    running a short indexed statement. Written once with ``:name`` parameters, valid on SQLite
    and PostgreSQL alike; rows come back as plain tuples in the order the SQL lists columns.
    """

    _NAMED = re.compile(r"(?<![:\w]):(\w+)")

    def __init__(self, sql: str) -> None:
        self._sql = {"sqlite": sql, "postgresql": self._NAMED.sub(r"%(\1)s", sql)}
        self._positional = {
            "sqlite": self._NAMED.sub("?", sql),
            "postgresql": self._NAMED.sub("%s", sql),
        }

    def sql(self, dialect: str) -> str:
        """The statement as ``dialect``'s driver takes it."""
        return self._sql[dialect]

    def execute(self, connection: Connection, params: Mapping[str, Any]) -> DBAPICursor:
        """Run in ``connection``'s transaction; returns the DBAPI cursor to fetch from."""
        return driver_execute(connection, self._sql[connection.dialect.name], params)

    def execute_many(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run once per row of ``rows`` in ``connection``'s transaction (``executemany``)."""
        driver_execute_many(connection, self._sql[connection.dialect.name], rows)

    def execute_many_values(self, connection: Connection, rows: Sequence[Sequence[Any]]) -> None:
        """``execute_many`` with each row's values as a tuple, in the order the SQL names its
        parameters: the driver binds by position instead of a dict lookup per value (the
        audit images of a bulk write are thousands of rows)."""
        driver_execute_many(connection, self._positional[connection.dialect.name], rows)

    def first(self, connection: Connection, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.execute(connection, params).fetchone()
        return row

    def first_mapping(
        self, connection: Connection, params: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The first row as a dict by column name, None when there is none."""
        cursor = self.execute(connection, params)
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([column[0] for column in cursor.description], row, strict=True))

    def all(self, connection: Connection, params: Mapping[str, Any]) -> Sequence[tuple[Any, ...]]:
        return self.execute(connection, params).fetchall()


def driver_execute(
    connection: Connection, sql: str, params: Mapping[str, Any] | Sequence[Any]
) -> DBAPICursor:
    """``sql`` on a DBAPI cursor of ``connection``; driver errors become SQLAlchemy's, as if
    SQLAlchemy had run it, so ``_busy_as_error`` and the pool's disconnect handling see them."""
    cursor = connection.connection.cursor()
    try:
        cursor.execute(sql, params)
    except connection.dialect.loaded_dbapi.Error as error:
        raise _driver_error(connection, cursor, sql, params, error) from error
    return cursor


def driver_execute_many(
    connection: Connection,
    sql: str,
    rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]],
) -> None:
    """``sql`` once per row of ``rows`` (``executemany``), its errors translated as in
    ``driver_execute``."""
    cursor = connection.connection.cursor()
    try:
        cursor.executemany(sql, rows)
    except connection.dialect.loaded_dbapi.Error as error:
        raise _driver_error(connection, cursor, sql, rows, error) from error


def _driver_error(
    connection: Connection,
    cursor: DBAPICursor,
    sql: str,
    params: Mapping[str, Any] | Sequence[Any],
    error: DBAPIModule.Error,
) -> StatementError:
    """The SQLAlchemy error for a driver ``error``; a lost connection is invalidated first."""
    dialect = connection.dialect
    lost = dialect.is_disconnect(error, connection.connection, cursor)
    if lost:
        connection.invalidate(error)
    return DBAPIError.instance(
        sql,
        params,
        error,
        dialect.loaded_dbapi.Error,
        connection_invalidated=lost,
        dialect=dialect,
    )


class Database:
    """One metadata database; every service reads and writes through ``read()``/``write()``."""

    def __init__(self, url: str, before_create: Callable[[Database], None] | None = None) -> None:
        """``before_create`` runs when the database has no schema yet, before one is created:
        ``open_store`` refuses there to start an empty database over a lost one's data."""
        self.url = url
        self._before_create = before_create
        if url.startswith("sqlite"):
            self.engine = _sqlite_engine(url)
        else:
            self.engine = _postgres_engine(url)
        self.dialect = self.engine.dialect.name
        self._checkpointer = (
            WalCheckpointer(self.engine.url.database)
            if self.dialect == "sqlite" and self.engine.url.database not in (None, "", ":memory:")
            else None
        )
        try:
            with _busy_as_error(url, opening=True):
                self._ensure_schema()
        except BaseException:
            self.close()  # a refused store leaves no pool or checkpoint thread behind
            raise

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        joined = self._joined()
        if joined is not None:
            yield joined
            return
        with _busy_as_error(self.url), self.engine.connect() as connection:
            yield connection

    @contextlib.contextmanager
    def read_statement(self) -> Iterator[Connection]:
        """A read of ONE statement: on PostgreSQL the connection runs it in autocommit, which
        saves the BEGIN and the ROLLBACK round trips of a pooled read (two of the four a hot
        lookup made, pool ping included). One statement is one snapshot, so it sees exactly
        what a transaction around it would; a read of two or more statements must use
        ``read`` to see them consistently. SQLite and a joined transaction: a plain read."""
        with self.read() as connection:
            if self.dialect == "postgresql" and self._joined() is None:
                connection.execution_options(isolation_level="AUTOCOMMIT")
            yield connection

    @contextlib.contextmanager
    def read_within(self, timeout_ms: int, too_slow: str) -> Iterator[Connection]:
        """A read whose statements PostgreSQL cancels after ``timeout_ms`` (``SET LOCAL``: this
        transaction only, so the connection returns to the pool with the server's setting);
        a cancelled statement raises ``QueryTimeoutError(too_slow)``. SQLite: a plain read."""
        with self.read() as connection:
            if self.dialect == "postgresql" and timeout_ms > 0 and self._joined() is None:
                connection.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
            try:
                yield connection
            except DBAPIError as error:
                if _cancelled(error.orig):
                    raise QueryTimeoutError(too_slow) from error
                raise

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """One transaction: everything inside commits together or not at all."""
        joined = self._joined()
        if joined is not None:
            with _busy_as_error(self.url), joined.begin_nested():
                yield joined
            return
        with _busy_as_error(self.url), self.engine.connect() as connection:
            connection = connection.execution_options(clew_write=True)
            try:
                with connection.begin():
                    yield connection
                if connection.info.get(_DURABLE):
                    self._sync_log()
            finally:
                connection.info.pop(_DURABLE, None)
        if self._checkpointer is not None:
            self._checkpointer.note_write()

    def _sync_log(self) -> None:
        """fsync the SQLite WAL a ``mark_durable`` transaction just committed to (unless every
        commit already is, under ``CLEW_SQLITE_SYNC=full``)."""
        path = self.engine.url.database
        if self._checkpointer is None or not path or sqlite_synchronous() == "full":
            return
        descriptor = os.open(f"{path}-wal", os.O_RDONLY)
        try:
            _fdatasync(descriptor)
        finally:
            os.close(descriptor)

    @contextlib.contextmanager
    def single_transaction(self) -> Iterator[Connection]:
        """One write transaction that every ``read()`` and ``write()`` in this context joins.

        For work that must commit with its bookkeeping or not at all: the server claims an
        idempotency key, runs the route and stores its answer in one transaction, so a
        process killed half-way leaves neither a stuck claim nor an unrecorded write. Inner
        ``write()`` blocks become savepoints, so one that fails still rolls back alone.
        """
        committed: list[Callable[[], object]] = []
        with self.write() as connection:
            token = _joined_transaction.set(_Joined(self, connection, committed))
            try:
                yield connection
            finally:
                _joined_transaction.reset(token)
        for callback in committed:
            callback()

    def after_commit(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` once the enclosing transaction has committed: now, after a plain
        ``write()``; at the end of a ``single_transaction`` (never, if that rolls back)."""
        joined = _joined_transaction.get()
        if joined is not None and joined.database is self:
            joined.committed.append(callback)
        else:
            callback()

    @contextlib.contextmanager
    def long_running(self) -> Iterator[None]:
        """Lift the PostgreSQL statement and reply timeouts for the work inside (this thread
        or task only): schema upgrades, backups, restores and gc may take minutes. Connect
        timeouts still apply. A no-op on SQLite, which has no such timeouts."""
        token = _long_running.set(True)
        try:
            yield
        finally:
            _long_running.reset(token)

    def _joined(self) -> Connection | None:
        joined = _joined_transaction.get()
        return joined.connection if joined is not None and joined.database is self else None

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.engine.dispose()

    def schema_revision(self) -> str | None:
        with self.engine.connect() as connection:
            return _revision(connection)

    def _ensure_schema(self) -> None:
        revision = self.schema_revision()
        if revision == SCHEMA_HEAD:
            return
        if revision is None and self._before_create is not None:
            self._before_create(self)
        if revision is not None and revision not in _known_revisions():
            raise StoreVersionError(
                f"the store at {_redacted(self.url)} has schema revision {revision!r}, "
                "written by a newer clew; upgrade clew (pip install -U clew) to open it."
            )
        self.upgrade()

    def upgrade(self) -> None:
        """Apply Alembic migrations up to this clew's head (``clew db upgrade``)."""
        from alembic import command

        with self.long_running(), self.engine.connect() as connection:
            # SQLite: BEGIN IMMEDIATE, so two processes opening a new store at once queue for
            # the write lock instead of one failing on a read lock it cannot upgrade.
            connection = connection.execution_options(clew_write=self.dialect == "sqlite")
            with connection.begin():
                if self.dialect == "postgresql":
                    # Replicas starting together queue here.
                    connection.exec_driver_sql(
                        f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})"
                    )
                if _revision(connection) == SCHEMA_HEAD:
                    return  # another process migrated while this one waited for the lock
                config = _alembic_config()
                config.attributes["connection"] = connection
                command.upgrade(config, "head")

    def info(self, key: str, connection: Connection) -> str | None:
        row = connection.execute(
            select(schema.store_info.c.value).where(schema.store_info.c.key == key)
        ).first()
        return row[0] if row else None


def _revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(_alembic_config())
    return {revision.revision for revision in scripts.walk_revisions()}


@contextlib.contextmanager
def _busy_as_error(url: str, opening: bool = False) -> Iterator[None]:
    """Driver errors as one sentence; ``opening``: the database could not even be opened, so
    ``clew verify`` (which needs it open) is no help and only a backup is."""
    try:
        yield
    except PoolTimeoutError as error:
        raise StoreBusyError(
            "every database connection of this process stayed in use for "
            f"{PostgresLimits.from_environment().pool_timeout_s} s ({PostgresLimits.POOL_ENV}); "
            "retry shortly."
        ) from error
    except DBAPIError as error:
        sqlstate = getattr(error.orig, "sqlstate", "") or ""
        if "database is locked" in str(error) or sqlstate == "55P03":
            raise StoreBusyError(
                f"the store stayed locked by another process for {BUSY_TIMEOUT_MS // 1000} s; "
                "retry when the other writer has finished."
            ) from error
        if _damaged(error, sqlstate) and opening:
            raise IntegrityError(
                f"the database {url.removeprefix('sqlite:///')} is damaged beyond opening "
                f"({_first_line(error.orig)}); restore the store from a backup (clew restore "
                "ARCHIVE --uri NEW_STORE)."
            ) from error
        if _damaged(error, sqlstate):
            raise IntegrityError(
                f"the database {_redacted(url)} is damaged ({_first_line(error.orig)}); run "
                "clew verify to name the damaged table, then restore the store from a backup."
            ) from error
        fault = (
            sqlite_fault(url.removeprefix("sqlite:///"), error.orig) if _is_sqlite(url) else None
        )
        if fault is not None:
            raise fault from error
        if _timed_out(error.orig):
            raise StoreUnavailableError(
                f"the database server behind {_redacted(url)} did not answer in time "
                f"({_first_line(error.orig)}); check that PostgreSQL is running and not stopped, "
                f"overloaded or blocked, then retry ({PostgresLimits.STATEMENT_ENV} and "
                f"{PostgresLimits.CONNECT_ENV} set how long clew waits)."
            ) from error
        if _lost_server(error, sqlstate):
            raise StoreUnavailableError(
                f"the database server behind {_redacted(url)} is unavailable "
                f"({_first_line(error.orig)}); retry once it is back, clew reconnects by itself."
            ) from error
        raise


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite:///")


def _damaged(error: DBAPIError, sqlstate: str) -> bool:
    """SQLite's "malformed" / "not a database" (a damaged or overwritten file), PostgreSQL's
    data_corrupted / index_corrupted (XX001, XX002)."""
    if sqlstate in ("XX001", "XX002"):
        return True
    text = str(error.orig)
    return "database disk image is malformed" in text or "file is not a database" in text


def _timed_out(error: BaseException | None) -> bool:
    """A statement PostgreSQL cancelled at its statement timeout, a reply clew stopped waiting
    for, or a connection the server never completed within the connect timeout."""
    if getattr(error, "clew_timeout", False):
        return True
    if not hasattr(error, "pgconn"):
        return False
    import psycopg.errors  # already loaded: the error came from psycopg

    return isinstance(error, psycopg.errors.QueryCanceled | psycopg.errors.ConnectionTimeout)


def _cancelled(error: BaseException | None) -> bool:
    """PostgreSQL cancelled the statement (its statement timeout, sqlstate 57014)."""
    return getattr(error, "sqlstate", None) == "57014"


def _lost_server(error: DBAPIError, sqlstate: str) -> bool:
    """Connection refused, dropped or shut down (PostgreSQL classes 08 and 57P)."""
    if error.connection_invalidated:
        return True
    if not hasattr(error.orig, "sqlstate"):
        return False
    if sqlstate:
        return sqlstate.startswith(("08", "57P"))
    return isinstance(error, OperationalError | InterfaceError)


def _first_line(error: BaseException | None) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def _redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)
