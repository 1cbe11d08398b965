"""Contexts: experiments, projects and pipelines that group runs and artifacts."""

from __future__ import annotations

import time

from sqlalchemy import Connection, select

from clew.domain import ids, refs
from clew.service import audit
from clew.store import schema


def ensure_context(connection: Connection, type_: str, name: str, actor: str) -> str:
    """The id of the context ``type_:name``, created on first use (its image staged for the
    caller's audit entry)."""
    refs.validate_name(name, f"{type_} name")
    table = schema.contexts
    query = select(table.c.id).where(table.c.type == type_, table.c.name == name)
    existing = connection.execute(query).scalar()
    if existing:
        return existing
    row = {
        "id": ids.new_id(),
        "type": type_,
        "name": name,
        "description": None,
        "properties": "{}",
        "created_ms": time.time_ns() // 1_000_000,
        "created_by": actor,
    }
    connection.execute(table.insert().values(**row))
    audit.stage(connection, table, row)
    return str(row["id"])
