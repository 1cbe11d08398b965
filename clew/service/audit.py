"""The append-only, hash-chained audit log.

Each entry's hash covers its own fields and the previous entry's hash, so editing, deleting
or reordering any row breaks every hash after it. The chain head lives in ``store_info`` and
is updated in the same transaction as the entry, which serialises concurrent writers (SQLite's
write lock, PostgreSQL's row lock) and keeps the chain linear.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, Table, select

from clew.domain import digests, ids
from clew.domain.audit import AuditEntry, ChainBreak
from clew.errors import InvalidInputError
from clew.store import row_images, schema
from clew.store.location import Store
from clew.store.metadata import DriverStatement, mark_durable

GENESIS = digests.digest_bytes(b"clew audit genesis")
_HEAD_KEY = "audit_head"
# Audited actions whose commit is fsynced before it returns (store/metadata.py mark_durable):
# registry events, approvals, promotions, policies, keys, users, tokens and grants.
GOVERNANCE_ACTIONS = ("model.", "policy.", "signing.", "user.", "token.", "grant.")
_READ_HEAD = select(schema.store_info.c.value).where(schema.store_info.c.key == _HEAD_KEY)
# Every write appends an entry, so ``append`` runs plain SQL on the transaction's DBAPI cursor
# (see DriverStatement): SQLAlchemy's per-statement bookkeeping would cost more than SQLite.
_HEAD = DriverStatement(f"SELECT value FROM store_info WHERE key = '{_HEAD_KEY}'")
_LOCKED_HEAD = DriverStatement(f"SELECT value FROM store_info WHERE key = '{_HEAD_KEY}' FOR UPDATE")
_INSERT_ENTRY = DriverStatement(
    """
    INSERT INTO audit_log (seq, time_ms, actor, action, target, request_id, payload_digest,
        prev_hash, hash, records_digest)
    VALUES (:seq, :time_ms, :actor, :action, :target, :request_id, :payload_digest,
        :prev_hash, :hash, :records_digest)
    """
)
_INSERT_RECORD = DriverStatement(
    """
    INSERT INTO audit_records (record_id, seq, position, table_name, row_key, image)
    VALUES (:record_id, :seq, :position, :table_name, :row_key, :image)
    """
)
# ``audit_records`` as it was before 0016 (no packed key): for ``adopt`` in older migrations.
_INSERT_RECORD_UNPACKED = DriverStatement(
    """
    INSERT INTO audit_records (seq, position, table_name, row_key, image)
    VALUES (:seq, :position, :table_name, :row_key, :image)
    """
)
_INSERT_HEAD = DriverStatement(f"INSERT INTO store_info (key, value) VALUES ('{_HEAD_KEY}', :head)")
_UPDATE_HEAD = DriverStatement(f"UPDATE store_info SET value = :head WHERE key = '{_HEAD_KEY}'")

# The id of the request being served (set by the server's middleware). Sync routes run in a
# worker thread with a copy of the request's context, so the id reaches ``append`` there too.
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "clew_request_id", default=None
)
# Outside a request (the embedded SDK), all entries of one write transaction share one id.
_transaction_ids: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
# Row images written in a transaction and not yet carried by an entry (see ``stage``), per
# transaction: a savepoint that rolls back takes its images with it.
_staged: weakref.WeakKeyDictionary[Any, list[tuple[str, str, str | None]]] = (
    weakref.WeakKeyDictionary()
)


@contextlib.contextmanager
def request_id_scope(request_id: str) -> Iterator[None]:
    """Every audit entry appended inside this block carries ``request_id``."""
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)


def current_request_id(connection: Connection) -> str:
    """The serving request's id, else one id per write transaction on ``connection``."""
    request_id = _request_id.get()
    if request_id is not None:
        return request_id
    transaction = connection.get_transaction() or connection
    found = _transaction_ids.get(transaction)
    if found is None:
        found = _transaction_ids[transaction] = ids.new_id()
    return found


def entry_hash(fields: dict[str, Any]) -> str:
    body = {
        key: fields[key]
        for key in (
            "seq",
            "time_ms",
            "actor",
            "action",
            "target",
            "request_id",
            "payload_digest",
            "prev_hash",
        )
    }
    # Entries written before row images existed (schema 0004 and older) keep their hashes.
    if fields.get("records_digest") is not None:
        body["records_digest"] = fields["records_digest"]
    return digests.digest_json(body)


def stage(connection: Connection, table: Table | str, row: Mapping[str, Any]) -> None:
    """Remember the image of a covered row just written; the transaction's next ``append``
    records it. Every write of a covered table calls this (clew/store/row_images.py)."""
    covered = row_images.covered(table)
    _staged_images(connection).append((covered.name, covered.key(row), covered.image(row)))


def stage_many(
    connection: Connection, table: Table | str, rows: Iterable[Mapping[str, Any]]
) -> None:
    """``stage`` for every row of a bulk write, in order (one lookup of the table's coverage
    and of the transaction's staging list for all of them)."""
    covered = row_images.covered(table)
    name, key, image = covered.name, covered.key, covered.image
    _staged_images(connection).extend([(name, key(row), image(row)) for row in rows])


def stage_stored(connection: Connection, table: Table | str, key: Mapping[str, Any]) -> None:
    """Stage the image of a covered row as it is now stored (after an UPDATE), or its deletion."""
    covered = row_images.covered(table)
    columns, statement = _stored_row(covered.name)
    found = statement.first(connection, {column: key[column] for column in covered.key_columns})
    image = None if found is None else covered.image(dict(zip(columns, found, strict=True)))
    _staged_images(connection).append((covered.name, covered.key(key), image))


@functools.cache
def _stored_row(name: str) -> tuple[tuple[str, ...], DriverStatement]:
    """A covered table's columns and the plain SQL reading one row by key (every run's end
    stages its row this way: not a statement built and cache-keyed per call)."""
    covered = row_images.covered(name)
    columns = tuple(column.name for column in covered.table.columns)
    where = " AND ".join(f'"{column}" = :{column}' for column in covered.key_columns)
    listed = ", ".join(f'"{column}"' for column in columns)
    return columns, DriverStatement(f'SELECT {listed} FROM "{name}" WHERE {where}')


def adopt(connection: Connection, tables: Iterable[str], reason: str) -> AuditEntry | None:
    """Vouch for every row of ``tables`` as it is now, in one ``audit.adopt`` entry.

    For migrations only: rows an older clew wrote without images (schema 0005), or whose image
    a migration changed by filling a new column. The tables are read as they are at that
    revision, so a later revision's columns are simply absent (NULL, left out of images).
    """
    from sqlalchemy import MetaData, inspect
    from sqlalchemy import Table as ReflectedTable

    count = 0
    inspector = inspect(connection)
    existing = set(inspector.get_table_names())
    packed = any(column["name"] == "record_id" for column in inspector.get_columns("audit_records"))
    for name in tables:
        if name not in existing:
            continue  # a table a later revision creates
        covered = row_images.covered(name)
        table = ReflectedTable(name, MetaData(), autoload_with=connection)
        for row in connection.execute(select(table)).mappings():
            stage(connection, name, {**dict.fromkeys(covered.image_columns), **row})
            count += 1
    if not count:
        return None
    payload = {"rows": count, "reason": reason}
    return _append(connection, "clew", "audit.adopt", "store", payload, None, packed=packed)


def _innermost(connection: Connection) -> Any:
    """The savepoint or transaction images are staged in: a savepoint that rolls back drops
    its own images with it."""
    return connection.get_nested_transaction() or connection.get_transaction() or connection


def _staged_images(connection: Connection) -> list[tuple[str, str, str | None]]:
    transaction = _innermost(connection)
    found = _staged.get(transaction)
    if found is None:
        found = _staged[transaction] = []
    return found


def _take_staged(connection: Connection) -> list[tuple[str, str, str | None]]:
    return _staged.pop(_innermost(connection), [])


def append(
    connection: Connection,
    actor: str,
    action: str,
    target: str,
    payload: Any,
    request_id: str | None = None,
) -> AuditEntry:
    """Append one entry inside the caller's transaction (the write it records).

    Without an explicit ``request_id`` the entry takes ``current_request_id``: the server's
    request id, so an operator can join audit entries with the request log. The entry carries
    the images of every covered row staged in this transaction since the last entry.
    """
    return _append(connection, actor, action, target, payload, request_id, packed=True)


def _append(
    connection: Connection,
    actor: str,
    action: str,
    target: str,
    payload: Any,
    request_id: str | None,
    *,
    packed: bool,
) -> AuditEntry:
    """``append``; ``packed`` false writes images in the layout before schema 0016."""
    head = _lock_head(connection)
    seq, prev_hash = (0, GENESIS) if head is None else _split_head(head)
    fields: dict[str, Any] = {
        "seq": seq + 1,
        "time_ms": time.time_ns() // 1_000_000,
        "actor": actor,
        "action": action,
        "target": target,
        "request_id": request_id or current_request_id(connection),
        "payload_digest": digests.digest_json(payload),
        "prev_hash": prev_hash,
    }
    images = _take_staged(connection)
    if len(images) > row_images.MAX_IMAGES:
        raise InvalidInputError(
            f"one write recorded {len(images):,} rows, more than an audit entry can carry "
            f"({row_images.MAX_IMAGES:,}); write them in smaller batches."
        )
    fields["records_digest"] = row_images.records_digest(images) if images else None
    fields["hash"] = entry_hash(fields)
    if action.startswith(GOVERNANCE_ACTIONS):
        mark_durable(connection)
    _INSERT_ENTRY.execute(connection, fields)
    if images:
        _insert_records(connection, fields["seq"], images, packed)
    new_head = f"{fields['seq']}:{fields['hash']}"
    (_INSERT_HEAD if head is None else _UPDATE_HEAD).execute(connection, {"head": new_head})
    return AuditEntry(**fields)


def _insert_records(
    connection: Connection, seq: int, images: list[tuple[str, str, str | None]], packed: bool
) -> None:
    """An entry's images, bound by position (``record_id(seq, position)`` is ``first +
    position``: the position never reaches the key's bits, ``MAX_IMAGES`` is checked first)."""
    first = row_images.record_id(seq, 0)
    rows = [
        (first + position, seq, position, table, key, image)
        for position, (table, key, image) in enumerate(images)
    ]
    if packed:
        _INSERT_RECORD.execute_many_values(connection, rows)
    else:
        _INSERT_RECORD_UNPACKED.execute_many_values(connection, [row[1:] for row in rows])


def append_staged(
    connection: Connection, actor: str, action: str, target: str, payload: Any
) -> AuditEntry | None:
    """``append`` if this transaction staged row images since its last entry, else nothing:
    for writes that may turn out to be no-ops (an edge recorded twice)."""
    if not _staged.get(_innermost(connection)):
        return None
    return append(connection, actor, action, target, payload)


def _lock_head(connection: Connection) -> str | None:
    query = _LOCKED_HEAD if connection.dialect.name == "postgresql" else _HEAD
    row = query.first(connection, {})
    return None if row is None else row[0]


def _split_head(head: str) -> tuple[int, str]:
    seq, _, hash_ = head.partition(":")
    return int(seq), hash_


def entries(
    store: Store,
    target: str | None = None,
    limit: int | None = None,
    newest_first: bool = True,
    *,
    actor: str | None = None,
    action: str | None = None,
    before_seq: int | None = None,
) -> list[AuditEntry]:
    """Entries matching every filter given; ``action`` matches a prefix (``model.``).

    ``before_seq`` pages backwards through history: pass the last seq of the previous page.
    """
    table = schema.audit_log
    query = select(table)
    if target:
        query = query.where(table.c.target == target)
    if actor:
        query = query.where(table.c.actor == actor)
    if action:
        query = query.where(table.c.action.startswith(action, autoescape=True))
    if before_seq is not None:
        query = query.where(table.c.seq < before_seq)
    query = query.order_by(table.c.seq.desc() if newest_first else table.c.seq)
    if limit:
        query = query.limit(limit)
    with store.db.read() as connection:
        return [AuditEntry(**row._mapping) for row in connection.execute(query)]


def verify_chain(store: Store) -> tuple[int, ChainBreak | None]:
    """Recompute every hash; return the number checked and the first break, if any."""
    checked = 0
    expected_prev = GENESIS
    expected_seq = 1
    with store.db.read() as connection:
        head = connection.execute(_READ_HEAD).scalar()
        for entry in _iter_entries(connection):
            problem = _check_entry(entry, expected_seq, expected_prev)
            if problem:
                # A gap names the missing entry, not the survivor after it.
                return checked, ChainBreak(min(entry.seq, expected_seq), problem)
            checked += 1
            expected_prev = entry.hash
            expected_seq += 1
    if head is not None and _split_head(head) != (expected_seq - 1, expected_prev):
        seq = expected_seq
        return checked, ChainBreak(
            seq, f"entries after #{seq - 1} are missing (the head says #{_split_head(head)[0]})"
        )
    return checked, None


def _check_entry(entry: AuditEntry, expected_seq: int, expected_prev: str) -> str | None:
    if entry.seq != expected_seq:
        return f"entry #{expected_seq} is missing (found #{entry.seq} next)"
    if entry.prev_hash != expected_prev:
        return f"entry #{entry.seq} does not link to entry #{entry.seq - 1} (reordered or replaced)"
    if entry_hash(asdict(entry)) != entry.hash:
        return f"entry #{entry.seq} was edited: its content no longer matches its hash"
    return None


def _iter_entries(connection: Connection) -> Iterator[AuditEntry]:
    result = connection.execution_options(yield_per=2000).execute(
        select(schema.audit_log).order_by(schema.audit_log.c.seq)
    )
    for row in result:
        yield AuditEntry(**row._mapping)


@dataclass(frozen=True)
class DigestProblem:
    """A recorded digest that the stored bytes (or files) no longer match."""

    target: str
    reason: str


def verify_digests(store: Store) -> tuple[int, list[DigestProblem]]:
    """Re-check everything the log's entries point at by digest; return (checked, problems).

    Blobs are re-hashed, every model version's digest must equal its artifact's, and every
    capture batch must match its file digest, recomputed Merkle root and signature.
    """
    from clew.service import capture_verification, integrity

    blobs = integrity.inventory(store)
    problems = [
        DigestProblem(f"blob:{problem.digest}", problem.describe())
        for problem in integrity.verify_blobs(store, blobs=blobs)
    ]
    versions, artifacts, models = schema.model_versions, schema.artifacts, schema.models
    with store.db.read() as connection:
        rows = connection.execute(
            select(models.c.name, versions.c.version, versions.c.digest, artifacts.c.digest)
            .join(models, models.c.id == versions.c.model_id)
            .join(artifacts, artifacts.c.id == versions.c.artifact_id)
        ).all()
    for name, number, recorded, actual in rows:
        if recorded != actual:
            problems.append(
                DigestProblem(
                    f"{name}/{number}", f"records {recorded} but its artifact is {actual}"
                )
            )
    batches, batch_problems = capture_verification.verify_batches(store)
    problems.extend(
        DigestProblem(f"capture:{problem.batch_id}", problem.reason) for problem in batch_problems
    )
    return len(blobs) + len(rows) + batches, problems
