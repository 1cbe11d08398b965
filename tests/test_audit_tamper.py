"""``audit.verify_chain`` finds the first entry edited, deleted or reordered in the database,
and ``audit.verify_digests`` finds stored bytes that no longer match what entries recorded."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import clew
from clew.service import audit

ENTRIES = 12


def _store_with_entries(home: Path) -> clew.Client:
    client = clew.connect(str(home))
    with client.start_run("audit", "writes", capture_code=False) as run:
        for index in range(ENTRIES):
            run.log_param(f"p{index}", index)
            run.flush()  # params are queued until a flush: one entry each
    return client


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """One store's database file, written once and copied into each example."""
    home = tmp_path_factory.mktemp("audit-home")
    client = _store_with_entries(home)
    client.close()
    return (home / "clew.db").read_bytes()


def _fresh(tmp_path: Path, pristine: bytes, name: str) -> tuple[clew.Client, Path]:
    home = tmp_path / name
    home.mkdir()
    (home / "clew.db").write_bytes(pristine)
    return clew.connect(str(home)), home / "clew.db"


def _execute(database: Path, sql: str, *params: object) -> None:
    with sqlite3.connect(database) as db:
        db.execute(sql, params)


def test_an_untouched_chain_verifies(tmp_path: Path, pristine: bytes) -> None:
    client, _ = _fresh(tmp_path, pristine, "clean")
    checked, broken = audit.verify_chain(client.store)
    assert broken is None and checked >= ENTRIES


def test_an_edited_entry_is_named(tmp_path: Path, pristine: bytes) -> None:
    client, database = _fresh(tmp_path, pristine, "edited")
    _execute(database, "update audit_log set actor = 'mallory' where seq = 5")
    _, broken = audit.verify_chain(client.store)
    assert broken is not None and broken.seq == 5 and "edited" in broken.reason


def test_a_deleted_entry_is_named(tmp_path: Path, pristine: bytes) -> None:
    client, database = _fresh(tmp_path, pristine, "deleted")
    _execute(database, "delete from audit_log where seq = 4")
    _, broken = audit.verify_chain(client.store)
    assert broken is not None and broken.seq == 4 and "missing" in broken.reason


def test_deleting_the_newest_entries_is_caught_by_the_head(tmp_path: Path, pristine: bytes) -> None:
    client, database = _fresh(tmp_path, pristine, "truncated")
    _execute(database, "delete from audit_log where seq > 6")
    _, broken = audit.verify_chain(client.store)
    assert broken is not None and broken.seq == 7


def test_reordered_entries_are_named(tmp_path: Path, pristine: bytes) -> None:
    client, database = _fresh(tmp_path, pristine, "reordered")
    with sqlite3.connect(database) as db:
        db.execute("update audit_log set seq = -1 where seq = 3")
        db.execute("update audit_log set seq = 3 where seq = 6")
        db.execute("update audit_log set seq = 6 where seq = -1")
    _, broken = audit.verify_chain(client.store)
    assert broken is not None and broken.seq == 3


def test_a_rehashed_forgery_still_breaks_the_next_link(tmp_path: Path, pristine: bytes) -> None:
    """Recomputing the edited entry's own hash does not help: the next entry links to the old."""
    client, database = _fresh(tmp_path, pristine, "rehashed")
    entry = next(e for e in audit.entries(client.store, newest_first=False) if e.seq == 5)
    fields = {**entry.__dict__, "actor": "mallory"}
    _execute(
        database,
        "update audit_log set actor = ?, hash = ? where seq = 5",
        "mallory",
        audit.entry_hash(fields),
    )
    _, broken = audit.verify_chain(client.store)
    assert broken is not None and broken.seq == 6 and "link" in broken.reason


COLUMNS = ("time_ms", "actor", "action", "target", "request_id", "payload_digest", "hash")


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    kind=st.sampled_from(["edit", "delete", "swap"]),
    first=st.integers(min_value=1, max_value=ENTRIES),
    second=st.integers(min_value=1, max_value=ENTRIES),
    column=st.sampled_from(COLUMNS),
)
def test_any_single_tampering_is_found_at_the_first_touched_entry(
    tmp_path_factory: pytest.TempPathFactory,
    pristine: bytes,
    kind: str,
    first: int,
    second: int,
    column: str,
) -> None:
    client, database = _fresh(tmp_path_factory.mktemp("prop"), pristine, "store")
    if kind == "edit":
        value = 1 if column == "time_ms" else "x"
        edit = f"update audit_log set {column} = {column} || ? where seq = ?"
        _execute(database, edit, value, first)
        if column == "time_ms":
            _execute(database, "update audit_log set time_ms = time_ms + 1 where seq = ?", first)
        expected = first
    elif kind == "delete":
        _execute(database, "delete from audit_log where seq = ?", first)
        expected = first
    else:
        if first == second:
            second = first % ENTRIES + 1
        low, high = sorted((first, second))
        with sqlite3.connect(database) as db:
            db.execute("update audit_log set seq = -1 where seq = ?", (low,))
            db.execute("update audit_log set seq = ? where seq = ?", (low, high))
            db.execute("update audit_log set seq = ? where seq = -1", (high,))
        expected = low
    _, broken = audit.verify_chain(client.store)
    client.close()
    assert broken is not None and broken.seq == expected, (kind, first, second, broken)


def test_verify_digests_names_an_altered_blob(tmp_path: Path) -> None:
    client = clew.connect(str(tmp_path / "home"))
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    with client.start_run("blobs", "log", capture_code=False) as run:
        logged = run.log_input(data, name="data")
    checked, problems = audit.verify_digests(client.store)
    assert problems == [] and checked >= 1
    blob = client.store.blobs.path_for(logged.digest)
    blob.chmod(0o644)
    blob.write_text("a,b\n1,3\n")
    _, problems = audit.verify_digests(client.store)
    assert [p.target for p in problems] == [f"blob:{logged.digest}"]
