"""Do the stored governance and lineage rows match what the audit chain recorded?

The chain (clew/service/audit.py) hashes each entry with the digest of the row images its
transaction wrote (clew/store/row_images.py). Two checks read that back:

- ``verify_records`` walks every image and every covered row: an image set that no longer
  matches its entry, a row whose newest image differs (edited), a row with no image (inserted
  behind clew's back) and an image whose row is gone (deleted) are all reported, first by chain
  order. ``clew audit verify`` runs it beside the hash chain.
- ``require_vouched`` checks just the rows one answer depends on (a version and its decisions
  before status, approval or promotion; the steps of a trace), so those refuse a forged row
  without a full verify. It checks each row against its newest image and that image's entry
  (images and entry hash), not the whole chain: a rewrite of the chain itself is what signed
  checkpoints catch (clew/service/checkpoints.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select

from clew.domain.audit import AuditEntry, RecordProblem
from clew.errors import IntegrityError
from clew.service import audit
from clew.store import row_images, schema
from clew.store.location import Store
from clew.store.row_images import CoveredTable

_STREAM = 5000


def verify_records(store: Store) -> tuple[int, list[RecordProblem]]:
    """Compare every covered row with its newest image; (rows checked, problems in chain order)."""
    with store.db.read() as connection:
        latest, problems = _latest_images(connection)
        checked = 0
        for covered in row_images.COVERED.values():
            for row in _stream_rows(connection, covered):
                checked += 1
                key = covered.key(row)
                found = latest.pop((covered.name, key), None)
                problem = _compare(connection, covered, key, row, found)
                if problem is not None:
                    problems.append(problem)
        for (table, key), (seq, image_hash) in latest.items():
            if image_hash is not None:
                problems.append(
                    RecordProblem(table, key, f"was deleted (audit entry #{seq} wrote it)", seq)
                )
    problems.sort(key=lambda problem: (problem.seq is None, problem.seq or 0))
    return checked, problems


def require_vouched(
    connection: Connection, table: str, keys: Sequence[Mapping[Any, Any]], what: str
) -> None:
    """Raise ``IntegrityError`` unless each row ``keys`` names matches its newest image.

    ``what`` names the answer being refused (``churn/3's approvals``).
    """
    problems = vouch(connection, table, keys)
    if problems:
        raise IntegrityError(
            f"clew can not vouch for {what}: {problems[0].describe()}; the store was changed "
            "outside clew. Run `clew audit verify` to list every altered record and restore "
            "the store from a backup."
        )


def vouch(
    connection: Connection, table: str, keys: Sequence[Mapping[Any, Any]]
) -> list[RecordProblem]:
    """The problems of the rows ``keys`` names (a missing row is reported as deleted)."""
    covered = row_images.covered(table)
    if not keys:
        return []
    wanted = [covered.key(key) for key in keys]
    stored = {covered.key(row): row for row in _rows_by_key(connection, covered, keys)}
    images = _newest_images(connection, covered.name, wanted)
    problems: list[RecordProblem] = []
    for key in wanted:
        found = images.get(key)
        row = stored.get(key)
        if row is None:
            seq = found[0] if found else None
            problems.append(RecordProblem(covered.name, key, "is missing from the store", seq))
            continue
        latest = None if found is None else (found[0], _image_hash(found[1]))
        problem = _compare(connection, covered, key, row, latest)
        if problem is None and found is not None:
            problem = _entry_problem(connection, covered.name, key, found[0])
        if problem is not None:
            problems.append(problem)
    return problems


# --- the full walk ----------------------------------------------------------------------------


def _latest_images(
    connection: Connection,
) -> tuple[dict[tuple[str, str], tuple[int, bytes | None]], list[RecordProblem]]:
    """Newest image hash per row, after checking each entry's images against its digest."""
    log = schema.audit_log
    expected: dict[int, str] = dict(
        connection.execute(
            select(log.c.seq, log.c.records_digest).where(log.c.records_digest.is_not(None))
        )
        .tuples()
        .all()
    )
    latest: dict[tuple[str, str], tuple[int, bytes | None]] = {}
    problems: list[RecordProblem] = []
    for seq, images in _images_by_entry(connection):
        recorded = expected.pop(seq, None)
        if recorded != row_images.records_digest(images):
            what = "were added" if recorded is None else "were altered"
            table, key, _ = images[0]
            problems.append(
                RecordProblem(
                    table, key, f"the row images of audit entry #{seq} {what} after it", seq
                )
            )
        for table, key, image in images:
            latest[(table, key)] = (seq, _image_hash(image))
    for seq in expected:
        problems.append(
            RecordProblem(
                "audit_records", str(seq), f"audit entry #{seq}'s row images are gone", seq
            )
        )
    return latest, problems


def _images_by_entry(
    connection: Connection,
) -> Iterator[tuple[int, list[tuple[str, str, str | None]]]]:
    records = schema.audit_records
    query = select(
        records.c.seq, records.c.table_name, records.c.row_key, records.c.image
    ).order_by(records.c.record_id)
    current: int | None = None
    images: list[tuple[str, str, str | None]] = []
    for seq, table, key, image in connection.execution_options(yield_per=_STREAM).execute(query):
        if seq != current and images:
            assert current is not None
            yield current, images
            images = []
        current = seq
        images.append((table, key, image))
    if images and current is not None:
        yield current, images


def _stream_rows(connection: Connection, covered: CoveredTable) -> Iterator[Mapping[Any, Any]]:
    result = connection.execution_options(yield_per=_STREAM).execute(select(covered.table))
    yield from result.mappings()


# --- one row ----------------------------------------------------------------------------------


def _compare(
    connection: Connection,
    covered: CoveredTable,
    key: str,
    row: Mapping[Any, Any],
    latest: tuple[int, bytes | None] | None,
) -> RecordProblem | None:
    if latest is None:
        return RecordProblem(covered.name, key, "is not in the audit chain (written outside clew)")
    seq, image_hash = latest
    if image_hash is None:
        return RecordProblem(
            covered.name, key, f"was deleted by audit entry #{seq} but is back", seq
        )
    image = covered.image(row)
    if _image_hash(image) == image_hash:
        return None
    recorded = _stored_image(connection, covered.name, key, seq)
    return RecordProblem(covered.name, key, _difference(image, recorded, seq), seq)


def _difference(image: str, recorded: str | None, seq: int) -> str:
    """Which columns differ, in the user's words (``actor is 'mallory' where ...``)."""
    now = json.loads(image)
    then = json.loads(recorded) if recorded else {}
    changed = [
        f"{column} is {now.get(column)!r} where audit entry #{seq} recorded {then.get(column)!r}"
        for column in sorted(set(now) | set(then))
        if now.get(column) != then.get(column)
    ]
    return "; ".join(changed) or f"differs from audit entry #{seq}"


def _entry_problem(connection: Connection, table: str, key: str, seq: int) -> RecordProblem | None:
    """Is entry ``seq`` itself intact: its images hash to its digest and its hash to itself?"""
    log = schema.audit_log
    row = connection.execute(select(log).where(log.c.seq == seq)).mappings().first()
    if row is None:
        return RecordProblem(table, key, f"its audit entry #{seq} is gone", seq)
    entry = AuditEntry(**row)
    if audit.entry_hash(dict(row)) != entry.hash:
        return RecordProblem(table, key, f"its audit entry #{seq} was edited", seq)
    records = schema.audit_records
    images = [
        (table_name, row_key, image)
        for table_name, row_key, image in connection.execute(
            select(records.c.table_name, records.c.row_key, records.c.image)
            .where(records.c.record_id.between(*row_images.record_range(seq)))
            .order_by(records.c.record_id)
        )
    ]
    if row_images.records_digest(images) != entry.records_digest:
        return RecordProblem(table, key, f"the row images of audit entry #{seq} were altered", seq)
    return None


def _rows_by_key(
    connection: Connection, covered: CoveredTable, keys: Sequence[Mapping[Any, Any]]
) -> list[Mapping[Any, Any]]:
    table = covered.table
    if len(covered.key_columns) == 1:
        column = covered.key_columns[0]
        query = select(table).where(table.c[column].in_([key[column] for key in keys]))
        return list(connection.execute(query).mappings())
    found: list[Mapping[Any, Any]] = []
    for key in keys:
        query = select(table).where(
            *(table.c[column] == key[column] for column in covered.key_columns)
        )
        found.extend(connection.execute(query).mappings())
    return found


def _newest_images(
    connection: Connection, table: str, keys: list[str]
) -> dict[str, tuple[int, str | None]]:
    records = schema.audit_records
    query = (
        select(records.c.row_key, records.c.seq, records.c.image)
        .where(records.c.table_name == table, records.c.row_key.in_(keys))
        .order_by(records.c.seq)
    )
    return {key: (seq, image) for key, seq, image in connection.execute(query)}


def _stored_image(connection: Connection, table: str, key: str, seq: int) -> str | None:
    records = schema.audit_records
    return connection.execute(
        select(records.c.image).where(
            records.c.table_name == table, records.c.row_key == key, records.c.seq == seq
        )
    ).scalar()


def _image_hash(image: str | None) -> bytes | None:
    return None if image is None else hashlib.sha256(image.encode()).digest()
