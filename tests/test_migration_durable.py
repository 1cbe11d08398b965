"""Migration 0016 (durable): row images keyed by one packed integer.

A store with history is written by this clew, taken down to 0015 (the layout an older clew
left: ``audit_records`` keyed by (seq, position)), then upgraded as ``clew db upgrade`` does.
Every image, digest and hash must survive unchanged, ``clew audit verify`` must pass, and an
edit behind clew's back must still be named, on SQLite and PostgreSQL alike.
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
from clew.errors import InvalidInputError
from clew.service import audit, record_check
from clew.store import row_images
from clew.store.location import Store
from clew.store.metadata import MIGRATIONS_DIR, SCHEMA_HEAD

pytestmark = pytest.mark.embedded_only  # migrates the store in this process

_IMAGE_COLUMNS = "seq, position, table_name, row_key, image"


def _history(client: clew.Client, tmp_path: Path) -> None:
    """Two versions of churn, an approval and an alias: entries with one and several images."""
    with client.start_run(experiment="migrate", name="train") as run:
        logged = []
        for index in range(2):
            path = tmp_path / f"model-{index}.bin"
            path.write_bytes(f"model {index}".encode())
            logged.append(run.log_output(path, name="churn-model", type="model"))
    for artifact in logged:
        client.register_model(artifact, "churn")
    client.promote("churn/1", "champion", new_alias=True)


def _downgrade(store: Store, revision: str) -> None:
    # As Database.upgrade does: a write transaction from its start (SQLite: BEGIN IMMEDIATE).
    with store.db.engine.connect() as opened:
        connection = opened.execution_options(clew_write=store.db.dialect == "sqlite")
        with connection.begin():
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS_DIR))
            config.attributes["connection"] = connection
            command.downgrade(config, revision)


def _images(store: Store) -> list[tuple[Any, ...]]:
    with store.db.engine.connect() as connection:
        query = text(f"SELECT {_IMAGE_COLUMNS} FROM audit_records ORDER BY seq, position")
        return [tuple(row) for row in connection.execute(query)]


def _columns(store: Store) -> list[str]:
    with store.db.engine.connect() as connection:
        return [str(column["name"]) for column in inspect(connection).get_columns("audit_records")]


def _record_ids(store: Store) -> list[tuple[int, int, int]]:
    with store.db.engine.connect() as connection:
        query = text("SELECT record_id, seq, position FROM audit_records")
        return [(int(a), int(b), int(c)) for a, b, c in connection.execute(query)]


def _sqlite_indexes(store: Store) -> list[str]:
    """Every index SQLite keeps for ``audit_records``, its automatic key index included."""
    with store.db.engine.connect() as connection:
        query = text("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t")
        return sorted(str(name) for (name,) in connection.execute(query, {"t": "audit_records"}))


@pytest.mark.tampers  # edits an image after the upgrade to show verify still catches it
def test_upgrade_to_0016_keeps_every_image_and_still_names_a_tamper(
    client: clew.Client, store: Store, tmp_path: Path
) -> None:
    _history(client, tmp_path)
    images = _images(store)
    chain = audit.verify_chain(store)
    assert chain[1] is None and record_check.verify_records(store)[1] == []

    _downgrade(store, "0015")
    assert store.db.schema_revision() == "0015"
    assert "record_id" not in _columns(store)
    assert _images(store) == images

    store.db.upgrade()
    assert store.db.schema_revision() == SCHEMA_HEAD
    assert _images(store) == images  # same images, same order
    assert audit.verify_chain(store) == chain  # same hashes: nothing re-adopted
    assert record_check.verify_records(store)[1] == []
    assert all(
        record_id == row_images.record_id(seq, position)
        for record_id, seq, position in _record_ids(store)
    )
    if store.db.dialect == "sqlite":
        # The key is the table's rowid: the row-lookup index is the only one written.
        assert _sqlite_indexes(store) == ["ix_audit_records_row"]

    assert client.verify_audit().ok  # what `clew audit verify` runs

    # The upgraded store takes writes, and an image altered behind clew's back is named.
    client.promote("churn/2", "champion")
    assert record_check.verify_records(store)[1] == []
    execute_sql(
        store,
        "UPDATE audit_records SET image = replace(image, 'churn', 'CHURN') "
        "WHERE table_name = 'models'",
    )
    problems = record_check.verify_records(store)[1]
    assert problems and problems[0].table == "models"
    assert "row images" in problems[0].describe()
    assert not client.verify_audit().ok


def test_an_entry_with_more_images_than_its_key_can_hold_is_refused(
    client: clew.Client, store: Store
) -> None:
    """The position's 24 bits bound one entry's images; past them, one sentence, nothing
    written (not a silently overlapping key)."""
    before = audit.verify_chain(store)[0]
    with (
        pytest.raises(InvalidInputError, match="smaller batches") as refused,
        store.db.write() as connection,
    ):
        staged = audit._staged_images(connection)
        staged.extend([("models", "m", None)] * (row_images.MAX_IMAGES + 1))
        audit.append(connection, "alice", "model.create", "model:big", {})
    assert "\n" not in str(refused.value)
    assert audit.verify_chain(store) == (before, None)
