"""Migration 0013 (lean pages): a store with history is rebuilt without losing or re-vouching
a row, and the chain, the record images and every registry answer read the same afterwards.

The store is written by this clew, taken down to 0012 with Alembic (the layout an older clew
left), then upgraded as ``clew db upgrade`` does. On SQLite the rebuilt tables change layout
(the audit log keyed by its rowid, registry events by their id); on PostgreSQL only indexes
change. Both must keep every row, its image and its hash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import inspect, text
from tamper import execute_sql

import clew
from clew.service import audit, record_check
from clew.store.location import Store
from clew.store.metadata import MIGRATIONS_DIR, SCHEMA_HEAD

pytestmark = pytest.mark.embedded_only  # migrates the store in this process


def _history(client: clew.Client, tmp_path: Path) -> None:
    """Three versions of churn, one alias moved twice, lineage edges between them."""
    with client.start_run(experiment="migrate", name="train") as run:
        logged = []
        for index in range(3):
            path = tmp_path / f"model-{index}.bin"
            path.write_bytes(f"model {index}".encode())
            logged.append(run.log_output(path, name="churn-model", type="model"))
    for artifact in logged:
        client.register_model(artifact, "churn")
    client.promote("churn/1", "champion", new_alias=True)
    client.promote("churn/3", "champion")


def _downgrade(store: Store, revision: str) -> None:
    # As Database.upgrade does: a write transaction from its start (SQLite: BEGIN IMMEDIATE).
    with store.db.engine.connect() as opened:
        connection = opened.execution_options(clew_write=store.db.dialect == "sqlite")
        with connection.begin():
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS_DIR))
            config.attributes["connection"] = connection
            command.downgrade(config, revision)


def _snapshot(store: Store, records: bool = True) -> dict[str, Any]:
    """Every row the migration must keep, as plain tuples, plus the chain's verdicts.

    ``records=False`` leaves out the row-image check, which reads every governed table of the
    current schema: at 0012 the tables later migrations add are not there to read.
    """
    with store.db.engine.connect() as connection:
        rows = {
            table: sorted(
                tuple(row) for row in connection.execute(text(f"SELECT {columns} FROM {table}"))
            )
            for table, columns in (
                ("audit_log", "*"),
                # 0016 adds the packed key; these columns are the ones every revision has.
                ("audit_records", "seq, position, table_name, row_key, image"),
                ("registry_events", "*"),
                ("edges", "*"),
            )
        }
    snapshot: dict[str, Any] = {"rows": rows, "chain": audit.verify_chain(store)}
    if records:
        snapshot["records"] = record_check.verify_records(store)
    return snapshot


def _indexes(store: Store, table: str) -> dict[str, list[str]]:
    with store.db.engine.connect() as connection:
        return {
            str(index["name"]): [str(column) for column in index["column_names"]]
            for index in inspect(connection).get_indexes(table)
        }


def _has_rowid(store: Store, table: str) -> bool:
    with store.db.engine.connect() as connection:
        sql = connection.execute(
            text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :name"),
            {"name": table},
        ).scalar()
    return "WITHOUT ROWID" not in str(sql).upper()


@pytest.mark.tampers  # edits a row after the upgrade to show verify still catches it
def test_upgrade_to_0013_keeps_every_row_image_and_answer(
    client: clew.Client, store: Store, tmp_path: Path
) -> None:
    _history(client, tmp_path)
    before = _snapshot(store)
    assert before["chain"][1] is None and before["records"][1] == []

    _downgrade(store, "0012")
    assert store.db.schema_revision() == "0012"
    assert "ix_edges_destination" in _indexes(store, "edges")
    if store.db.dialect == "sqlite":
        assert _has_rowid(store, "registry_events")
    assert _snapshot(store, records=False) == {k: before[k] for k in ("rows", "chain")}

    store.db.upgrade()
    assert store.db.schema_revision() == SCHEMA_HEAD
    assert _snapshot(store) == before  # same rows, same hashes: nothing re-adopted
    edges = _indexes(store, "edges")
    assert "ix_edges_destination" not in edges
    assert edges["ix_edges_upstream"] == [
        "destination_id",
        "association",
        "source_id",
        "source_kind",
    ]
    if store.db.dialect == "sqlite":
        assert not _has_rowid(store, "registry_events")

    # The rebuilt tables still take writes and answer as before.
    assert client.get_version("churn@champion").version == 3
    client.promote("churn/2", "champion")
    assert client.get_version("churn@champion").version == 2
    assert audit.verify_chain(store)[1] is None
    assert record_check.verify_records(store)[1] == []

    # And an edit behind clew's back is still named.
    execute_sql(store, "UPDATE registry_events SET actor = 'mallory' WHERE alias IS NOT NULL")
    problems = record_check.verify_records(store)[1]
    assert problems and {problem.table for problem in problems} == {"registry_events"}


def test_alias_lookups_use_the_alias_events_only_index(
    client: clew.Client, store: Store, tmp_path: Path
) -> None:
    """The alias index holds alias events only (registrations and decisions write none of its
    pages), and an alias lookup is still answered through it."""
    _history(client, tmp_path)
    with store.db.engine.connect() as connection:
        counted = connection.execute(
            text(
                "SELECT count(*) FROM registry_events "
                "WHERE model_id = (SELECT id FROM models WHERE name = 'churn') "
                "AND alias IS NOT NULL"
            )
        ).scalar()
        if store.db.dialect == "sqlite":
            plan = " ".join(
                str(row[-1])
                for row in connection.execute(
                    text(
                        "EXPLAIN QUERY PLAN SELECT version FROM registry_events "
                        "WHERE model_id = 'x' AND alias = 'champion' ORDER BY seq DESC LIMIT 1"
                    )
                )
            )
            assert "ix_registry_events_alias_seq" in plan
    assert counted == 2
    assert client.get_version("churn@champion").version == 3
