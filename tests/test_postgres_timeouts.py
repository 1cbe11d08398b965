"""Every wait on PostgreSQL is bounded: a database that is frozen (SIGSTOP), not down, fails a
call with the clear "did not answer in time" StoreUnavailableError (503 over HTTP) instead
of hanging it, and the next call after the server resumes succeeds without restarting clew.

The limits are set short through the environment; each frozen call runs in a thread joined
with a generous bound, so a call that hung fails the test instead of hanging it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import PostgresServer
from server_fixtures import serve

from clew.errors import StoreUnavailableError
from clew.service import accounts, audit
from clew.store.location import Store, open_store

pytestmark = pytest.mark.postgres

HANG_BOUND_S = 90


@pytest.fixture
def short_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEW_PG_STATEMENT_TIMEOUT_MS", "1000")
    monkeypatch.setenv("CLEW_PG_CONNECT_TIMEOUT_S", "2")


def _cluster_processes(server: PostgresServer) -> list[int]:
    """The postmaster and every process it started (backends, checkpointer, walwriter...)."""
    postmaster = int((server.directory / "data" / "postmaster.pid").read_text().split()[0])
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                # the fields after the command name, which is in parentheses: state, ppid
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == postmaster:
                    children.append(int(entry.name))
    return [postmaster, *children]


@contextlib.contextmanager
def _frozen(server: PostgresServer) -> Iterator[None]:
    """Every process of the cluster stopped (not killed) while the block runs.

    A backend may exit between the listing and its signal (the one serving a connection clew
    just dropped): it is gone, so there is nothing to stop or resume. Whatever was stopped is
    resumed even if stopping the rest failed, so the cluster can always be shut down.
    """
    stopped: list[int] = []
    try:
        for pid in _cluster_processes(server):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        yield
    finally:
        for pid in reversed(stopped):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def _bounded(call: Callable[[], object]) -> BaseException | None:
    """Run ``call`` in a thread; what it raised, or None. Fails if it is still waiting."""
    raised: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except BaseException as error:
            raised.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(HANG_BOUND_S)
    assert not thread.is_alive(), (
        f"the call still waits on the frozen database after {HANG_BOUND_S} s"
    )
    return raised[0] if raised else None


def _append(store: Store, target: str) -> None:
    with store.db.write() as connection:
        audit.append(connection, "alice", "test.write", target, {"target": target})


def _assert_timed_out(error: BaseException | None, server: PostgresServer) -> None:
    assert isinstance(error, StoreUnavailableError), repr(error)
    message = str(error)
    assert f"127.0.0.1:{server.port}/clew" in message and "did not answer in time" in message
    assert "check that PostgreSQL is running" in message


@pytest.fixture
def pg_store(own_postgres: PostgresServer, tmp_path: Path, short_limits: None) -> Iterator[Store]:
    own_postgres.execute("CREATE DATABASE clew")
    store = open_store(own_postgres.url("clew"), str(tmp_path / "blobs"))
    yield store
    store.close()


def test_a_statement_on_an_open_connection_to_a_frozen_server_fails_then_clew_recovers(
    own_postgres: PostgresServer, pg_store: Store
) -> None:
    _append(pg_store, "before")

    def write_across_the_freeze() -> None:
        with pg_store.db.write() as connection:
            audit.append(connection, "alice", "test.write", "during", {"target": "during"})
            with _frozen(own_postgres):
                connection.exec_driver_sql("SELECT count(*) FROM audit_log").scalar()

    # the server freezes between two statements of one transaction: the second never returns
    # (a frozen server cannot enforce its statement timeout; clew's reply deadline fires)
    error = _bounded(write_across_the_freeze)
    _assert_timed_out(error, own_postgres)
    assert "no reply from the database server within 6.0 s" in str(error)

    with _frozen(own_postgres):  # a new call: the pooled connection's ping, then connecting
        _assert_timed_out(_bounded(lambda: audit.entries(pg_store)), own_postgres)

    _append(pg_store, "after")
    assert [entry.target for entry in audit.entries(pg_store, action="test.")] == [
        "after",
        "before",
    ]
    assert audit.verify_chain(pg_store)[1] is None


def test_a_server_request_on_a_frozen_database_is_a_503_then_the_same_server_recovers(
    own_postgres: PostgresServer, pg_store: Store, tmp_path: Path
) -> None:
    accounts.create_user(pg_store, "alice", "contributor", actor="test-admin")
    token = accounts.create_token(pg_store, "alice", actor="test-admin").secret
    for running in serve(pg_store, tmp_path):
        # the client's timeout is the bound: a request that hung would raise here
        http = httpx.Client(
            base_url=running.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=HANG_BOUND_S,
        )
        created = http.post("/api/v1/runs", json={"experiment": "freeze", "name": "before"})
        assert created.status_code == 201, created.text
        run = f"/api/v1/runs/{created.json()['id']}"
        with _frozen(own_postgres):
            frozen = http.get(run)
        assert frozen.status_code == 503, frozen.text
        body = frozen.json()
        assert body["code"] == "store_unavailable"
        assert "try again" in body["message"], body["message"]
        assert f"{own_postgres.port}" not in body["message"]  # the server log has it
        after = http.get(run)
        assert after.status_code == 200 and after.json()["name"] == "before"
        http.close()


def test_a_statement_over_the_timeout_is_cancelled_unless_the_work_is_long_running(
    postgres_url: str, tmp_path: Path, short_limits: None
) -> None:
    """PostgreSQL enforces the statement timeout of a live server; maintenance lifts it."""
    store = open_store(postgres_url, str(tmp_path / "blobs"))
    try:
        with (
            pytest.raises(StoreUnavailableError, match=r"did not answer in time.*statement"),
            store.db.read() as connection,
        ):
            connection.exec_driver_sql("SELECT pg_sleep(1.5)").scalar()
        with store.db.long_running(), store.db.write() as connection:
            connection.exec_driver_sql("SELECT pg_sleep(1.5)").scalar()
            audit.append(connection, "alice", "test.write", "slow", {"target": "slow"})
        with store.db.read() as connection:
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "1s"
        assert [entry.target for entry in audit.entries(store, action="test.")] == ["slow"]
    finally:
        store.close()
