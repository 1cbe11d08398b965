"""The embedded store: where it lives, its schema, its durability settings, newer stores."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

import clew
from clew.errors import StoreVersionError
from clew.store.metadata import SCHEMA_HEAD
from clew.store.wal_checkpoints import WalCheckpointer


def _tables(db: Path) -> set[str]:
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows}


@pytest.mark.sqlite_only
def test_default_store_lives_under_clew_home(home: Path) -> None:
    with clew.start_run(experiment="default-home") as run:
        run.log_param("where", "home")
    assert (home / "clew.db").is_file()
    assert (home / "blobs").is_dir()
    with sqlite3.connect(home / "clew.db") as connection:
        found = connection.execute("SELECT id FROM runs").fetchall()
    assert found == [(run.id,)]


def test_clew_uri_picks_another_store(
    tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "team-store"
    monkeypatch.setenv("CLEW_URI", str(other))
    with clew.start_run(experiment="elsewhere"):
        pass
    assert (other / "clew.db").is_file()
    assert not (home / "clew.db").exists()


@pytest.mark.sqlite_only
def test_connect_accepts_a_sqlite_url(tmp_path: Path, home: Path) -> None:
    database = tmp_path / "meta" / "tracking.db"
    database.parent.mkdir()
    client = clew.connect(f"sqlite:///{database}")
    with client.start_run(experiment="url") as run:
        pass
    assert client.get_run(run.id).status == "FINISHED"
    assert "runs" in _tables(database)
    assert (database.parent / "blobs").is_dir()
    assert not (home / "clew.db").exists()


def test_new_store_is_created_by_the_alembic_migration(client: clew.Client) -> None:
    with client.store.db.read() as connection:
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).all()
        tables = set(inspect(connection).get_table_names())
    assert revision == [(SCHEMA_HEAD,)]
    assert {"runs", "params", "metrics", "artifacts", "edges", "audit_log"} <= tables


@pytest.mark.sqlite_only
def test_sqlite_runs_in_wal_mode_with_normal_sync_by_default(client: clew.Client) -> None:
    with client.store.db.read() as connection:
        journal = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
        synchronous = connection.exec_driver_sql("PRAGMA synchronous").scalar()
        foreign_keys = connection.exec_driver_sql("PRAGMA foreign_keys").scalar()
    assert journal == "wal"
    assert synchronous == 1  # NORMAL (CLEW_SQLITE_SYNC=full gives FULL)
    assert foreign_keys == 1


def test_reopening_a_current_store_keeps_its_data(home: Path) -> None:
    first = clew.Client(str(home))
    with first.start_run(experiment="keep") as run:
        run.log_metric("auc", 0.9)
    first.close()
    second = clew.Client(str(home))
    assert second.get_run(run.id).metrics == {"auc": 0.9}
    second.close()


def test_a_store_written_by_a_newer_clew_is_refused(home: Path) -> None:
    clew.Client(str(home)).close()
    with sqlite3.connect(home / "clew.db") as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    with pytest.raises(StoreVersionError) as raised:
        clew.Client(str(home))
    message = str(raised.value)
    assert "9999_from_the_future" in message
    assert "upgrade clew" in message
    assert message.endswith(".") and message.count(". ") == 0


def _runs_in_main_file(database: Path, scratch: Path) -> set[str]:
    """Run ids in the database file alone, without its write-ahead log beside it."""
    shutil.copyfile(database, scratch)
    try:
        with contextlib.closing(sqlite3.connect(scratch)) as connection:
            return {run_id for (run_id,) in connection.execute("SELECT id FROM runs")}
    except sqlite3.DatabaseError:
        return set()  # copied half-way through a checkpoint; look again


@pytest.mark.sqlite_only
def test_commits_reach_the_database_file_without_a_commit_checkpointing(tmp_path: Path) -> None:
    """SQLite's own checkpoint (every 32,000 pages here) would leave this run in the WAL; the
    background checkpointer copies it into the database file shortly after the commit."""
    opened = clew.connect(str(tmp_path / "store"))
    with opened.start_run(experiment="checkpointed") as run:
        run.log_param("alpha", 0.5)
    deadline = time.monotonic() + 20
    found: set[str] = set()
    while run.id not in found and time.monotonic() < deadline:
        time.sleep(0.05)
        found = _runs_in_main_file(tmp_path / "store" / "clew.db", tmp_path / "copy.db")
    opened.close()
    assert run.id in found


def _wal_salt(database: Path) -> bytes:
    """The WAL header's salts, which SQLite changes each time it restarts the log at its start."""
    with open(f"{database}-wal", "rb") as wal:
        return wal.read(24)[16:24]


@pytest.mark.sqlite_only
def test_a_steady_writer_gets_its_log_restarted_instead_of_growing(tmp_path: Path) -> None:
    """A passive checkpoint alone never catches a writer that commits back to back, so the log
    grew until SQLite's backstop and every commit's fsync also had to extend the file; the
    checkpointer restarts it, and commits write over the log's first pages again."""
    opened = clew.connect(str(tmp_path / "store"))
    database = tmp_path / "store" / "clew.db"
    with opened.start_run(experiment="steady") as run:
        run.log_param("warm", 1)
        salts = {_wal_salt(database)}
        deadline = time.monotonic() + 30
        step = 0
        while len(salts) < 3 and time.monotonic() < deadline:
            run.log_param(f"p{step}", step)  # one commit each, no pause between them
            step += 1
            salts.add(_wal_salt(database))
    opened.close()
    assert len(salts) >= 3, f"the log was restarted {len(salts) - 1} times in {step} commits"


@pytest.mark.sqlite_only
def test_closing_a_store_stops_its_checkpoint_thread(tmp_path: Path) -> None:
    database = tmp_path / "store" / "clew.db"
    opened = clew.connect(str(tmp_path / "store"))
    with opened.start_run(experiment="closing"):
        pass

    def checkpointing() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.endswith(str(database))]

    assert len(checkpointing()) == 1
    opened.close()
    assert checkpointing() == []


@pytest.mark.sqlite_only
def test_a_close_landing_between_settle_and_checkpoint_still_stops_the_thread(
    tmp_path: Path,
) -> None:
    """close() arriving just after the settle wait timed out used to have its wake-up cleared
    by the thread, which then idled for 30 s before exiting."""
    database = tmp_path / "store" / "clew.db"
    clew.connect(str(tmp_path / "store")).close()  # creates the schema
    checkpointer = WalCheckpointer(str(database))

    class CloseDuringClear(threading.Event):
        def clear(self) -> None:
            checkpointer._closing.set()  # what close() does, at the worst moment
            self.set()
            super().clear()

    checkpointer._written = CloseDuringClear()
    checkpointer.note_write()
    thread = checkpointer._thread
    assert thread is not None
    thread.join(timeout=10)  # far below the 30 s idle exit the old code waited for
    assert not thread.is_alive()
