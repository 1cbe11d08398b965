"""Plain SQL that takes a whole set of ids as one parameter (a JSON array).

Lineage walks and their hydration ask "these few thousand ids" many times a second. An
``IN (:a, :b, ...)`` list is a new statement for every size, which SQLAlchemy re-expands and
the database re-prepares each time; one JSON array parameter keeps a single cached statement
whatever the count, on SQLite (``json_each``) and PostgreSQL (``jsonb_array_elements_text``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection

from clew.store.metadata import DriverStatement

_EXPANSIONS = {
    "sqlite": "SELECT value FROM json_each(:ids)",
    "postgresql": "SELECT jsonb_array_elements_text(CAST(:ids AS jsonb))",
}


class IdSetStatement:
    """A ``DriverStatement`` whose SQL says ``IN ({ids})``; ``all`` takes the ids as a list."""

    def __init__(self, sql: str) -> None:
        self._statements = {
            dialect: DriverStatement(sql.replace("{ids}", expansion))
            for dialect, expansion in _EXPANSIONS.items()
        }

    def all(
        self, connection: Connection, ids: Iterable[str], **params: Any
    ) -> Sequence[tuple[Any, ...]]:
        """Rows for ``ids`` (plus any other ``:name`` parameters), as plain tuples."""
        statement = self._statements[connection.dialect.name]
        return statement.all(connection, {"ids": json.dumps(list(ids)), **params})
