"""Which rows the audit chain covers, and the image of a row it records.

Every fact that status, promotion, trace, lineage or the UI reads lives in one of the tables
below. Whenever clew writes such a row it records the row's *image* (its covered columns as
canonical JSON) in the same transaction's audit entry (``audit_records``), so the newest image
of every row must equal the row as stored: an edited, inserted or deleted row is found by
comparing the two (clew/service/record_check.py).

A column is left out of the image only when it is bookkeeping that no answer is read from:
``models.last_version`` is the allocation counter (a version's number is in its own row), an
edge's ``id`` is a surrogate key (the edge is its two ends and association), a webhook
subscription's ``cursor_seq`` only says how far its deliveries were queued.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table

from clew.domain import digests
from clew.store import schema

# One encoder for every image: ``json.dumps`` with options builds a new one per call, which
# costs as much as encoding a short row (bulk lineage ingest images hundreds of thousands).
_IMAGE_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class CoveredTable:
    """A table whose rows the audit chain vouches for."""

    table: Table
    key_columns: tuple[str, ...]
    image_columns: tuple[str, ...]
    # Read in C (``itemgetter``) rather than a generator per row: bulk lineage writes image
    # thousands of rows per call. Columns in sorted order, so the image's dict is built sorted.
    _sorted_columns: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _values: Callable[[Mapping[Any, Any]], tuple[Any, ...]] = field(
        init=False, repr=False, compare=False
    )
    _key_values: Callable[[Mapping[Any, Any]], tuple[Any, ...]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        columns = tuple(sorted(self.image_columns))
        object.__setattr__(self, "_sorted_columns", columns)
        object.__setattr__(self, "_values", column_values(columns))
        object.__setattr__(self, "_key_values", column_values(self.key_columns))

    @functools.cached_property
    def name(self) -> str:
        """The table's name as a plain ``str``: SQLAlchemy's ``quoted_name`` subclass costs
        the driver an adapter lookup per bound value (every image row of a bulk write)."""
        return str(self.table.name)

    def key(self, row: Mapping[Any, Any]) -> str:
        """The row's identity as one string (primary or natural key, ``/``-joined)."""
        return "/".join(map(str, self._key_values(row)))

    def image(self, row: Mapping[Any, Any]) -> str:
        """The canonical JSON of the row's covered columns; every one must be present.

        NULLs are left out, so a migration that adds a nullable column changes no image.
        """
        values = self._values(row)
        if None in values:
            return _IMAGE_ENCODER.encode(
                {
                    column: value
                    for column, value in zip(self._sorted_columns, values, strict=True)
                    if value is not None
                }
            )
        return _IMAGE_ENCODER.encode(dict(zip(self._sorted_columns, values, strict=True)))


def column_values(columns: tuple[str, ...]) -> Callable[[Mapping[Any, Any]], tuple[Any, ...]]:
    """A function giving a row's values of ``columns`` as a tuple (even for one column), in C
    (``itemgetter``) for several."""
    if len(columns) == 1:
        column = columns[0]
        return lambda row: (row[column],)
    return operator.itemgetter(*columns)


def _covered(
    table: Table, key: tuple[str, ...], *, leave_out: tuple[str, ...] = ()
) -> CoveredTable:
    columns = tuple(column.name for column in table.columns if column.name not in leave_out)
    return CoveredTable(table, key, columns)


COVERED: dict[str, CoveredTable] = {
    covered.name: covered
    for covered in (
        _covered(schema.contexts, ("id",)),
        _covered(schema.runs, ("id",)),
        _covered(schema.params, ("run_id", "key")),
        _covered(schema.artifacts, ("id",)),
        _covered(schema.edges, ("source_id", "destination_id", "association"), leave_out=("id",)),
        _covered(schema.models, ("id",), leave_out=("last_version",)),
        _covered(schema.model_versions, ("id",)),
        _covered(schema.registry_events, ("id",)),
        _covered(schema.policies, ("version",)),
        _covered(schema.capture_batches, ("id",)),
        _covered(schema.signing_keys, ("key_id",)),
        _covered(schema.user_keys, ("key_id",)),
        _covered(schema.webhook_subscriptions, ("id",), leave_out=("cursor_seq",)),
        _covered(schema.monitor_runs, ("id",)),
        _covered(schema.monitor_schedules, ("id",)),
        _covered(schema.deployments, ("id",)),
        _covered(schema.validation_findings, ("id",)),
        _covered(schema.model_cards, ("id",)),
        _covered(schema.shadow_pairs, ("deployment_id", "shadow_call"), leave_out=("id",)),
    )
}


def covered(table: Table | str) -> CoveredTable:
    """The coverage of ``table``; a table the chain does not cover is a programming error."""
    return COVERED[table if isinstance(table, str) else table.name]


# Images one audit entry can carry (the position's bits in ``record_id``).
MAX_IMAGES = 1 << schema.RECORD_POSITION_BITS


def record_id(seq: int, position: int) -> int:
    """The key of image ``position`` of audit entry ``seq``: both packed in one integer, so an
    entry's images are one key range (on SQLite the table's rowid, with no index beside it)."""
    return seq << schema.RECORD_POSITION_BITS | position


def record_range(seq: int) -> tuple[int, int]:
    """The first and last ``record_id`` audit entry ``seq`` can hold."""
    return record_id(seq, 0), record_id(seq, MAX_IMAGES - 1)


def records_digest(images: list[tuple[str, str, str | None]]) -> str:
    """The digest of one audit entry's row images, in the order they were written: the
    canonical JSON of the list of ``[table, key, image]`` triples (``digests.canonical_json``
    of them, byte for byte; its sorting and fallbacks have nothing to act on in strings)."""
    return digests.digest_bytes(_RECORDS_ENCODER.encode(images).encode())


_RECORDS_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
