"""``clew db upgrade``: migrations to this clew's head, idempotent; unknown revisions refused."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest
import typer
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from conftest import PostgresServer
from sqlalchemy import create_engine, inspect, text
from tamper import execute_sql
from typer.testing import CliRunner

import clew
from clew.cli import ops
from clew.cli.output import ClewGroup
from clew.store.location import open_store
from clew.store.metadata import MIGRATIONS_DIR, SCHEMA_HEAD
from clew.store.schema import metadata

ops_app = typer.Typer(cls=ClewGroup)
ops_app.add_typer(ops.db_app, name="db")
ops_app.command("gc")(ops.gc)


def _upgrade(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(ops_app, ["db", "upgrade", *args])
    return result.exit_code, result.output


def test_upgrade_is_idempotent_on_the_test_store() -> None:
    open_store().close()  # the test store, created on first use (db upgrade creates none)
    for _ in range(2):
        code, output = _upgrade()
        assert code == 0, output
        assert f"schema revision {SCHEMA_HEAD}" in output
    store = open_store()
    assert store.db.schema_revision() == SCHEMA_HEAD


def _sqlite_store_at_0001(database: Path) -> None:
    """A SQLite metadata database migrated only to the first revision."""
    engine = create_engine(f"sqlite:///{database}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    engine.dispose()


@pytest.mark.sqlite_only  # a SQLite file at 0001; PostgreSQL: test_upgrade_0002_to_0003_on_postgres
def test_upgrade_migrates_an_older_store_to_head(tmp_path: Path) -> None:
    database = tmp_path / "old" / "clew.db"
    database.parent.mkdir()
    _sqlite_store_at_0001(database)
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert "users" not in tables

    code, output = _upgrade("--uri", str(database.parent))
    assert code == 0, output
    with sqlite3.connect(database) as connection:
        (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert revision == SCHEMA_HEAD and "users" in tables


@pytest.mark.sqlite_only  # a SQLite file of its own at 0001
def test_connecting_to_an_older_store_upgrades_it_first(tmp_path: Path) -> None:
    """Every command opens its store through ``clew.connect``, which migrates an older store to
    head before the first read (``clew db upgrade`` is not needed first): start-up work may
    make opening cheaper, never skip this."""
    home = tmp_path / "old"
    home.mkdir()
    _sqlite_store_at_0001(home / "clew.db")

    client = clew.connect(str(home))
    try:
        assert client.list_model_records() == []
    finally:
        client.close()
    with sqlite3.connect(home / "clew.db") as connection:
        (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision == SCHEMA_HEAD


def test_a_store_at_an_unknown_revision_is_refused() -> None:
    """On the test's store (SQLite, or PostgreSQL in the postgres-s3 pass)."""
    store = open_store()
    execute_sql(store, "UPDATE alembic_version SET version_num = '9999'")
    store.close()
    code, output = _upgrade()
    assert code == 1
    assert "schema revision '9999', written by a newer clew" in " ".join(output.split())
    engine = create_engine(store.db.url)
    with engine.connect() as connection:
        assert (
            connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "9999"
        )
    engine.dispose()


def _migrate_to(url: str, revision: str) -> None:
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
    engine.dispose()


_LONG_REQUEST_ID = "client-request-" + "x" * 49  # 64 characters, a sane X-Request-ID


def _upgrade_0002_store_to_head(url: str, uri_argument: str) -> None:
    """Migrate an empty database to 0002, write rows 0003 touches, then ``clew db upgrade``."""
    _migrate_to(url, "0002")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO idempotency_keys (user_name, key, request_digest, created_ms) "
                "VALUES ('ana', 'key-12345', 'd', 1)"
            )
        )
    engine.dispose()

    code, output = _upgrade("--uri", uri_argument)
    assert code == 0, output
    assert f"schema revision {SCHEMA_HEAD}" in output

    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            indexes = {
                table: {index["name"] for index in inspect(connection).get_indexes(table)}
                for table in ("capture_batches", "idempotency_keys")
            }
            kept = connection.execute(text("SELECT key FROM idempotency_keys")).scalars().all()
            # Entries now carry the server's request id, which may be 64 characters long.
            connection.execute(
                text(
                    "INSERT INTO audit_log (seq, time_ms, actor, action, target, request_id, "
                    "payload_digest, prev_hash, hash) VALUES (999, 1, 'a', 'x', 't', :rid, "
                    "'d', 'p', 'h')"
                ),
                {"rid": _LONG_REQUEST_ID},
            )
            stored = connection.execute(
                text("SELECT request_id FROM audit_log WHERE seq = 999")
            ).scalar()
            drift = compare_metadata(MigrationContext.configure(connection), metadata)
            dialect = connection.dialect.name
    finally:
        engine.dispose()
    assert "ix_capture_batches_version" in indexes["capture_batches"]
    assert "ix_idempotency_keys_created" in indexes["idempotency_keys"]
    assert kept == ["key-12345"]
    assert stored == _LONG_REQUEST_ID
    # The migrations build exactly what clew/store/schema.py declares (SQLite ignores lengths,
    # so 0003 leaves its audit table's declared length alone).
    if dialect == "sqlite":
        drift = [change for change in drift if not _is_type_change(change)]
    assert drift == []


def _is_type_change(change: object) -> bool:
    return isinstance(change, list) and change[0][0] == "modify_type"


@pytest.mark.sqlite_only  # a SQLite file by design; the PostgreSQL variant follows
def test_upgrade_0002_to_0003_on_sqlite(tmp_path: Path) -> None:
    database = tmp_path / "old" / "clew.db"
    database.parent.mkdir()
    _upgrade_0002_store_to_head(f"sqlite:///{database}", str(database.parent))


@pytest.mark.postgres
def test_upgrade_0002_to_0003_on_postgres(postgres_server: PostgresServer) -> None:
    name = f"upgrade_{uuid.uuid4().hex[:12]}"
    postgres_server.execute(f"CREATE DATABASE {name}")
    url = postgres_server.url(name)
    _upgrade_0002_store_to_head(url, url)


@pytest.mark.sqlite_only  # PostgreSQL: test_upgrade_0002_to_0003_on_postgres migrates to head
def test_upgrading_to_0005_adopts_existing_rows_into_the_audit_chain(tmp_path: Path) -> None:
    """Rows an older clew wrote had no images: the upgrade vouches for them as they are then
    (one ``audit.adopt`` entry), so verify passes on the upgraded store and catches edits made
    after it."""
    from clew.service import audit, record_check

    database = tmp_path / "old" / "clew.db"
    database.parent.mkdir()
    url = f"sqlite:///{database}"
    _migrate_to(url, "0004")
    with sqlite3.connect(database) as db:
        db.execute(
            "INSERT INTO contexts (id, type, name, properties, created_ms, created_by) "
            "VALUES ('C1', 'experiment', 'old', '{}', 1, 'alice')"
        )
        db.execute(
            "INSERT INTO runs (id, experiment_id, name, kind, status, user_name, start_ms, "
            "properties) VALUES ('R1', 'C1', 'train', 'training', 'FINISHED', 'alice', 2, '{}')"
        )
        db.execute("INSERT INTO params (run_id, key, value) VALUES ('R1', 'lr', '0.1')")

    store = open_store(str(database.parent))
    assert audit.verify_chain(store)[1] is None
    assert {entry.action for entry in audit.entries(store)} == {"audit.adopt"}
    assert record_check.verify_records(store) == (3, [])

    execute_sql(store, "UPDATE params SET value = '0.5'")
    _, problems = record_check.verify_records(store)
    assert [(p.table, p.key) for p in problems] == [("params", "R1/lr")]
    store.close()


_LOOK_ALIKES = [
    ("01AAAAAAAAAAAAAAAAAAAAAAA1", "churn", 1),
    ("01AAAAAAAAAAAAAAAAAAAAAAA2", "Churn", 2),
    ("01AAAAAAAAAAAAAAAAAAAAAAA3", "CHURN", 3),
]


_EVENTS = [("01AAAAAAAAAAAAAAAAAAAAAAC2", "second"), ("01AAAAAAAAAAAAAAAAAAAAAAC1", "first")]


def _upgrade_a_store_holding_look_alikes(url: str, uri_argument: str) -> str:
    """A 0004 store with models churn, Churn, CHURN, experiments iris, IRIS and two events
    of churn (ordered by id then), upgraded."""
    _migrate_to(url, "0004")
    engine = create_engine(url)
    with engine.begin() as connection:
        for model_id, name, created in _LOOK_ALIKES:
            connection.execute(
                text(
                    "INSERT INTO models (id, name, owner, description, risk_tier, tags, "
                    "last_version, created_ms, created_by) VALUES (:id, :name, 'ana', '', NULL, "
                    "'{}', 0, :created, 'ana')"
                ),
                {"id": model_id, "name": name, "created": created},
            )
        for context_id, name in (
            ("01AAAAAAAAAAAAAAAAAAAAAAB1", "iris"),
            ("01AAAAAAAAAAAAAAAAAAAAAAB2", "IRIS"),
        ):
            connection.execute(
                text(
                    "INSERT INTO contexts (id, type, name, properties, created_ms, created_by) "
                    "VALUES (:id, 'experiment', :name, '{}', 1, 'ana')"
                ),
                {"id": context_id, "name": name},
            )
        for event_id, comment in _EVENTS:
            connection.execute(
                text(
                    "INSERT INTO registry_events (id, model_id, version, kind, alias, "
                    "from_version, actor, time_ms, comment, evidence) VALUES (:id, :model, 1, "
                    "'archived', NULL, NULL, 'ana', 5, :comment, '{}')"
                ),
                {"id": event_id, "model": _LOOK_ALIKES[0][0], "comment": comment},
            )
    engine.dispose()
    code, output = _upgrade("--uri", uri_argument)
    assert code == 0, output
    return " ".join(output.split())


def _look_alikes_keep_working(store_argument: str) -> None:
    import clew
    from clew.errors import NameConflictError

    client = clew.connect(store_argument)
    try:
        assert sorted(client.list_models()["name"]) == ["CHURN", "Churn", "churn"]
        assert [client.get_model(name).name for name in ("churn", "Churn", "CHURN")] == [
            "churn",
            "Churn",
            "CHURN",
        ]
        with pytest.raises(NameConflictError, match="the existing model 'churn'"):
            client.create_model("cHuRn")
        with client.start_run("IRIS", "still-works"):
            pass
        with pytest.raises(NameConflictError, match="the existing experiment 'iris'"):
            client.start_run("Iris", "refused")
        # the events were numbered in the id order readers used before 0006
        assert [e.comment for e in client.model_history("churn")] == ["second", "first"]
    finally:
        client.close()


@pytest.mark.sqlite_only  # a SQLite file by design; the PostgreSQL variant follows
def test_upgrade_keeps_and_reports_look_alike_names_on_sqlite(tmp_path: Path) -> None:
    database = tmp_path / "old" / "clew.db"
    database.parent.mkdir()
    output = _upgrade_a_store_holding_look_alikes(f"sqlite:///{database}", str(database.parent))
    assert "note: model 'CHURN', 'Churn' look like model 'churn'" in output
    assert "note: experiment 'IRIS' looks like experiment 'iris'" in output
    assert "none was merged" in output
    _look_alikes_keep_working(str(database.parent))


@pytest.mark.postgres
def test_upgrade_keeps_and_reports_look_alike_names_on_postgres(
    postgres_server: PostgresServer,
) -> None:
    name = f"upgrade_{uuid.uuid4().hex[:12]}"
    postgres_server.execute(f"CREATE DATABASE {name}")
    url = postgres_server.url(name)
    output = _upgrade_a_store_holding_look_alikes(url, url)
    assert "note: model 'CHURN', 'Churn' look like model 'churn'" in output
    _look_alikes_keep_working(url)


def _upgrade_0007_store_adds_sessions(url: str, uri_argument: str) -> None:
    """0008 adds the UI sessions table to a store at 0007; downgrading removes it again."""
    _migrate_to(url, "0007")
    code, output = _upgrade("--uri", uri_argument)
    assert code == 0, output
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            columns = {column["name"] for column in inspect(connection).get_columns("ui_sessions")}
        assert {"secret_hash", "idle_ms", "expires_ms", "revoked_ms", "token_id"} <= columns
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0007")
        with engine.connect() as connection:
            assert not inspect(connection).has_table("ui_sessions")
    finally:
        engine.dispose()


@pytest.mark.sqlite_only  # a SQLite file by design; the PostgreSQL variant follows
def test_upgrade_0007_to_0008_adds_ui_sessions_on_sqlite(tmp_path: Path) -> None:
    database = tmp_path / "old" / "clew.db"
    database.parent.mkdir()
    _upgrade_0007_store_adds_sessions(f"sqlite:///{database}", str(database.parent))


@pytest.mark.postgres
def test_upgrade_0007_to_0008_adds_ui_sessions_on_postgres(
    postgres_server: PostgresServer,
) -> None:
    name = f"upgrade_{uuid.uuid4().hex[:12]}"
    postgres_server.execute(f"CREATE DATABASE {name}")
    url = postgres_server.url(name)
    _upgrade_0007_store_adds_sessions(url, url)
