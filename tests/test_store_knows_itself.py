"""A store that knows itself: a lost database is refused, never silently re-created.

An empty store is made only on purpose (first use of an empty or new home, or ``create=True`` /
``clew db upgrade --create``); blobs, capture files or keys without their database mean the
database was lost, and opening it anew would report "0 entries, the chain is intact".
"""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
import uuid
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from conftest import PostgresServer
from typer.testing import CliRunner

import clew
from clew.cli.main import app
from clew.client.default import reset
from clew.errors import StoreMissingError
from clew.server.app import app_from_environment
from clew.service import integrity

runner = CliRunner(env={"COLUMNS": "200"})


def _one_sentence_error(result: object, *contains: str) -> str:
    assert result.exit_code == 1, result.output  # type: ignore[attr-defined]
    lines = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1, result.stderr  # type: ignore[attr-defined]
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output  # type: ignore[attr-defined]
    for text in contains:
        assert text in lines[0]
    return lines[0]


def _store_with_a_blob(home: Path) -> None:
    client = clew.connect(str(home))
    with client.start_run(experiment="kept") as run:
        run.log_output(pd.DataFrame({"x": range(10)}), name="numbers")
    reset()


def _delete_database(home: Path) -> None:
    for name in ("clew.db", "clew.db-wal", "clew.db-shm"):
        (home / name).unlink(missing_ok=True)


@pytest.mark.sqlite_only
def test_a_store_whose_database_was_deleted_is_refused_not_recreated(home: Path) -> None:
    _store_with_a_blob(home)
    _delete_database(home)
    with pytest.raises(StoreMissingError) as raised:
        clew.connect(str(home))
    message = str(raised.value)
    assert str(home / "clew.db") in message
    assert "backup" in message and "--create" in message
    assert message.endswith(".") and message.count(". ") == 0
    assert not (home / "clew.db").exists()


@pytest.mark.sqlite_only
def test_an_emptied_database_file_is_refused_too(home: Path) -> None:
    _store_with_a_blob(home)
    _delete_database(home)
    (home / "clew.db").write_bytes(b"")
    with pytest.raises(StoreMissingError, match="blobs"):
        clew.connect(str(home))


@pytest.mark.sqlite_only
@pytest.mark.parametrize("leftover", ["captures/2026/01/batch.parquet", "keys/capture-ed25519.pem"])
def test_captures_or_keys_without_a_database_are_refused(home: Path, leftover: str) -> None:
    (home / leftover).parent.mkdir(parents=True)
    (home / leftover).write_bytes(b"left behind")
    with pytest.raises(StoreMissingError, match=leftover.split("/")[0]):
        clew.connect(str(home))


@pytest.mark.sqlite_only
def test_verify_commands_refuse_a_store_without_its_database(home: Path) -> None:
    _store_with_a_blob(home)
    _delete_database(home)
    for command in (["audit", "verify"], ["verify"], ["runs", "list"]):
        _one_sentence_error(runner.invoke(app, command), str(home / "clew.db"), "backup")
    assert not (home / "clew.db").exists()


@pytest.mark.sqlite_only
def test_a_server_does_not_start_on_a_store_without_its_database(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each server worker opens its store through this factory (``clew server`` first opens
    it the same way, before binding)."""
    _store_with_a_blob(home)
    _delete_database(home)
    monkeypatch.setenv("CLEW_URI", str(home))
    with pytest.raises(StoreMissingError, match="backup"):
        app_from_environment()


@pytest.mark.sqlite_only
def test_an_empty_store_over_existing_blobs_is_created_only_on_purpose(home: Path) -> None:
    _store_with_a_blob(home)
    _delete_database(home)
    client = clew.connect(str(home), create=True)
    assert len(client.search_runs()) == 0
    reset()
    assert len(clew.connect(str(home)).search_runs()) == 0  # now a store again: no flag needed


@pytest.mark.sqlite_only
def test_db_upgrade_create_starts_an_empty_database_on_purpose(home: Path) -> None:
    _store_with_a_blob(home)
    _delete_database(home)
    _one_sentence_error(runner.invoke(app, ["db", "upgrade", "--uri", str(home)]), "--create")
    result = runner.invoke(app, ["db", "upgrade", "--uri", str(home), "--create"])
    assert result.exit_code == 0, result.output
    assert (home / "clew.db").is_file()


def test_first_use_of_a_new_or_empty_home_creates_the_store(tmp_path: Path) -> None:
    empty = tmp_path / "empty-store"
    empty.mkdir()
    for where in (empty, tmp_path / "new-store"):
        client = clew.Client(str(where))
        assert len(client.search_runs()) == 0
        client.close()
        assert (where / "clew.db").is_file()


@pytest.mark.postgres
@pytest.mark.s3
def test_an_empty_postgres_database_over_a_used_s3_prefix_is_refused(
    postgres_server: PostgresServer, s3_artifacts: str
) -> None:
    used = postgres_server.url(f"used_{uuid.uuid4().hex[:12]}")
    postgres_server.execute(f"CREATE DATABASE {used.rsplit('/', 1)[1]}")
    client = clew.connect(used, artifacts=s3_artifacts)
    with client.start_run(experiment="kept") as run:
        run.log_output(pd.DataFrame({"x": range(10)}), name="numbers")
    reset()
    empty = f"empty_{uuid.uuid4().hex[:12]}"
    postgres_server.execute(f"CREATE DATABASE {empty}")
    with pytest.raises(StoreMissingError) as raised:
        clew.connect(postgres_server.url(empty), artifacts=s3_artifacts)
    message = str(raised.value)
    assert empty in message and s3_artifacts in message and "--create" in message
    assert message.endswith(".") and message.count(". ") == 0
    opened = clew.connect(postgres_server.url(empty), artifacts=s3_artifacts, create=True)
    assert len(opened.search_runs()) == 0
    reset()


@pytest.mark.postgres
@pytest.mark.s3
def test_an_empty_postgres_database_over_an_empty_prefix_is_created(
    postgres_server: PostgresServer, s3_artifacts: str
) -> None:
    name = f"fresh_{uuid.uuid4().hex[:12]}"
    postgres_server.execute(f"CREATE DATABASE {name}")
    client = clew.connect(postgres_server.url(name), artifacts=s3_artifacts)
    assert len(client.search_runs()) == 0
    reset()


# --- finding 8: clew verify checks the database itself --------------------------------------


def _store_with_params(home: Path) -> str:
    client = clew.connect(str(home))
    for _ in range(30):
        with client.start_run(experiment="damaged") as run:
            run.log_params({f"param_{i}": i for i in range(20)})
    reset()  # closes the store: the WAL is checkpointed into clew.db and removed
    return run.id


def _overwrite_a_page_of(home: Path, table: str) -> int:
    """Overwrite one 4 KiB page of ``table`` in clew.db with random bytes, as a bad disk
    sector or a stray write would; returns the page number."""
    database = home / "clew.db"
    with contextlib.closing(sqlite3.connect(database)) as connection:
        size = connection.execute("PRAGMA page_size").fetchone()[0]
        pages = connection.execute(
            "SELECT pageno FROM dbstat WHERE name = ? ORDER BY pageno", (table,)
        ).fetchall()
    page = pages[-1][0]
    with database.open("r+b") as handle:
        handle.seek((page - 1) * size)
        handle.write(random.Random(page).randbytes(size))
    return int(page)


@pytest.mark.sqlite_only
def test_verify_names_the_damaged_table_and_page_of_a_damaged_sqlite_file(home: Path) -> None:
    _store_with_params(home)
    page = _overwrite_a_page_of(home, "params")
    result = runner.invoke(app, ["verify"])
    error = _one_sentence_error(result, "database", "params", "backup")
    assert f"page {page}" in result.output.lower() or f"page {page}" in error.lower()
    result = runner.invoke(app, ["verify", "--format", "json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["database"]["method"] == "SQLite PRAGMA integrity_check"
    assert [problem["table"] for problem in report["database"]["problems"]] == ["params"]


@pytest.mark.sqlite_only
def test_reading_a_damaged_page_is_one_sentence_not_a_traceback(home: Path) -> None:
    run_id = _store_with_params(home)
    _overwrite_a_page_of(home, "params")
    result = runner.invoke(app, ["runs", "show", run_id])
    _one_sentence_error(result, str(home / "clew.db"), "damaged", "clew verify")


def test_verify_reports_how_it_checked_an_intact_database(client: clew.Client) -> None:
    with client.start_run(experiment="intact") as run:
        run.log_param("alpha", 1)
    result = runner.invoke(app, ["verify", "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["database"]["problems"] == []
    assert report["database"]["method"] in {
        "SQLite PRAGMA integrity_check",
        "PostgreSQL amcheck (bt_index_check, verify_heapam)",
        "PostgreSQL: every row of every table read (amcheck is not installed)",
    }
    result = runner.invoke(app, ["verify"])
    assert result.exit_code == 0, result.output
    assert "database" in result.stdout and "intact" in result.stdout


@pytest.mark.postgres
@pytest.mark.parametrize("amcheck", [False, True])
def test_verify_names_a_damaged_postgres_table(
    own_postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, amcheck: bool
) -> None:
    own_postgres.execute("CREATE DATABASE clew")
    url = own_postgres.url("clew")
    if amcheck:
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as connection:
            connection.execute("CREATE EXTENSION amcheck")
    client = clew.connect(url, artifacts=str(tmp_path / "blobs"))
    with client.start_run(experiment="damaged") as run:
        run.log_params({f"param_{i}": i for i in range(20)})
    with client.store.db.read() as connection:
        relative = connection.exec_driver_sql("SELECT pg_relation_filepath('params')").scalar()
    reset()
    own_postgres.stop()
    heap = own_postgres.directory / "data" / str(relative)
    with heap.open("r+b") as handle:
        handle.write(random.Random(0).randbytes(8192))  # block 0: its header no longer parses
    own_postgres.start()
    monkeypatch.setenv("CLEW_URI", url)
    monkeypatch.setenv("CLEW_ARTIFACTS", str(tmp_path / "blobs"))
    result = runner.invoke(app, ["verify", "--format", "json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert [problem["table"] for problem in report["database"]["problems"]] == ["params"]
    assert "block 0" in report["database"]["problems"][0]["problem"]
    assert report["database"]["method"] == (integrity.AMCHECK if amcheck else integrity.FULL_READ)
