"""Contexts: experiments, projects and pipelines that group runs and artifacts."""

from __future__ import annotations

import time

from sqlalchemy import Connection, select

from clew.domain import ids, refs
from clew.errors import NameConflictError
from clew.service import audit
from clew.store import schema


def ensure_context(connection: Connection, type_: str, name: str, actor: str) -> str:
    """The id of the context ``type_:name``, created on first use (its image staged for the
    caller's audit entry)."""
    refs.validate_name(name, f"{type_} name")
    table = schema.contexts
    query = select(table.c.id).where(table.c.type == type_, table.c.name == name)
    existing: str | None = connection.execute(query).scalar()
    if existing:
        return existing
    _refuse_look_alike(connection, type_, name)
    row = {
        "id": ids.new_id(),
        "type": type_,
        "name": name,
        "description": None,
        "properties": "{}",
        "created_ms": time.time_ns() // 1_000_000,
        "created_by": actor,
        "name_key": refs.name_key(name),
    }
    connection.execute(table.insert().values(**row))
    audit.stage(connection, table, row)
    return str(row["id"])


def _refuse_look_alike(connection: Connection, type_: str, name: str) -> None:
    """``Churn`` next to ``churn`` is one experiment typed two ways, never a second one."""
    table = schema.contexts
    existing = connection.execute(
        select(table.c.name).where(table.c.type == type_, table.c.name_key == refs.name_key(name))
    ).scalar()
    if existing is not None:
        raise NameConflictError(
            f"{type_} {name!r} looks like the existing {type_} {existing!r} (names are "
            f"compared ignoring case); use {existing!r}, or choose a name that differs in more "
            "than case."
        )
