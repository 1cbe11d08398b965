"""Whole-row INSERT statements shared by the bulk writers.

Lineage ingest, OpenLineage events and the MLflow and DVC imports write many runs, artifacts
and edges in one transaction through the driver, bypassing the ORM's per-row cost. They insert
the same rows, so the column lists and statements are written once here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection

from clew.store import row_images, schema
from clew.store.metadata import DriverStatement

RUN_COLUMNS = tuple(schema.runs.columns.keys())
ARTIFACT_COLUMNS = tuple(schema.artifacts.columns.keys())
EDGE_COLUMNS = (
    "source_id",
    "source_kind",
    "destination_id",
    "destination_kind",
    "association",
    "created_ms",
)


class BulkInsert(DriverStatement):
    """An INSERT whose ``execute_many`` binds each row's values by position: the rows are
    dicts for the writers (and their audit images), tuples for the driver, which then does no
    name lookup per value (a batch of OpenLineage events inserts thousands of rows)."""

    def __init__(self, sql: str, columns: Sequence[str]) -> None:
        super().__init__(sql)
        self._values = row_images.column_values(tuple(columns))

    def execute_many(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        values = self._values
        self.execute_many_values(connection, [values(row) for row in rows])


def insert(table: str, columns: Sequence[str], tail: str = "") -> BulkInsert:
    """``INSERT INTO table (columns) VALUES (:columns)``, plus ``tail`` (an ON CONFLICT clause).

    Values are bound by position, in ``columns`` order, so ``tail`` may name no parameter of
    its own: ``ON CONFLICT ... SET x = :x`` would take some other column's value."""
    if DriverStatement._NAMED.search(tail):
        raise ValueError(f"a bulk insert binds by position; its tail names a parameter: {tail}")
    names = ", ".join(columns)
    values = ", ".join(f":{column}" for column in columns)
    return BulkInsert(f"INSERT INTO {table} ({names}) VALUES ({values}){tail}", columns)


INSERT_RUN = insert("runs", RUN_COLUMNS)
INSERT_ARTIFACT = insert("artifacts", ARTIFACT_COLUMNS)
INSERT_EDGE = insert("edges", EDGE_COLUMNS)
# An edge that may already exist (a re-import, a repeated event): written once.
INSERT_EDGE_ONCE = insert("edges", EDGE_COLUMNS, " ON CONFLICT DO NOTHING")
FIND_ARTIFACT = DriverStatement(
    "SELECT id FROM artifacts WHERE type = :type AND name = :name AND digest = :digest"
)
