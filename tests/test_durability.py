"""Governance writes are fsynced before they are acknowledged; bulk telemetry need not be.

Watched from outside, as an operator would: the writing process runs under ``strace`` and the
test reads the order of its system calls. With SQLite's bulk default (WAL,
``synchronous=NORMAL``), a write is acknowledged once its frames are in the WAL, in the OS page
cache; a governance write must also have fsynced the WAL by then, or a power cut could take
back an approval that a user was told had happened.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_backend

from clew.store.location import open_store
from clew.store.metadata import mark_durable

CHILD = """
import os, sys
import clew
client = clew.connect(sys.argv[1])
with client.start_run(experiment="warm-up") as run:  # the WAL exists and has frames
    run.log_param("warm", 1)
    os.write(1, b"GO\\n")
    client.create_model("credit-risk")  # a governance write (audited as model.create)
    os.write(1, b"ACK governance\\n")
    run.log_param("bulk", 2)  # bulk telemetry (run.log_params), queued until
    run.flush()  # the flush writes it
    os.write(1, b"ACK bulk\\n")
"""
_LINE = re.compile(r"^(\d+)\s+(\w+)\((.*)$")


def _traced_calls(home: Path, tmp_path: Path) -> list[tuple[str, str, str]]:
    """(thread id, call, arguments) of every traced call the child made, in order."""
    log = tmp_path / "strace.log"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    subprocess.run(
        [
            "strace",
            "-f",
            "-y",
            "-s",
            "40",
            "-o",
            str(log),
            "-e",
            "trace=write,pwrite64,fsync,fdatasync",
            sys.executable,
            str(script),
            str(home),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    calls = []
    for line in log.read_text().splitlines():
        match = _LINE.match(line)
        if match:
            calls.append((match[1], match[2], match[3]))
    return calls


def _between(calls: list[tuple[str, str, str]], start: str, end: str) -> list[tuple[str, str]]:
    """The calls of the thread that printed ``start`` and ``end``, between the two prints."""
    opened = next(i for i, c in enumerate(calls) if c[1] == "write" and start in c[2])
    thread = calls[opened][0]
    closed = next(i for i, c in enumerate(calls) if i > opened and c[1] == "write" and end in c[2])
    return [(call, args) for tid, call, args in calls[opened + 1 : closed] if tid == thread]


def _wal_synced_after_last_write(segment: list[tuple[str, str]]) -> bool:
    wal = [i for i, (call, args) in enumerate(segment) if "clew.db-wal>" in args.split(",")[0]]
    writes = [i for i in wal if segment[i][0] == "pwrite64"]
    assert writes, f"no WAL write between the two prints: {segment}"
    return any(segment[i][0] in ("fsync", "fdatasync") for i in wal if i > writes[-1])


@pytest.mark.sqlite_only
def test_a_governance_write_is_fsynced_before_it_is_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_backend(shutil.which("strace") is not None, "strace")
    monkeypatch.delenv("CLEW_SQLITE_SYNC", raising=False)  # the bulk default, NORMAL
    home = tmp_path / "store"
    open_store(home).close()
    calls = _traced_calls(home, tmp_path)
    assert _wal_synced_after_last_write(_between(calls, "GO", "ACK governance"))
    assert not _wal_synced_after_last_write(_between(calls, "ACK governance", "ACK bulk"))


@pytest.mark.postgres
def test_a_durable_postgres_transaction_commits_synchronously_even_when_the_database_is_not(
    postgres_url: str, tmp_path: Path
) -> None:
    store = open_store(postgres_url, artifacts=str(tmp_path / "blobs"))
    try:
        with store.db.write() as connection:
            connection.exec_driver_sql("SET LOCAL synchronous_commit = off")  # a DBA's choice
            mark_durable(connection)
            setting = connection.exec_driver_sql("SHOW synchronous_commit").scalar()
        assert setting == "local"
        with store.db.write() as connection:
            connection.exec_driver_sql("SET LOCAL synchronous_commit = remote_apply")
            mark_durable(connection)  # never weakens a stronger setting
            setting = connection.exec_driver_sql("SHOW synchronous_commit").scalar()
        assert setting == "remote_apply"
    finally:
        store.close()
