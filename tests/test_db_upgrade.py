"""``clew db upgrade``: migrations to this clew's head, idempotent; unknown revisions refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import typer
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from clew.cli import ops
from clew.cli.output import ClewGroup
from clew.store.location import open_store
from clew.store.metadata import MIGRATIONS_DIR, SCHEMA_HEAD

ops_app = typer.Typer(cls=ClewGroup)
ops_app.add_typer(ops.db_app, name="db")
ops_app.command("gc")(ops.gc)


def _upgrade(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(ops_app, ["db", "upgrade", *args])
    return result.exit_code, result.output


def test_upgrade_is_idempotent_on_the_test_store() -> None:
    for _ in range(2):
        code, output = _upgrade()
        assert code == 0, output
        assert f"schema revision {SCHEMA_HEAD}" in output
    store = open_store()
    assert store.db.schema_revision() == SCHEMA_HEAD


@pytest.mark.sqlite_only
def test_upgrade_migrates_an_older_store_to_head(tmp_path: Path) -> None:
    database = tmp_path / "old" / "clew.db"
    database.parent.mkdir()
    engine = create_engine(f"sqlite:///{database}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    with engine.connect() as connection:
        assert not inspect(connection).has_table("users")
    engine.dispose()

    code, output = _upgrade("--uri", str(database.parent))
    assert code == 0, output
    with sqlite3.connect(database) as connection:
        (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert revision == SCHEMA_HEAD and "users" in tables


@pytest.mark.sqlite_only
def test_a_store_at_an_unknown_revision_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "future"
    open_store(str(home)).close()
    with sqlite3.connect(home / "clew.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    code, output = _upgrade("--uri", str(home))
    assert code == 1
    assert "schema revision '9999', written by a newer clew" in " ".join(output.split())
    with sqlite3.connect(home / "clew.db") as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone() == ("9999",)
