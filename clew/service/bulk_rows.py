"""Whole-row INSERT statements shared by the bulk writers.

Lineage ingest, OpenLineage events and the MLflow and DVC imports write many runs, artifacts
and edges in one transaction through the driver, bypassing the ORM's per-row cost. They insert
the same rows, so the column lists and statements are written once here.
"""

from __future__ import annotations

from collections.abc import Sequence

from clew.store import schema
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


def insert(table: str, columns: Sequence[str], tail: str = "") -> DriverStatement:
    """``INSERT INTO table (columns) VALUES (:columns)``, plus ``tail`` (an ON CONFLICT clause)."""
    names = ", ".join(columns)
    values = ", ".join(f":{column}" for column in columns)
    return DriverStatement(f"INSERT INTO {table} ({names}) VALUES ({values}){tail}")


INSERT_RUN = insert("runs", RUN_COLUMNS)
INSERT_ARTIFACT = insert("artifacts", ARTIFACT_COLUMNS)
INSERT_EDGE = insert("edges", EDGE_COLUMNS)
# An edge that may already exist (a re-import, a repeated event): written once.
INSERT_EDGE_ONCE = insert("edges", EDGE_COLUMNS, " ON CONFLICT DO NOTHING")
FIND_ARTIFACT = DriverStatement(
    "SELECT id FROM artifacts WHERE type = :type AND name = :name AND digest = :digest"
)
